"""A virtual-time simulator that runs rudp's real sans-I/O sessions over the impairment model.

Theory of operation
-------------------
Two endpoints, a client and a server, exchange datagrams through two ``Channel``s (one per direction).  Nothing
sleeps: the clock is a number.  Each step takes the earliest of (a) the next datagram arrival in the event heap
and (b) the earliest session timer, advances the clock to it and hands the datagram (every datagram arriving at
that same instant, as a driver drains its socket) or the expiry to the session, then lets the sessions act,
exactly as the socket drivers do (feed, collect events, transmit).  The server side mimics ``rudp.net.server``:
a request to the well-known port creates a server session with a fresh TID; a repeated request while it runs is
ignored.  The sending side reads from an in-memory file; the receiving side collects the bytes.

Everything random comes from one seeded ``random.Random`` split per direction, and events at equal times keep
their insertion order, so a seed and a configuration reproduce a run, and its trace, byte for byte.

Trace records
-------------
With ``trace=``, every datagram handed to a channel gives a ``send`` record (``lost`` says whether the channel
dropped it) and every delivery a ``recv`` record: ``{"t", "event", "dir", "packet", "len"}`` plus ``lost`` on
sends, and on receives ``dup``, ``corrupt`` and ``reordered``, each present only when true (the extra copy of a
duplicated datagram, a payload with flipped bits, a datagram held back).  ``rudp.sim.ladder`` draws them.

RTT measurement
---------------
The sessions keep a fixed retransmission timeout today, so the simulator measures round trips from outside, at
the sending side, by Karn's rule (RFC 6298 section 3): a sample is the time from the only transmission of DATA
block n to the arrival of the first ACK for a block >= n; a block ever sent twice gives no sample.  Only the
first four bytes of each datagram are read (opcode and block, ``struct``), so this costs little per datagram.
Block numbers are unwrapped from 16 bits by the sender's own order: a first transmission is always the block
after the highest sent so far, anything else is a retransmission, and an ACK is mapped to the nearest block at
or below the highest sent.  With a window of W blocks sent back to back, the first blocks of a window include
the time the ACK waits for the rest of the window (the receiver acknowledges once per window, RFC 7440).
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import statistics
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from rudp.core.client import ReadClient, WriteClient
from rudp.core.config import TransferConfig
from rudp.core.digests import TRAILER, new_hash
from rudp.core.events import DataReceived, Digest, Negotiated, TransferComplete, TransferFailed
from rudp.core.options import wanted_digest
from rudp.core.server import ReadServer, RequestRefused, WriteServer, check_request
from rudp.core.session import Session
from rudp.impair.model import HEADER_BYTES, Channel, Delivery, Impairment
from rudp.naive import NaiveReport, analyse, chunks
from rudp.wire.codec import MalformedPacket, decode, describe
from rudp.wire.packets import ReadRequest, WriteRequest

__all__ = ["SimConfig", "SimResult", "simulate", "simulate_naive", "CLIENT", "SERVER", "SERVER_TID"]

# Addresses from the benchmarking range (RFC 2544); nothing is ever sent to them, they only label endpoints.
CLIENT = ("198.18.0.1", 50000)
SERVER = ("198.18.0.2", 69)
SERVER_TID = ("198.18.0.2", 50001)
_MAX_STEPS = 50_000_000
_MAX_VIRTUAL_TIME = 7 * 24 * 3600.0
_DATA, _ACK, _SACK = 3, 4, 0x0100  # RFC 1350 opcodes, and rudp's SACK (its block is cumulative, as an ACK's)
_WIRE = 0x10000  # block numbers on the wire are modulo 65536
_unpack_head = struct.Struct("!HH").unpack_from


@dataclass(frozen=True)
class SimConfig:
    size: int = 1024 * 1024
    direction: str = "upload"  # "upload" (WRQ: client sends) or "download" (RRQ: server sends)
    client: TransferConfig = field(default_factory=lambda: TransferConfig(blksize=1468, windowsize=8))
    server: TransferConfig = field(default_factory=lambda: TransferConfig(blksize=65464, windowsize=64))
    up: Impairment = field(default_factory=Impairment)  # client -> server
    down: Impairment = field(default_factory=Impairment)  # server -> client
    seed: int = 1
    # A peer dying mid-transfer (a crash, a pulled cable): from virtual time ``dies_at`` on, the side named by
    # ``dies`` ("client" or "server", its listener included) receives nothing, sends nothing and its timers never
    # fire again.  The other side must then give up on its own retry budget.
    dies: str | None = None
    dies_at: float = 0.0

    def __post_init__(self) -> None:
        if self.direction not in ("upload", "download"):
            raise ValueError(f"direction must be upload or download, not {self.direction!r}")
        if self.dies not in (None, "client", "server"):
            raise ValueError(f"dies must be None, client or server, not {self.dies!r}")
        if not self.dies_at >= 0:
            raise ValueError(f"dies_at must be >= 0, not {self.dies_at}")
        if self.size < 0:
            raise ValueError("size must be >= 0")


@dataclass
class SimResult:
    ok: bool  # the receiver completed and holds exactly the file
    sender_confirmed: bool  # the sender also got the final ACK (it may not: TFTP's last-ACK problem)
    outcome: str  # "complete", or the failure of the first side that failed
    sim_time: float  # virtual seconds from the request to the last session closing
    transfer_time: float  # virtual seconds from the request to the receiver's completion (or failure)
    size: int
    received: int
    goodput_bps: float  # file bits per virtual second of transfer_time
    client: dict[str, Any]
    server: dict[str, Any]
    up: dict[str, int]
    down: dict[str, int]
    steps: int
    rtt: dict[str, Any] = field(default_factory=dict)  # samples, min, median, mean, max (seconds; None if none)
    rto: dict[str, Any] = field(default_factory=dict)  # seconds, kind ("fixed"), timeouts per side
    # Each side's own ending: "complete", a FailureKind value ("timed-out", ...), or None (no outcome: it never
    # existed, or it died first).
    client_outcome: str | None = None
    server_outcome: str | None = None  # the transfer's server session's (see _first_server)
    # Every server session's, in order: a request repeated after the first transfer ended (a late duplicate)
    # starts another one, as rudp.net.server does.
    server_outcomes: tuple[str | None, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _RttMeter:
    """Karn's-rule RTT samples at the sending side, from the datagrams' first four bytes (see the module doc)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._highest = 0  # highest block number (unwrapped) sent so far
        self._unacked: deque[tuple[int, float]] = deque()  # (block, time of its only transmission), in order
        self._resent: set[int] = set()  # blocks in _unacked sent more than once

    def sent(self, datagram: bytes, now: float) -> None:
        if len(datagram) < 4:
            return
        opcode, wire = _unpack_head(datagram)
        if opcode != _DATA:
            return
        if (wire - self._highest) % _WIRE == 1:  # the sender never skips a block: this is its first sending
            self._highest += 1
            self._unacked.append((self._highest, now))
        else:
            self._resent.add(self._highest - (self._highest - wire) % _WIRE)

    def acked(self, datagram: bytes, now: float) -> None:
        if len(datagram) < 4:
            return
        opcode, wire = _unpack_head(datagram)
        if opcode != _ACK and opcode != _SACK:
            return
        block = self._highest - (self._highest - wire) % _WIRE
        unacked = self._unacked
        while unacked and unacked[0][0] <= block:
            sent_block, sent_at = unacked.popleft()
            if sent_block in self._resent:
                self._resent.discard(sent_block)
            else:
                self.samples.append(round(now - sent_at, 9))  # to the nanosecond, as the trace

    def summary(self) -> dict[str, Any]:
        samples = self.samples
        if not samples:
            return {"samples": 0, "min": None, "median": None, "mean": None, "max": None}
        return {
            "samples": len(samples),
            "min": min(samples),
            "median": statistics.median(samples),
            "mean": statistics.fmean(samples),
            "max": max(samples),
        }


