"""The driver ritual over a real socket: feed, collect, transmit, wait, receive, re-arm (STYLE.md section 2).

``Transfer`` binds one sans-I/O session to one UDP socket and to the file it reads or writes.  ``service()`` runs
the ritual once: pull file bytes into a sending session, hand received file bytes to the writer and collect the
outcome, then send what the session queued.  ``receive()`` (datagrams waiting) and ``fire_timer()`` (the deadline
passed) run it whenever the session heard or did something, so a wake-up with nothing for the session costs
nothing more.  ``run()`` loops over them for a client, sleeping in ``select`` until the session's deadline; the
server calls them for many transfers from its own loop.  The clock is read once per datagram and per timer check,
and timers fire with ``now = max(deadline, clock())``.

Hot path (issue 4): a received DATA payload is a view of its datagram (``rudp.wire.codec``) and reaches the file
by reference (``rudp.fs.files`` gathers chunks for one ``writev``), so received bytes are copied only by the
kernel; answers leave as soon as the session queues them (``receive``); and ``keep_heap`` stops glibc from
returning and re-faulting the memory of every datagram.  System calls are batched where the kernel allows
(``rudp.net.batching``): a run of equal-sized datagrams to one peer leaves in one GSO ``sendmsg`` and is cut into
the same datagrams by the kernel, and a transfer's socket reads GRO-coalesced buffers and cuts them again before
the session sees them, so neither the session nor the wire can tell.  ``RUDP_NO_GSO=1`` turns both off.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import selectors
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from rudp.core.digests import TRAILER
from rudp.core.events import DataReceived, FailureKind, Negotiated, TransferComplete, TransferFailed
from rudp.core.session import Datagram, Session, datagram_length
from rudp.errors import ExitCode, IntegrityError, LocalFileError, NetworkError, RudpError, error_for_failure
from rudp.fs.errors import FsError
from rudp.fs.files import DigestMismatch
from rudp.net import batching
from rudp.net.batching import FALLBACK_ERRNOS, GRO_CMSG_SPACE, MAX_BYTES, MAX_SEGMENTS, segment_option, segments
from rudp.net.sockets import RECV_SIZE, Address, bounced_destinations, same_host
from rudp.result import TransferResult
from rudp.wire.codec import Buffer
from rudp.wire.packets import ErrorCode

__all__ = ["Transfer", "Sink", "Clock", "keep_heap", "freeze_imports", "spin"]

Clock = Callable[[], float]
_READ_CHUNK = 256 * 1024
_DRAIN_LIMIT = 4096  # datagrams handled per wake-up before the timers get a look in
_GSO_LARGEST = MAX_BYTES // 2  # a datagram larger than this never shares a GSO send
_MSG_TRUNC = getattr(socket, "MSG_TRUNC", 0x20)

# Busy-waiting before sleeping (see ``spin``).  A process that blocks in select/epoll takes ~25 µs on this kind
# of VM to be woken again when its datagram arrives: on loopback that is most of a lockstep round trip
# (measured: a Python ping-pong costs ~70 µs a round trip when both sides block, ~22 µs when one side polls).
SPIN_LIMIT = 100e-6  # the longest busy wait before a sleep, in seconds
SPIN_RTT = 500e-6  # only on paths whose smoothed RTT is below this: loopback and a quiet LAN
_SPIN_TRIES = 200  # and never more non-blocking reads than this per wait, whatever the clock says


# glibc's mallopt parameters (malloc.h).  Every received datagram is a fresh ~64 KiB bytes object; by default
# glibc hands the top of the heap back to the kernel whenever more than 128 KiB of it is free, so the next
# datagrams page-fault the same memory in again: ~13 minor faults per 64 KiB block, a sixth of the receiver's
# CPU.  A fixed trim threshold stops that (the peak RSS is unchanged: memory is kept, not added), and a fixed
# mmap threshold keeps the sender's file chunks (up to a window, a few MiB) on the heap too, since fixing
# one threshold turns off glibc's own adjustment of the other.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_TRIM_THRESHOLD = 32 * 1024 * 1024
_MMAP_THRESHOLD = 16 * 1024 * 1024
_heap_kept = False


def keep_heap() -> None:
    """Tune the C allocator once per process for a stream of large, short-lived buffers (glibc only; a no-op
    elsewhere, or if anything about it fails)."""
    global _heap_kept
    if _heap_kept:
        return
    _heap_kept = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


def freeze_imports() -> None:
    """Move every object alive now (the modules, their functions and constants: ~18,000 of them) out of reach of
    Python's cycle collector.  A transfer allocates a few objects per datagram, which sets off a collection
    every few hundred datagrams, and each full one walked all of those objects again: 4 ms a time, 6 % of a
    loopback receiver's CPU in ``perf``.  What the transfer itself creates is still collected."""
    gc.freeze()


