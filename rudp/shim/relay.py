"""rudp-shim's relay: UDP forwarding through the impairment model, in both directions, that keeps TFTP's TIDs.

Theory of operation
-------------------
A TFTP client sends its request to the server's well-known port; the server answers from a new port, its
transfer ID (TID, RFC 1350 section 4), and from then on the transfer runs between the two TIDs.  A relay in the
middle keeps that picture intact on both sides with two kinds of sockets per client::

    client C --> listen socket L ------------> upstream U(C) --> server's well-known port
    client C <-- downstream D(C,T) <---------- upstream U(C) <-- server TID T
    client C --> downstream D(C,T) ----------> upstream U(C) --> server TID T

* one *upstream* socket per client address C, facing the server: the server sees U(C)'s port as C's TID;
* one *downstream* socket per server TID T seen on U(C), facing the client, on a new port of the listen address:
  the client sees D(C,T)'s port as the server's TID.  D(C,T) relays only C's datagrams, and only to T.

So a client that re-uses its port for a second transfer gets the same U(C) and a new D(C,T2); two clients never
share a socket.  Datagrams on U(C) from another host than the server's, and on D(C,T) from anyone but C, are
strays: dropped and counted (the real peer would answer them with ERROR 5; the relay is not a TFTP peer).
Mappings idle for ``idle_timeout`` seconds are closed; their number is bounded (the least recently used goes).

Every datagram crossing the relay goes through the impairment model: one ``Channel`` for client -> server ("up")
and one for server -> client ("down"), shared by all clients like one bottleneck link.  The channel decides
drop / delay / duplicate / corrupt; each delivery goes into a heap of (due time, sequence, transmit) and leaves
when it is due.

The ``Relay`` holds no socket and reads no clock (like aioquic's connection): it names sockets by small integers
(``LISTEN`` is 0), asks for new ones and gives old ones back through events (``OpenSocket``, ``CloseSocket``),
takes ``(datagram, source, sock, now)`` and hands out ``Transmit``s when they are due.  ``Shim`` is the thin
driver on real sockets: one selector loop, one clock read per turn, bounded work per turn.
"""

from __future__ import annotations

import enum
import errno
import heapq
import itertools
import os
import selectors
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rudp.impair.model import Channel
from rudp.net.sockets import RECV_SIZE, Address, udp_socket

__all__ = [
    "LISTEN",
    "Role",
    "OpenSocket",
    "CloseSocket",
    "Transmit",
    "RelayConfig",
    "Relay",
    "Shim",
    "UP",
    "DOWN",
]

LISTEN = 0  # the relay's socket id for the listen socket; the driver opens it before the relay exists
UP = "up"  # client -> server
DOWN = "down"  # server -> client


class Role(enum.Enum):
    UPSTREAM = "upstream"  # faces the server: the server's family, any local port
    DOWNSTREAM = "downstream"  # faces the client: a new port on the listen address


@dataclass(frozen=True)
class OpenSocket:
    sock: int
    role: Role


@dataclass(frozen=True)
class CloseSocket:
    sock: int


Event = OpenSocket | CloseSocket


@dataclass(frozen=True)
class Transmit:
    sock: int  # send from this socket ...
    data: bytes
    to: Address  # ... to this address
    direction: str  # UP or DOWN, for the counters


@dataclass(frozen=True)
class RelayConfig:
    server: Address  # the server's well-known address (where requests go)
    idle_timeout: float = 30.0  # a mapping with no datagram either way for this long is closed
    max_clients: int = 128  # upstream sockets; beyond this the least recently active client is dropped
    max_tids: int = 256  # downstream sockets in all; beyond this the least recently active one is closed
    max_pending: int = 100_000  # datagrams waiting for their due time; beyond this new ones are dropped ...
    max_pending_bytes: int = 64 * 1024 * 1024  # ... and beyond this many bytes of them

    def __post_init__(self) -> None:
        if self.idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        if min(self.max_clients, self.max_tids, self.max_pending, self.max_pending_bytes) < 1:
            raise ValueError("max_clients, max_tids, max_pending and max_pending_bytes must be at least 1")


def _key(address: Address) -> tuple[Any, Any]:
    """(host, port): IPv6 addresses come with flow info and scope id, which do not name a peer."""
    return (address[0], address[1])


@dataclass
class _Client:
    address: Address
    upstream: int
    last_seen: float
    tids: dict[tuple[Any, Any], int] = field(default_factory=dict)  # server TID -> downstream socket