def _file(size: int, seed: int) -> bytes:
    return random.Random(f"rudp-sim-file:{seed}").randbytes(size)


class _Run:
    def __init__(self, config: SimConfig, trace: Callable[[dict[str, Any]], None] | None) -> None:
        self.config = config
        self.trace = trace
        self.now = 0.0
        self.data = _file(config.size, config.seed)
        self.offset = 0
        self.eof = False
        self.received = bytearray()
        self.expected_digest: Digest | None = None  # the receiving session's negotiated digest, if any
        self.channels = {
            "c>s": Channel(config.up, random.Random(f"{config.seed}:up")),
            "s>c": Channel(config.down, random.Random(f"{config.seed}:down")),
        }
        self.heap: list[tuple[float, int, str, Delivery, tuple[Any, ...]]] = []
        self.sequence = itertools.count()
        if config.direction == "upload":
            self.client: Session = WriteClient(
                "sim.bin",
                SERVER,
                config.client,
                tsize=config.size,
                digest=self._digest(config.client.digest_algorithm if self._digest_in_request() else None),
                now=0.0,
            )
        else:
            self.client = ReadClient("sim.bin", SERVER, config.client, now=0.0)
        self.server: Session | None = None
        self.servers: list[Session] = []  # every server session, the current one last
        self.receiver_done_at: float | None = None
        self.data_direction = "c>s" if config.direction == "upload" else "s>c"
        self.rtt = _RttMeter()

    def _dead(self, side: str) -> bool:
        return self.config.dies == side and self.now >= self.config.dies_at

    def _live(self) -> list[Session]:
        sessions: list[Session] = []
        if not self._dead("client"):
            sessions.append(self.client)
        if not self._dead("server"):
            sessions.extend(self.servers)
        return sessions

    # ----------------------------------------------------------------- the ritual, per endpoint
    def _service(self, session: Session, direction: str) -> None:
        wanted = getattr(session, "bytes_wanted", 0)
        while wanted > 0 and not self.eof:
            chunk = self.data[self.offset : self.offset + wanted]
            self.offset += len(chunk)
            if chunk:
                session.feed(chunk, now=self.now)  # type: ignore[attr-defined]
            else:
                self.eof = True
                session.feed_eof(now=self.now)  # type: ignore[attr-defined]
            wanted = session.bytes_wanted  # type: ignore[attr-defined]
        while (event := session.next_event()) is not None:
            if isinstance(event, DataReceived):
                self.received += event.data
            elif isinstance(event, Negotiated) and self._is_receiver(session):
                self.expected_digest = event.digest
            elif isinstance(event, TransferComplete) and self._is_receiver(session) and self._damaged():
                # As the driver's sink does (spec 7.7): the file is checked before it would be kept; a mismatch
                # withdraws the final ACK, the peer gets an ERROR and nothing is kept.
                assert self.expected_digest is not None
                session.abort(f"{self.expected_digest.algorithm} mismatch: file damaged in transit, not kept")
                self.receiver_done_at = self.now
            elif isinstance(event, (TransferComplete, TransferFailed)) and self._is_receiver(session):
                self.receiver_done_at = self.now
        source = CLIENT if session is self.client else self._tid(session)
        for datagram, addr in session.datagrams_to_send():
            self._transmit(direction, datagram, (addr, source))

    def _digest_in_request(self) -> bool:
        """The uploading client carries its digest in the WRQ (a pre-pass), not after the data (spec 7.7)."""
        client = self.config.client
        return client.digest and not client.digest_trailer

    def _digest(self, algorithm: str | None) -> str | None:
        """The file's digest by ``algorithm``, as the side that has the file offers it (spec 7.7); None: none."""
        if algorithm is None:
            return None
        digest = new_hash(algorithm)
        digest.update(self.data)
        return digest.hexdigest()

    def _damaged(self) -> bool:
        """A digest was negotiated in the request and the bytes received do not match it (a ``trailer`` digest
        the receiving session checks itself)."""
        expected = self.expected_digest
        if expected is None or expected.value == TRAILER:
            return False
        digest = new_hash(expected.algorithm)
        digest.update(self.received)
        return digest.hexdigest() != expected.value

    def _is_receiver(self, session: Session) -> bool:
        upload = self.config.direction == "upload"
        return (session is self._first_server()) if upload else (session is self.client)

    def _first_server(self) -> Session | None:
        """The server session of the transfer: the one whose TID the client took as its peer (a request retried
        after a session gave up, or repeated late, starts another session), else the first."""
        for server in self.servers:
            if self.client.peer == self._tid(server):
                return server
        return self.servers[0] if self.servers else None

    def _tid(self, server: Session) -> tuple[str, int]:
        """A server session's TID: SERVER_TID for the first, the next ports for sessions of repeated requests."""
        number = next(n for n, s in enumerate(self.servers) if s is server)
        return (SERVER_TID[0], SERVER_TID[1] + number)

    def _transmit(self, direction: str, datagram: bytes, addr: tuple[Any, ...]) -> None:
        """``addr`` is (destination, source)."""
        if direction == self.data_direction:
            self.rtt.sent(datagram, self.now)
        deliveries = self.channels[direction].send(datagram, self.now)
        self._log("send", direction, datagram, lost=not deliveries)
        for delivery in deliveries:
            heapq.heappush(self.heap, (delivery.at, next(self.sequence), direction, delivery, addr))

    def _log(self, event: str, direction: str, datagram: bytes, **extra: Any) -> None:
        if self.trace is None:
            return
        try:
            what = describe(decode(datagram))
        except MalformedPacket as exc:
            what = f"malformed ({exc.reason})"
        record = {"t": round(self.now, 9), "event": event, "dir": direction, "packet": what, "len": len(datagram)}
        record.update(extra)
        self.trace(record)

    def _deliver(self, direction: str, delivery: Delivery, addresses: tuple[Any, ...]) -> None:
        addr, source = addresses
        datagram = delivery.data
        if self.trace is not None:
            marks = {"dup": delivery.duplicate, "corrupt": delivery.corrupted, "reordered": delivery.reordered}
            self._log("recv", direction, datagram, **{key: True for key, value in marks.items() if value})
        if direction != self.data_direction and not delivery.corrupted:  # a damaged ACK gives no sample
            self.rtt.acked(datagram, self.now)
        if self._dead("client" if direction == "s>c" else "server"):
            return  # a dead peer hears nothing
        if direction == "s>c":
            self.client.receive_datagram(datagram, source, now=self.now)
            return
        if addr == SERVER:  # the listener: requests only
            self._request(datagram)
        else:
            for server in self.servers:
                if self._tid(server) == addr:
                    server.receive_datagram(datagram, CLIENT, now=self.now)

    def _request(self, datagram: bytes) -> None:
        try:
            request = decode(datagram)
        except MalformedPacket:
            return
        if not isinstance(request, (ReadRequest, WriteRequest)):
            return
        if self.server is not None and self.server.outcome is None:
            return  # a repeated request while the transfer runs
        try:
            check_request(request)
        except RequestRefused:
            return
        if isinstance(request, ReadRequest):
            self.offset, self.eof = 0, False  # each session reads the file from its start, as a fresh open does
            self.server = ReadServer(
                request,
                CLIENT,
                self.config.server,
                file_size=self.config.size,
                file_digest=self._digest(wanted_digest(request, self.config.server)),
                now=self.now,
            )
        else:
            self.server = WriteServer(request, CLIENT, self.config.server, now=self.now)
        self.servers.append(self.server)

    # ----------------------------------------------------------------- the loop
    def run(self) -> SimResult:
        steps = 0
        for steps in range(1, _MAX_STEPS + 1):  # noqa: B007 - steps is reported
            sessions = self._live()
            for session in sessions:
                self._service(session, "c>s" if session is self.client else "s>c")
            timers = [t for s in sessions if (t := s.get_timer()) is not None]
            death = (
                self.config.dies_at if self.config.dies is not None and self.now < self.config.dies_at else None
            )
            if death is not None and timers:
                timers.append(death)  # wake at the death, so nothing the dead side queued after it leaves
            next_arrival = self.heap[0][0] if self.heap else None
            if next_arrival is None and not timers:
                break
            if next_arrival is not None and (not timers or next_arrival <= min(timers)):
                # Everything that arrives at this instant is handed over before the endpoints act, as a socket
                # driver drains its socket before it transmits (receivers coalesce their ACKs per batch).
                at = self.heap[0][0]
                self.now = max(self.now, at)
                while self.heap and self.heap[0][0] == at:
                    _, _, direction, delivery, addr = heapq.heappop(self.heap)
                    self._deliver(direction, delivery, addr)
            else:
                self.now = max(self.now, min(timers))
                for session in self._live():
                    session.handle_timer(now=self.now)
            if self.now > _MAX_VIRTUAL_TIME:
                raise RuntimeError(f"simulation ran past {_MAX_VIRTUAL_TIME:.0f} virtual seconds")
        else:
            raise RuntimeError(f"simulation did not settle in {_MAX_STEPS} steps")
        return self._result(steps)

    def _result(self, steps: int) -> SimResult:
        first = self._first_server()
        outcomes = [s.outcome for s in (self.client, first) if s is not None]
        failures = [o for o in outcomes if isinstance(o, TransferFailed)]
        complete = len(outcomes) == 2 and all(isinstance(o, TransferComplete) for o in outcomes)
        intact = bytes(self.received) == self.data
        transfer_time = self.receiver_done_at if self.receiver_done_at is not None else self.now
        outcome = (
            "complete"
            if complete
            else (f"{failures[0].kind.value}: {failures[0].message}" if failures else "no server")
        )
        receiver = first if self.config.direction == "upload" else self.client
        sender = self.client if self.config.direction == "upload" else first
        return SimResult(
            ok=receiver is not None and isinstance(receiver.outcome, TransferComplete) and intact,
            sender_confirmed=sender is not None and isinstance(sender.outcome, TransferComplete),
            outcome=outcome,
            sim_time=self.now,
            transfer_time=transfer_time,
            size=self.config.size,
            received=len(self.received),
            goodput_bps=(8 * len(self.received) / transfer_time) if transfer_time > 0 and intact else 0.0,
            client=self.client.stats.as_dict(),
            server=first.stats.as_dict() if first is not None else {},
            up=self.channels["c>s"].counters.as_dict(),
            down=self.channels["s>c"].counters.as_dict(),
            steps=steps,
            rtt=self.rtt.summary(),
            rto=self._rto(sender),
            client_outcome=_outcome_name(self.client),
            server_outcome=_outcome_name(first),  # the transfer's server session
            server_outcomes=tuple(_outcome_name(server) for server in self.servers),
        )

    def _rto(self, sender: Session | None) -> dict[str, Any]:
        """The sender's retransmission timeout at the end of the run: the fixed TFTP timeout (the negotiated
        RFC 2349 value, else its own), or, for a session that keeps an adaptive ``rtt`` estimator and is not
        configured with ``fixed_timeout``, that estimator's current RTO and SRTT."""
        timeouts = {
            "client": self.client.stats.timeouts,
            "server": first.stats.timeouts if (first := self._first_server()) is not None else 0,
        }
        if sender is None:
            return {"seconds": self.config.server.timeout, "kind": "fixed", "timeouts": timeouts}
        estimator = getattr(sender, "rtt", None)
        rto = getattr(estimator, "rto", None)
        if isinstance(rto, float) and not getattr(sender.config, "fixed_timeout", True):
            srtt = getattr(estimator, "srtt", None)
            return {"seconds": rto, "kind": "adaptive", "srtt": srtt, "timeouts": timeouts}
        seconds = sender.negotiated.timeout if sender.negotiated is not None else sender.config.timeout
        return {"seconds": seconds, "kind": "fixed", "timeouts": timeouts}