class Sink(Protocol):
    def expect_digest(self, algorithm: str, hexdigest: str) -> None: ...  # only when a digest was negotiated
    def expect_size(self, size: int) -> None: ...  # the size the peer announced (tsize), before any data
    def write(self, data: bytes) -> Any: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


@dataclass
class Transfer:
    session: Session
    sock: socket.socket
    source: BinaryIO | None = None  # the file a sending session reads
    sink: Sink | None = None  # where a receiving session's bytes go (an AtomicWriter)
    on_progress: Callable[[int], None] | None = None  # called with file bytes moved since the last call
    started: float = 0.0
    finished_at: float | None = None
    file_bytes: int = 0
    negotiated: Negotiated | None = None
    outcome: TransferComplete | TransferFailed | None = None
    local_error: RudpError | None = None  # a local failure (disk full, unreadable file, network) that ended it
    _eof: bool = False
    _read: int = field(default=0, repr=False)  # file bytes read so far (a sending transfer)
    _acked_payload: int = field(default=0, repr=False)
    # Segmentation offload (``rudp.net.batching``): how much went out and came in batched, and why sending
    # stopped batching if the kernel refused it (an errno name).
    gso_sends: int = 0  # sendmsg calls that carried several datagrams
    gso_datagrams: int = 0  # the datagrams they carried
    gro_reads: int = 0  # reads that returned several coalesced datagrams
    gro_datagrams: int = 0  # the datagrams they held
    gso_refused: str | None = None
    _gso: bool = field(default=False, repr=False)  # send runs of equal datagrams with one sendmsg
    _gro: bool = field(default=False, repr=False)  # the socket coalesces: read with recvmsg and cut
    _bounce_pending: bool = field(default=False, repr=False)  # the peer's port bounced; its last words queued

    def __post_init__(self) -> None:
        # Only a real UDP socket batches (tests drive Transfer over scripted stand-ins); enabling GRO here, on
        # the transfer's own socket, keeps it off every socket whose reader does not cut (server listener, shim).
        self._gso = (
            batching.ENABLED and isinstance(self.sock, socket.socket) and self.sock.type == socket.SOCK_DGRAM
        )
        self._gro = batching.enable_gro(self.sock)

    # ----------------------------------------------------------------- one turn of the ritual
    def service(self, now: float) -> None:
        # Events before transmission: received bytes are written (and a completed upload renamed into place)
        # before the ACK that confirms them leaves, so a write or rename failure can still turn that ACK into
        # an ERROR (Session.abort withdraws what was not yet sent).
        self._feed(now)
        self._collect(now)
        self._transmit()

    def receive(self, clock: Clock) -> bool:
        """Hand every datagram waiting on the socket to the session (bounded per call), then run the ritual.

        Whatever the session queues in answer (an ACK or SACK, the DATA an ACK lets into the window) leaves at
        once rather than after the whole backlog, so the peer is not left idle while this end works through a
        window; the session alone decides how often it answers.  A receiving session's bytes are written first
        (``service``); a sending session's DATA goes out before anything else is done.  True if anything was
        waiting on the socket."""
        session, sock = self.session, self.sock
        gro = self._gro
        stats = session.stats
        queued = stats.datagrams_sent
        sending = self.sink is None
        pending = False  # handled datagrams whose effects ``service`` has not yet seen
        heard = False
        now = 0.0
        budget = _DRAIN_LIMIT
        drained = False
        while budget > 0:
            try:
                if gro:
                    data, ancdata, flags, addr = sock.recvmsg(RECV_SIZE, GRO_CMSG_SPACE, socket.MSG_DONTWAIT)
                else:
                    data, addr = sock.recvfrom(RECV_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                drained = True
                break
            except ConnectionRefusedError:
                self._bounced()
                now, pending, heard = clock(), True, True
                budget -= 1
                continue
            except OSError as exc:
                self._network_failure(exc)
                now, pending, heard = clock(), True, True
                break
            heard = True
            now = clock()
            cut = segments(data, ancdata, flags & _MSG_TRUNC != 0) if gro and ancdata else None
            if cut is None:
                batch: Sequence[bytes] = (data,)  # one datagram as it came (a DATA payload stays a view of it)
            else:
                batch = cut
                self.gro_reads += 1
                self.gro_datagrams += len(batch)
            budget -= len(batch)
            for datagram in batch:
                session.receive_datagram(datagram, addr, now=now)
                pending = True
                if stats.datagrams_sent != queued:
                    if sending:
                        self._transmit()
                    self.service(now)
                    pending = False
                    queued = stats.datagrams_sent
                if session.closed:
                    break
            if session.closed:
                break
        if pending:
            self.service(now)
        if drained and self._bounce_pending:
            # Every datagram that came before the port closed has been read, and none ended the transfer.
            self._bounce_pending = False
            session.peer_unreachable()
            self.service(clock())
        return heard

    def fire_timer(self, clock: Clock) -> bool:
        """Fire the session's timer if it is due, and run the ritual if it did; True if it fired."""
        deadline = self.session.get_timer()
        if deadline is not None:
            now = clock()
            if now >= deadline:
                self.session.handle_timer(now=max(deadline, now))
                self.service(now)
                return True
        return False

    def abort(self, message: str, code: int = ErrorCode.NOT_DEFINED) -> None:
        """Give up (Ctrl-C, shutdown): tell the peer if possible; the partial file is removed in any case."""
        try:
            self.session.abort(message, code=code)
            self._transmit()
        finally:
            if self.sink is not None:
                self.sink.abort()

    def result(self, direction: str, local: str, remote: str, peer: str) -> TransferResult:
        n = self.negotiated
        end = self.finished_at if self.finished_at is not None else time.monotonic()
        ok = isinstance(self.outcome, TransferComplete) and self.local_error is None
        if ok:
            error, code = None, ExitCode.OK
        elif self.local_error is not None:
            error, code = str(self.local_error), self.local_error.exit_code
        elif isinstance(self.outcome, TransferFailed):
            error, code = self.outcome.message, error_for_failure(self.outcome).exit_code
        else:
            error, code = "interrupted", ExitCode.INTERRUPTED
        return TransferResult(
            direction=direction,
            local=local,
            remote=remote,
            peer=peer,
            bytes=self.file_bytes,
            seconds=max(end - self.started, 0.0),
            blksize=n.blksize if n else None,
            windowsize=n.windowsize if n else None,
            timeout=n.timeout if n else None,
            tsize=n.tsize if n else None,
            options_acknowledged=bool(n and n.oack),
            digest=n.digest.algorithm if n and n.digest else None,
            retransmissions=self.session.stats.retransmissions,
            ok=ok,
            error=error,
            exit_code=int(code),
            stats=self.session.stats.as_dict() | self.batching(),
        )

    def batching(self) -> dict[str, Any]:
        """What segmentation offload did for this transfer (``rudp.net.batching``), for the JSON report."""
        return {
            "gso_sends": self.gso_sends,
            "gso_datagrams": self.gso_datagrams,
            "gso_refused": self.gso_refused,
            "gro_reads": self.gro_reads,
            "gro_datagrams": self.gro_datagrams,
        }

    # ----------------------------------------------------------------- the steps
    def _feed(self, now: float) -> None:
        if self.source is None or self._eof:
            return
        session: Any = self.session
        wanted = session.bytes_wanted
        while wanted > 0 and not session.closed:
            try:
                chunk = self.source.read(max(wanted, _READ_CHUNK))
            except OSError as exc:
                self.local_error = LocalFileError(
                    f"cannot read {getattr(self.source, 'name', 'file')}: {exc.strerror}"
                )
                self.session.abort("read error")
                return
            if not chunk:
                self._eof = True
                session.feed_eof(now=now)
                return
            self._read += len(chunk)
            session.feed(chunk, now=now)
            wanted = session.bytes_wanted

    def _transmit(self) -> None:
        out = self.session.datagram_parts_to_send()
        if self._gso and len(out) > 1:
            self._transmit_batched(out)
            return
        for datagram, addr in out:
            if not self._send(datagram, addr):
                return

    def _send(self, datagram: Datagram, addr: Address) -> bool:
        """One datagram with ``sendto``, or a DATA's header and payload gathered by ``sendmsg`` (the payload is
        never copied in user space); False if the network failed and the transfer is over."""
        try:
            self._send_one(datagram, addr)
        except ConnectionRefusedError:
            self._bounced()
            try:
                self._send_one(datagram, addr)
            except OSError:
                pass
        except OSError as exc:
            if exc.errno in (errno.ENOBUFS, errno.EAGAIN):
                return True  # dropped locally, exactly like a loss on the path: the timer recovers
            self._network_failure(exc)
            return False
        return True

    def _send_one(self, datagram: Datagram, addr: Address) -> None:
        if isinstance(datagram, bytes):
            self.sock.sendto(datagram, addr)
        else:
            self.sock.sendmsg(datagram, (), 0, addr)

    def _transmit_batched(self, out: list[tuple[Datagram, Address]]) -> None:
        """Send ``out`` in order, each run of equal-sized datagrams to one address (the last may be shorter) as
        one GSO ``sendmsg`` (``rudp.net.batching``); the wire sees the same datagrams as from ``_send``."""
        i, n = 0, len(out)
        while i < n:
            datagram, addr = out[i]
            size = datagram_length(datagram)
            j = i + 1
            if self._gso and size <= _GSO_LARGEST:
                end = min(n, i + MAX_SEGMENTS, i + MAX_BYTES // size)
                while j < end:
                    other, to = out[j]
                    if to is not addr and to != addr:
                        break
                    length = datagram_length(other)
                    if length != size:
                        if length < size:
                            j += 1  # a shorter datagram may end a run
                        break
                    j += 1
            if j - i > 1:
                sent = self._send_segmented(out[i:j], size, addr)
                if sent is None:
                    return
                if not sent:
                    continue  # batching is now off: the same datagrams again, one at a time
            elif not self._send(datagram, addr):
                return
            i = j

    def _send_segmented(self, run: list[tuple[Datagram, Address]], size: int, addr: Address) -> bool | None:
        """One GSO send of ``run``: True if it left (or was dropped locally, like a loss), False if the kernel
        would not segment it (nothing left; batching is now off on this socket), None if the network failed."""
        buffers: list[Buffer] = []  # one iovec list: the kernel cuts it every ``size`` bytes, headers included
        for datagram, _ in run:
            if isinstance(datagram, bytes):
                buffers.append(datagram)
            else:
                buffers.extend(datagram)
        option = segment_option(size)
        for attempt in (0, 1):
            try:
                self.sock.sendmsg(buffers, option, 0, addr)
            except ConnectionRefusedError:
                if attempt:
                    return True  # as ``_send``: the retry after a bounce is best effort
                self._bounced()
                continue
            except OSError as exc:
                if exc.errno in FALLBACK_ERRNOS:
                    self._gso = False
                    self.gso_refused = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                    return False
                if exc.errno in (errno.ENOBUFS, errno.EAGAIN) or attempt:
                    return True  # dropped locally, exactly like a loss on the path: the timer recovers
                self._network_failure(exc)
                return None
            self.gso_sends += 1
            self.gso_datagrams += len(run)
            return True
        return True  # not reached

    def _collect(self, now: float) -> None:
        session = self.session
        while (event := session.next_event()) is not None:
            if isinstance(event, DataReceived):
                self._store(event.data)
            elif isinstance(event, Negotiated):
                self.negotiated = event
                if event.tsize is not None and self.sink is not None:
                    self.sink.expect_size(event.tsize)  # disk space is reserved toward it as the data comes
                if event.digest is not None and event.digest.value != TRAILER and self.sink is not None:
                    # A digest in the request (spec 7.7): Negotiated precedes every DataReceived, so the sink
                    # hashes the whole file and commit() refuses to move a damaged one into place.  A ``trailer``
                    # digest the session checks itself, before its final ACK.
                    self.sink.expect_digest(*event.digest)
            elif isinstance(event, TransferComplete):
                self.finished_at = now
                if self.sink is not None:
                    try:
                        self.sink.commit()
                    except FsError as exc:
                        # e.g. the name appeared meanwhile (RFC 1350 error 6), or the digest does not match; the
                        # final ACK has not left yet, so abort() replaces it with this ERROR and the peer does not
                        # believe in a stored file.
                        mismatch = isinstance(exc, DigestMismatch)
                        self.local_error = IntegrityError(exc.message) if mismatch else LocalFileError(exc.message)
                        self.outcome = TransferFailed(FailureKind.ABORTED, exc.message, exc.code)
                        session.abort(exc.message, code=exc.code)
                        continue
                if self.source is not None:
                    # Progress counted DATA payload; netascii makes that differ from the file's size.
                    if self._read > self.file_bytes:
                        self._progress(self._read - self.file_bytes)  # so progress callbacks add up to the file
                    self.file_bytes = self._read
                    self._acked_payload = session.stats.payload_bytes
                self.outcome = event
            elif isinstance(event, TransferFailed):
                self.finished_at = now
                if self.outcome is None:
                    self.outcome = event
                if self.sink is not None:
                    self.sink.abort()
        # Acknowledged DATA payload, never beyond the bytes read: a digest after the data (spec 7.7) is no file.
        payload = min(session.stats.payload_bytes, self._read)
        if self.source is not None and payload > self._acked_payload:
            self._progress(payload - self._acked_payload)
            self._acked_payload = payload

    def _store(self, data: bytes) -> None:
        if self.sink is None or self.session.closed:
            return
        try:
            self.sink.write(data)
        except FsError as exc:
            self.local_error = LocalFileError(exc.message)
            self.session.abort(exc.message, code=exc.code)  # e.g. RFC 1350 error 3, disk full
            self.sink.abort()
            return
        self._progress(len(data))

    def _progress(self, n: int) -> None:
        self.file_bytes += n
        if self.on_progress is not None:
            self.on_progress(n)

    def _bounced(self) -> None:
        """ECONNREFUSED: if our peer's port is closed, the transfer is over."""
        peer = self.session.remote
        if peer is None:
            return
        if any(same_host(dest, peer) and dest[1] == peer[1] for dest in bounced_destinations(self.sock)):
            if self._datagram_waiting():
                # Linux reports the ICMP error before datagrams already queued, such as the ERROR the peer sent
                # just before closing its port (disk full, ...): that is the real reason, so read them first;
                # ``receive`` declares the peer gone once they are read and none ended the transfer.
                self._bounce_pending = True
                return
            self.session.peer_unreachable()

    def _datagram_waiting(self) -> bool:
        for _ in range(4):  # each peek may report one more bounce instead of the datagram
            try:
                self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except ConnectionRefusedError:
                continue
            except (BlockingIOError, OSError, AttributeError):
                return False
            return True
        return False

    def _network_failure(self, exc: OSError) -> None:
        self.local_error = NetworkError(f"network error: {exc.strerror or exc}")
        self.session.abort(f"network error: {exc.strerror or exc}")


def spin(transfer: Transfer, clock: Clock) -> bool:
    """Poll the transfer's socket without sleeping for a short while (at most ``SPIN_LIMIT``, twice the smoothed
    RTT, and never past the session's deadline); True if a datagram came and was handled.

    Only on a path whose smoothed RTT is under ``SPIN_RTT``, where the answer is due within microseconds and
    a sleep would cost more than the wait (``SPIN_LIMIT``).  On a longer path this returns at once, so the
    CPU spent is bounded by ``SPIN_LIMIT`` per wait and only ever where it buys a round trip."""
    session = transfer.session
    srtt = session.rtt.srtt
    if srtt is None or srtt > SPIN_RTT or session.closed:
        return False
    now = clock()
    end = now + min(SPIN_LIMIT, 2 * srtt)
    deadline = session.get_timer()
    if deadline is not None and deadline < end:
        end = deadline
    for _ in range(_SPIN_TRIES):
        if transfer.receive(clock):
            return True
        if clock() >= end:
            break
    return False


def run(
    transfer: Transfer, clock: Clock = time.monotonic, on_outcome: Callable[[Transfer], None] | None = None
) -> None:
    """Drive one (client) transfer to its end, dally included; ``on_outcome`` runs as soon as the result is
    known, so a caller can report success before the quiet dally ends."""
    keep_heap()
    with selectors.DefaultSelector() as selector:
        selector.register(transfer.sock, selectors.EVENT_READ)
        transfer.service(clock())
        reported = False
        while not transfer.session.closed:
            if on_outcome is not None and not reported and transfer.outcome is not None:
                reported = True
                on_outcome(transfer)
            if spin(transfer, clock):
                continue
            deadline = transfer.session.get_timer()
            timeout = 1.0 if deadline is None else max(0.0, deadline - clock())  # never sleep unbounded
            if selector.select(timeout):
                transfer.receive(clock)
            else:
                transfer.fire_timer(clock)
        if on_outcome is not None and not reported:
            on_outcome(transfer)