@dataclass
class _Tid:
    client: tuple[Any, Any]  # key of the client this downstream socket belongs to
    server: Address  # the server TID it stands for
    upstream: int
    last_seen: float


_DIRECTION_COUNTERS = (
    "received",  # datagrams read from a socket in this direction
    "forwarded",  # deliveries handed to the driver to send (after the model: duplicates count twice)
    "send_errors",  # deliveries the operating system refused to send
    "stray",  # from an unexpected source (not the client / not the server's host): dropped before the model
    "closed",  # due when their socket had already been closed (expired or evicted mapping): dropped
    "overflow",  # max_pending datagrams (or max_pending_bytes) already waiting: dropped before the model
)


class Relay:
    """The mapping table and the delay heap.  Verbs: ``receive_datagram``, ``handle_timer``, ``get_timer``,
    ``datagrams_to_send``, ``next_event``; ``socket_failed`` / ``transmit_failed`` for the driver's errors."""

    def __init__(self, config: RelayConfig, *, up: Channel, down: Channel) -> None:
        self.config = config
        self.channels = {UP: up, DOWN: down}
        self._server_host = config.server[0]
        self._clients: OrderedDict[tuple[Any, Any], _Client] = OrderedDict()  # least recently active first
        self._tids: OrderedDict[int, _Tid] = OrderedDict()  # downstream socket -> mapping, LRU first
        self._upstreams: dict[int, tuple[Any, Any]] = {}  # upstream socket -> client key
        self._heap: list[tuple[float, int, Transmit]] = []
        self._order = itertools.count()
        self._ids = itertools.count(LISTEN + 1)
        self._events: deque[Event] = deque()
        self._pending_bytes = 0
        self.counts = {d: dict.fromkeys(_DIRECTION_COUNTERS, 0) for d in (UP, DOWN)}
        self.totals = {"clients": 0, "tids": 0, "expired": 0, "evicted": 0, "socket_errors": 0, "late": 0}

    # ------------------------------------------------------------------ verbs
    def receive_datagram(self, data: bytes, source: Address, *, sock: int, now: float) -> None:
        """A datagram read from socket ``sock``, sent by ``source``."""
        if sock == LISTEN:
            client = self._client(source, now)
            self._forward(UP, client.upstream, data, self.config.server, now)
        elif sock in self._upstreams:
            self._from_server(data, source, sock, now)
        elif sock in self._tids:
            tid = self._tids[sock]
            if _key(source) != tid.client:
                self.counts[UP]["received"] += 1
                self.counts[UP]["stray"] += 1
                return
            self._touch(tid.client, sock, now)
            self._forward(UP, tid.upstream, data, tid.server, now)
        else:  # read in the same turn as its mapping was dropped
            self.totals["late"] += 1

    def handle_timer(self, *, now: float) -> None:
        """Close mappings idle for ``idle_timeout`` (due datagrams are handed out by ``datagrams_to_send``)."""
        limit = now - self.config.idle_timeout
        while self._tids:
            sock, tid = next(iter(self._tids.items()))
            if tid.last_seen > limit:
                break
            self._drop_tid(sock)
            self.totals["expired"] += 1
        while self._clients:
            key, client = next(iter(self._clients.items()))
            if client.last_seen > limit:
                break
            self._drop_client(key)
            self.totals["expired"] += 1

    def get_timer(self) -> float | None:
        """When the relay next needs ``handle_timer`` / ``datagrams_to_send``: the earliest due datagram or
        expiry; None when there is nothing to wait for."""
        times = [self._heap[0][0]] if self._heap else []
        idle = self.config.idle_timeout
        if self._tids:
            times.append(next(iter(self._tids.values())).last_seen + idle)
        if self._clients:
            times.append(next(iter(self._clients.values())).last_seen + idle)
        return min(times) if times else None

    def datagrams_to_send(self, *, now: float, limit: int = 1024) -> list[Transmit]:
        """Up to ``limit`` datagrams due at ``now``, earliest first (equal times in the order they were made)."""
        out: list[Transmit] = []
        while self._heap and self._heap[0][0] <= now and len(out) < limit:
            transmit = heapq.heappop(self._heap)[2]
            self._pending_bytes -= len(transmit.data)
            if not self._is_open(transmit.sock):
                self.counts[transmit.direction]["closed"] += 1
                continue
            self.counts[transmit.direction]["forwarded"] += 1
            out.append(transmit)
        return out

    def next_event(self) -> Event | None:
        """The next socket to open or close; the driver applies them all before transmitting."""
        return self._events.popleft() if self._events else None

    def socket_failed(self, sock: int) -> None:
        """The driver could not open socket ``sock`` (e.g. out of file descriptors): forget its mapping."""
        self.totals["socket_errors"] += 1
        if sock in self._tids:
            self._drop_tid(sock, close=False)
        elif sock in self._upstreams:
            self._drop_client(self._upstreams[sock], close_upstream=False)

    def transmit_failed(self, transmit: Transmit) -> None:
        self.counts[transmit.direction]["forwarded"] -= 1
        self.counts[transmit.direction]["send_errors"] += 1

    # ------------------------------------------------------------------ reports
    @property
    def pending(self) -> int:
        return len(self._heap)

    @property
    def active(self) -> dict[str, int]:
        return {"clients": len(self._clients), "tids": len(self._tids)}

    def counters(self) -> dict[str, dict[str, int]]:
        """Per direction: the model's counters and the relay's own; plus the mapping totals under "relay"."""
        out: dict[str, dict[str, int]] = {}
        for direction, channel in self.channels.items():
            model = channel.counters
            out[direction] = {**model.as_dict(), "lost": model.lost, **self.counts[direction]}
        active = {f"active_{name}": value for name, value in self.active.items()}
        out["relay"] = {**self.totals, **active, "pending": self.pending}
        return out

    # ------------------------------------------------------------------ mapping table
    def _is_open(self, sock: int) -> bool:
        return sock == LISTEN or sock in self._upstreams or sock in self._tids

    def _client(self, source: Address, now: float) -> _Client:
        key = _key(source)
        client = self._clients.get(key)
        if client is None:
            if len(self._clients) >= self.config.max_clients:
                self._drop_client(next(iter(self._clients)))
                self.totals["evicted"] += 1
            client = _Client(address=source, upstream=self._open(Role.UPSTREAM), last_seen=now)
            self._clients[key] = client
            self._upstreams[client.upstream] = key
            self.totals["clients"] += 1
        self._touch(key, None, now)
        return client

    def _from_server(self, data: bytes, source: Address, upstream: int, now: float) -> None:
        if source[0] != self._server_host:
            self.counts[DOWN]["received"] += 1
            self.counts[DOWN]["stray"] += 1
            return
        client_key = self._upstreams[upstream]
        client = self._clients[client_key]
        sock = client.tids.get(_key(source))
        if sock is None:
            if len(self._tids) >= self.config.max_tids:
                self._drop_tid(next(iter(self._tids)))
                self.totals["evicted"] += 1
            sock = self._open(Role.DOWNSTREAM)
            client.tids[_key(source)] = sock
            self._tids[sock] = _Tid(client=client_key, server=source, upstream=upstream, last_seen=now)
            self.totals["tids"] += 1
        self._touch(client_key, sock, now)
        self._forward(DOWN, sock, data, client.address, now)

    def _touch(self, client_key: tuple[Any, Any], sock: int | None, now: float) -> None:
        self._clients[client_key].last_seen = now
        self._clients.move_to_end(client_key)
        if sock is not None:
            self._tids[sock].last_seen = now
            self._tids.move_to_end(sock)

    def _open(self, role: Role) -> int:
        sock = next(self._ids)
        self._events.append(OpenSocket(sock, role))
        return sock

    def _drop_tid(self, sock: int, *, close: bool = True) -> None:
        tid = self._tids.pop(sock)
        client = self._clients.get(tid.client)
        if client is not None:
            client.tids.pop(_key(tid.server), None)
        if close:
            self._events.append(CloseSocket(sock))

    def _drop_client(self, key: tuple[Any, Any], *, close_upstream: bool = True) -> None:
        client = self._clients.pop(key)
        for sock in list(client.tids.values()):
            self._drop_tid(sock)
        del self._upstreams[client.upstream]
        if close_upstream:
            self._events.append(CloseSocket(client.upstream))

    # ------------------------------------------------------------------ the model
    def _forward(self, direction: str, sock: int, data: bytes, to: Address, now: float) -> None:
        counts = self.counts[direction]
        counts["received"] += 1
        if (
            len(self._heap) >= self.config.max_pending
            or self._pending_bytes + len(data) > self.config.max_pending_bytes
        ):
            counts["overflow"] += 1
            return
        for delivery in self.channels[direction].send(data, now):
            transmit = Transmit(sock=sock, data=delivery.data, to=to, direction=direction)
            heapq.heappush(self._heap, (delivery.at, next(self._order), transmit))
            self._pending_bytes += len(delivery.data)