def _outcome_name(session: Session | None) -> str | None:
    outcome = None if session is None else session.outcome
    if outcome is None:
        return None
    return "complete" if isinstance(outcome, TransferComplete) else outcome.kind.value


def simulate(config: SimConfig, *, trace: IO[str] | Callable[[dict[str, Any]], None] | None = None) -> SimResult:
    """Run one transfer in virtual time.  ``trace`` gets one record per datagram sent and received (a callable,
    or a text file that receives JSON lines)."""
    sink: Callable[[dict[str, Any]], None] | None
    if trace is None or callable(trace):
        sink = trace  # type: ignore[assignment]
    else:
        stream = trace

        def sink(record: dict[str, Any]) -> None:
            stream.write(json.dumps(record, sort_keys=True) + "\n")

    return _Run(config, sink).run()


def simulate_naive(config: SimConfig) -> NaiveReport:
    """The same file over the same seeded path (client -> server direction), sent the naive way: every chunk
    once, appended by the receiver in arrival order.

    Without a bottleneck rate the chunks go back to back at time 0.  With one, the sender paces itself at the
    link rate, as a sender that knows its link would: each chunk is offered the moment the one before it has
    left the bottleneck (every ``(len + HEADER_BYTES) * 8 / rate`` seconds), so the queue never holds more than
    one and only the path's own losses remain."""
    data = _file(config.size, config.seed)
    channel = Channel(config.up, random.Random(f"{config.seed}:up"))
    rate = config.up.rate
    arrivals: list[tuple[float, int, bytes]] = []
    order = itertools.count()
    now = 0.0
    for piece in chunks(data, config.client.blksize):
        for delivery in channel.send(piece, now):
            arrivals.append((delivery.at, next(order), delivery.data))
        if rate is not None:
            now += (len(piece) + HEADER_BYTES) * 8 / rate  # the channel's own serialisation time, to the bit
    arrivals.sort()
    return analyse(data, [d for _, _, d in arrivals], config.client.blksize)
