"""``Server``: a TFTP server that accepts uploads into a directory and, when asked, serves downloads from it.

Theory of operation
-------------------
One thread, one ``selectors`` loop.  The listening socket (dual-stack ``[::]`` unless bound to one address) only
ever sees requests.  Each accepted request gets its own socket on a fresh port (its TID, RFC 1350 section 4), a
sans-I/O server session, and the file it reads (``Root.open_for_read``) or writes (``Root.open_for_write``: a
temporary file renamed into place only when the transfer completes).  Requests the server refuses are answered
with one ERROR from the listening socket.

Limits (spec sections 13.5 and 17.1), checked in this order for each request datagram: a token bucket per
source address (``rate_limit`` requests a second, ``burst`` at once; over it the request is dropped without an
answer, so the server cannot be made to reflect traffic); then the caps on unfinished transfers in total
(``max_transfers``) and per source address (``max_per_client``), answered with one ERROR 0 "server busy".  Each
session holds back retransmissions until its client has proven it receives our datagrams (address validation,
``rudp.core.validation``): a request repeated by a client whose first answer was lost is recognised by its
source endpoint and, while that proof is missing, answered once more (within the same bucket); after it, the
transfer's own timer resends.  A transfer that hears nothing from its peer for ``idle_timeout`` seconds is ended
whatever the negotiated timeout.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from rudp.core.config import TransferConfig
from rudp.core.events import TransferComplete
from rudp.core.options import wanted_digest
from rudp.core.ratelimit import TokenBuckets
from rudp.core.server import ReadServer, RequestRefused, WriteServer, check_request
from rudp.core.session import fmt_address
from rudp.errors import LocalFileError, NetworkError
from rudp.fs import FsError, Root
from rudp.fs.digests import file_digest
from rudp.net.driver import Transfer, keep_heap, spin
from rudp.net.sockets import Address, receive_buffer, udp_socket
from rudp.result import TransferResult
from rudp.wire.codec import MalformedPacket, decode, encode
from rudp.wire.packets import Error, ErrorCode, ReadRequest, Request, WriteRequest

__all__ = ["Server", "ServerConfig"]


@dataclass(frozen=True)
class ServerConfig:
    directory: str = "."
    host: str | None = None  # None: every IPv4 and IPv6 address
    port: int = 69
    serve: bool = False  # answer read requests (downloads)
    overwrite: bool = False  # let uploads replace existing files
    mkdirs: bool = False  # let uploads create missing parent directories (beneath the directory only)
    transfer: TransferConfig = TransferConfig(blksize=65464, windowsize=64)
    max_transfers: int | None = 64  # unfinished transfers at once (None: no limit)
    max_per_client: int | None = 8  # unfinished transfers at once from one source address
    rate_limit: float | None = 20.0  # requests a second per source address (None: no limit)
    rate_burst: int = 40  # requests a source may send at once before ``rate_limit`` applies
    idle_timeout: float | None = 120.0  # seconds without a datagram from the peer before a transfer is ended

    def __post_init__(self) -> None:
        for name in ("max_transfers", "max_per_client", "rate_limit", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, not {value}")
        if self.rate_burst < 1:
            raise ValueError(f"rate_burst must be >= 1, not {self.rate_burst}")

    @property
    def validation_lifetime(self) -> float:
        """How long a session waits, sending nothing more, for its client to prove its address: the local
        retry budget (``timeout`` x (``retries`` + 1)), never a timeout the request itself asked for."""
        return self.transfer.timeout * (self.transfer.retries + 1)


@dataclass
class _Active:
    transfer: Transfer
    request: Request
    client: Address
    direction: str
    name: str
    result: TransferResult | None = None
    heard: int = 0  # datagrams received from the peer when last looked at
    heard_at: float = 0.0  # when that count last changed


class Server:
    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        on_result: Callable[[TransferResult], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or ServerConfig()
        self.on_result = on_result
        self.clock = clock
        self.results: list[TransferResult] = []
        self.dropped_requests = 0
        self.rate_limited = 0  # requests dropped by the per-source rate limit
        self.busy_refusals = 0  # requests refused by max_transfers / max_per_client
        self.answered_again = 0  # repeated requests answered again while the client's address was unproven
        self.idle_ended = 0  # transfers ended by idle_timeout
        self.evicted = 0  # unproven transfers ended to make room under a limit
        self.peak_transfers = 0  # the most unfinished transfers seen at once
        self.peak_per_client = 0  # the most unfinished transfers from one address seen at once
        try:
            self.root = Root(self.config.directory)
        except FsError as exc:
            raise LocalFileError(f"cannot serve {self.config.directory}: {exc.message}") from None
        self.sock = self._listen()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.sock, selectors.EVENT_READ, None)
        self._active: dict[tuple, _Active] = {}
        cfg = self.config
        self._buckets = (
            TokenBuckets(rate=cfg.rate_limit, burst=cfg.rate_burst) if cfg.rate_limit is not None else None
        )
        keep_heap()
        self.accepting = True  # False: new requests are read and dropped

    # ----------------------------------------------------------------- setup
    def _listen(self) -> socket.socket:
        host, port = self.config.host, self.config.port
        try:
            if host is None:
                try:
                    return udp_socket(socket.AF_INET6, ("::", port), dual_stack=True, report_errors=False)
                except OSError as exc:
                    if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                        raise
                    return udp_socket(socket.AF_INET, ("0.0.0.0", port), report_errors=False)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            infos = socket.getaddrinfo(host, port, family if ":" in host else 0, socket.SOCK_DGRAM)
            family, _, _, _, addr = infos[0]
            return udp_socket(family, addr, report_errors=False)  # the listener only reads requests
        except socket.gaierror as exc:
            raise NetworkError(f"cannot bind {host}: {exc.strerror}") from None
        except OSError as exc:
            where = f"{host or '*'} port {port}"
            raise NetworkError(f"cannot listen on {where}: {exc.strerror}") from None

    @property
    def address(self) -> Address:
        return self.sock.getsockname()

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def active(self) -> int:
        return len(self._active)

    def describe(self) -> str:
        host = self.address[0]
        stack = "IPv4 and IPv6" if self.config.host is None and self.sock.family == socket.AF_INET6 else ""
        where = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        modes = "uploads" + (" and downloads" if self.config.serve else " only")
        stack = f" ({stack})" if stack else ""
        return f"listening on {where}{stack}, {modes}, directory {self.config.directory}"

    # ----------------------------------------------------------------- running
    def serve_forever(self, *, once: bool = False, poll: float = 1.0) -> TransferResult | None:
        """Run until interrupted, or (``once``) until the first transfer ends; return that transfer's result.

        With ``once``, requests that arrive after the first result are not accepted, and the method returns
        only when every transfer has closed, so the last ACK is still protected by the dally."""
        first: TransferResult | None = None
        while True:
            finished = self.step(timeout=poll)
            if once and first is None and finished:
                first = finished[0]
                self.accepting = False
            if first is not None and not self._active:
                return first

    def step(self, timeout: float | None = None) -> list[TransferResult]:
        """Wait for one batch of activity (at most ``timeout`` seconds), handle it; return the transfers whose
        outcome became known (reported at once; a receiving session may then dally a while before closing).

        With a single transfer running, the loop first busy-waits a few microseconds on its socket (``spin``,
        loopback and LAN paths only) and then merely polls, so a lockstep peer is not kept waiting for this
        process to wake up; with several, it sleeps in ``select`` at once."""
        if len(self._active) == 1:
            (only,) = self._active.values()
            if spin(only.transfer, self.clock):
                timeout = 0.0  # a datagram was handled: look at the listener and the timers, but do not sleep
        deadlines = [d for a in self._active.values() if (d := a.transfer.session.get_timer()) is not None]
        wait = timeout
        if deadlines:
            until = max(0.0, min(deadlines) - self.clock())
            wait = until if wait is None else min(wait, until)
        for key, _ in self._selector.select(wait):
            if key.data is None:
                self._accept_requests()
            else:
                key.data.transfer.receive(self.clock)
        ended = []
        now = self.clock()
        for client, active in list(self._active.items()):
            transfer = active.transfer
            self._check_idle(active, now)
            transfer.fire_timer(self.clock)  # receive() above ran the ritual for those that heard something
            if active.result is None and transfer.outcome is not None:
                ended.append(self._report(active))
            if transfer.session.closed:
                self._finish(client, active)
        return ended

    def close(self) -> None:
        """Abort every transfer (the peers get an ERROR, temporary files are removed) and stop listening."""
        for client, active in list(self._active.items()):
            active.transfer.abort("server shutting down")
            self._finish(client, active)
        self._selector.close()
        self.sock.close()
        self.root.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- requests
    def _accept_requests(self) -> None:
        for _ in range(256):
            try:
                data, client = self.sock.recvfrom(65536 + 64, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error for an ERROR we sent from here: nothing to do
            try:
                request = decode(data)
            except MalformedPacket:
                self.dropped_requests += 1
                continue
            if not isinstance(request, (ReadRequest, WriteRequest)):
                self.dropped_requests += 1  # a stray DATA/ACK/ERROR for a transfer long gone
                continue
            if not self.accepting:
                continue
            now = self.clock()
            if self._buckets is not None and not self._buckets.take(client[0], now=now):
                self.rate_limited += 1  # dropped without an answer: the server reflects nothing
                continue
            current = self._active.get(client[:2])
            if current is not None:
                if current.transfer.outcome is None and current.request == request:
                    # A repeated request: the first answer was lost.  While the client has not proven its
                    # address the session resends nothing by itself, so answer once more here; afterwards that
                    # transfer's own timer answers it.
                    session = current.transfer.session
                    if isinstance(session, (ReadServer, WriteServer)) and session.answer_again(now=now):
                        self.answered_again += 1
                        current.transfer.service(now)
                    continue
                # The client has moved on (its port reused for a new request): the old session is done with.
                self._finish(client[:2], current)
            busy = self._busy(client)
            if busy:
                self.busy_refusals += 1
                self._refuse(client, ErrorCode.NOT_DEFINED, busy)
                continue
            self._start(request, client)

    def _busy(self, client: Address) -> str | None:
        """Why a new transfer from ``client`` would break a limit (None: it would not, perhaps after ending the
        oldest transfer whose client has not yet proven its address, to make room)."""
        cfg = self.config
        unfinished = [a for a in self._active.values() if a.transfer.outcome is None]
        if cfg.max_transfers is not None and len(unfinished) >= cfg.max_transfers:
            if not self._make_room(unfinished):
                return "server busy: too many transfers"
        if cfg.max_per_client is not None:
            mine = [a for a in unfinished if a.client[0] == client[0] and a.transfer.outcome is None]
            if len(mine) >= cfg.max_per_client and not self._make_room(mine):
                return "server busy: too many transfers from your address"
        return None

    def _make_room(self, candidates: list[_Active]) -> bool:
        """End the oldest candidate whose client is still unproven (a forged request costs nothing to send, so
        it must not hold a place that a real client could take); False if every candidate is proven."""
        for active in candidates:  # dicts keep insertion order: oldest first
            session = active.transfer.session
            if isinstance(session, (ReadServer, WriteServer)) and session.drop_unvalidated(
                "ended to make room: the client had not proven its address"
            ):
                self.evicted += 1
                active.transfer.service(self.clock())  # collect the outcome; nothing is sent
                self._finish(active.client[:2], active)
                return True
        return False

    def _check_idle(self, active: _Active, now: float) -> None:
        """End a transfer whose peer has sent nothing for ``idle_timeout`` seconds (a negotiated RFC 2349
        timeout can otherwise keep a vanished peer's transfer, and its temporary file, for half an hour)."""
        limit = self.config.idle_timeout
        transfer = active.transfer
        heard = transfer.session.stats.datagrams_received
        if heard != active.heard:
            active.heard, active.heard_at = heard, now
        elif limit is not None and transfer.outcome is None and now - active.heard_at >= limit:
            self.idle_ended += 1
            transfer.abort(f"idle timeout: nothing from the peer for {limit:g} s")

    def _refuse(self, client: Address, code: int, message: str) -> None:
        try:
            self.sock.sendto(encode(Error(code, message)), client)
        except OSError:
            pass

    def _start(self, request: Request, client: Address) -> None:
        try:
            check_request(request)
        except RequestRefused as refusal:
            self._refuse(client, refusal.code, refusal.message)
            return
        now = self.clock()
        source = sink = None
        try:
            if isinstance(request, ReadRequest):
                if not self.config.serve:
                    self._refuse(client, ErrorCode.ACCESS_VIOLATION, "downloads are not enabled on this server")
                    return
                source, size = self.root.open_for_read(request.filename)
            else:
                sink = self.root.open_for_write(
                    request.filename, overwrite=self.config.overwrite, mkdirs=self.config.mkdirs
                )
        except FsError as exc:
            self._refuse(client, exc.code, exc.message)
            return
        try:
            sock = udp_socket(
                self.sock.family, (self.address[0], 0), dual_stack=self.sock.family == socket.AF_INET6
            )
        except OSError as exc:
            if source is not None:
                source.close()
            if sink is not None:
                sink.abort()
            self._refuse(client, ErrorCode.NOT_DEFINED, f"server cannot open a socket: {exc.strerror}")
            return
        session: ReadServer | WriteServer
        if isinstance(request, ReadRequest):
            octet = request.mode.lower() == "octet"
            digest = None
            algorithm = wanted_digest(request, self.config.transfer)
            if algorithm is not None:
                try:
                    digest = file_digest(source, algorithm)  # type: ignore[arg-type]
                except OSError as exc:
                    sock.close()
                    source.close()  # type: ignore[union-attr]
                    self._refuse(client, ErrorCode.NOT_DEFINED, f"cannot read the file: {exc.strerror}")
                    return
            session = ReadServer(
                request,
                client,
                self.config.transfer,
                file_size=size if octet else None,
                now=now,
                file_digest=digest,
            )
            direction = "serve"
        else:
            config = replace(self.config.transfer, receive_buffer=receive_buffer(sock))  # the window must fit
            session = WriteServer(request, client, config, now=now)
            direction = "recv"
        session.require_validation(now=now, lifetime=self.config.validation_lifetime)
        transfer = Transfer(session, sock, source=source, sink=sink, started=now)
        active = _Active(transfer, request, client, direction, request.filename, heard_at=now)
        self._active[client[:2]] = active
        self._selector.register(sock, selectors.EVENT_READ, active)
        unfinished = [a.client[0] for a in self._active.values() if a.transfer.outcome is None]
        self.peak_transfers = max(self.peak_transfers, len(unfinished))
        self.peak_per_client = max(self.peak_per_client, unfinished.count(client[0]))
        transfer.service(now)

    def _report(self, active: _Active) -> TransferResult:
        result = active.transfer.result(active.direction, active.name, active.name, fmt_address(active.client))
        active.result = result
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)
        return result

    def _finish(self, client: tuple, active: _Active) -> None:
        transfer = active.transfer
        self._selector.unregister(transfer.sock)
        transfer.sock.close()
        if transfer.source is not None:
            transfer.source.close()
        if transfer.sink is not None and not isinstance(transfer.outcome, TransferComplete):
            transfer.sink.abort()
        del self._active[client]
        if active.result is None:
            self._report(active)