# ---------------------------------------------------------------------- the driver
_READS_PER_SOCKET = 64  # datagrams read from one ready socket per turn
_SENDS_PER_TURN = 1024  # datagrams sent per turn


class Shim:
    """The relay on real sockets.  ``run()`` loops until ``stop()`` (safe from a signal handler or another
    thread) or until ``duration`` seconds have passed, and returns the stop code."""

    def __init__(
        self,
        relay: Relay,
        *,
        listen: Address,
        listen_family: int,
        server_family: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.relay = relay
        self._clock = clock
        self._listen_host = listen[0]
        self._families = {Role.UPSTREAM: server_family, Role.DOWNSTREAM: listen_family}
        self._selector = selectors.DefaultSelector()
        self._sockets: dict[int, socket.socket] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop_code: int | None = None
        self.elapsed = 0.0  # seconds run() has run, by the same clock
        self.socket_errors: list[str] = []  # one line each, for the command to print
        try:
            for s in (self._wake_r, self._wake_w):
                s.setblocking(False)
            self._selector.register(self._wake_r, selectors.EVENT_READ, None)
            self._add(LISTEN, udp_socket(listen_family, listen, report_errors=False))
        except BaseException:
            self.close()
            raise
        self.address: Address = self._sockets[LISTEN].getsockname()

    @property
    def port(self) -> int:
        return int(self.address[1])

    def stop(self, code: int = 0) -> None:
        """Ask ``run`` to return ``code`` (the first request wins)."""
        if self._stop_code is None:
            self._stop_code = code
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (already woken) or closed
            pass

    def run(self, *, duration: float | None = None) -> int:
        started: float | None = None
        stop_at: float | None = None
        ready: list[Any] = []
        while True:
            now = self._clock()  # the one place that reads the clock
            if started is None:
                started = now
                stop_at = None if duration is None else now + duration
            self.elapsed = now - started
            for key in ready:
                self._read(key, now)
            self.relay.handle_timer(now=now)
            self._apply_events()
            self._transmit(now)
            if self._stop_code is not None:
                return self._stop_code
            if stop_at is not None and now >= stop_at:
                return 0
            wake = [t for t in (self.relay.get_timer(), stop_at) if t is not None]
            timeout = max(0.0, min(wake) - now) if wake else None
            ready = [key for key, _ in self._selector.select(timeout)]

    def close(self) -> None:
        for sock in list(self._sockets):
            self._remove(sock)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> Shim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing
    def _add(self, sock_id: int, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sockets[sock_id] = sock
        self._selector.register(sock, selectors.EVENT_READ, sock_id)

    def _remove(self, sock_id: int) -> None:
        sock = self._sockets.pop(sock_id, None)
        if sock is not None:
            self._selector.unregister(sock)
            sock.close()

    def _read(self, key: selectors.SelectorKey, now: float) -> None:
        if key.data is None:  # the wake-up socket
            try:
                while self._wake_r.recv(4096):
                    pass
            except OSError:
                pass
            return
        sock = self._sockets.get(key.data)
        if sock is None:  # closed earlier in this turn
            return
        for _ in range(_READS_PER_SOCKET):
            try:
                data, source = sock.recvfrom(RECV_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:  # e.g. a late ICMP error: nothing to relay, keep going
                if exc.errno == errno.EBADF:
                    return
                continue
            self.relay.receive_datagram(data, source, sock=key.data, now=now)

    def _apply_events(self) -> None:
        while (event := self.relay.next_event()) is not None:
            if isinstance(event, CloseSocket):
                self._remove(event.sock)
                continue
            bind = (self._listen_host, 0) if event.role is Role.DOWNSTREAM else None
            try:
                self._add(event.sock, udp_socket(self._families[event.role], bind, report_errors=False))
            except OSError as exc:
                self.relay.socket_failed(event.sock)
                if len(self.socket_errors) < 10:
                    reason = os.strerror(exc.errno or 0)
                    self.socket_errors.append(f"cannot open an {event.role.value} socket: {reason}")

    def _transmit(self, now: float) -> None:
        for transmit in self.relay.datagrams_to_send(now=now, limit=_SENDS_PER_TURN):
            try:
                self._sockets[transmit.sock].sendto(transmit.data, transmit.to)
            except OSError:  # buffer full, unreachable, too large: the network lost it
                self.relay.transmit_failed(transmit)
