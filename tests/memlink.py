"""Two sans-I/O sessions wired back to back in memory, with a clock the test steps by hand.

``Link.run()`` delivers datagrams in send order; when nothing is in flight it jumps the clock to the earliest
timer.  A ``drop`` callable decides per datagram (it sees the decoded packet and the direction), which is how
tests lose, and ``log`` records every delivery and drop for assertions.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from rudp.core.client import ReadClient, WriteClient
from rudp.core.config import TransferConfig
from rudp.core.events import DataReceived, TransferComplete, TransferFailed
from rudp.core.server import ReadServer, WriteServer
from rudp.core.session import Session
from rudp.wire.codec import decode
from rudp.wire.packets import Packet, ReadRequest, WriteRequest

CLIENT = ("127.0.0.1", 40000)
SERVER = ("127.0.0.1", 69)
SERVER_TID = ("127.0.0.1", 50001)


@dataclass
class Delivery:
    time: float
    direction: str  # "c>s" or "s>c"
    packet: Packet
    dropped: bool


@dataclass
class Link:
    client: Session
    now: float = 0.0
    server: Session | None = None
    server_config: TransferConfig = field(default_factory=TransferConfig)
    source: bytes = b""  # the file the sending side reads
    drop: Callable[[str, Packet, int], bool] = lambda direction, packet, index: False
    dup: Callable[[str, Packet, int], bool] = lambda direction, packet, index: False
    delay: float = 0.0  # one-way delay of every datagram (virtual seconds)
    jitter: float = 0.0  # plus uniform(0, jitter): datagrams can overtake each other
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    log: list[Delivery] = field(default_factory=list)
    received: bytearray = field(default_factory=bytearray)
    events: list[object] = field(default_factory=list)
    _offset: int = 0
    _eof: bool = False

    def _feed(self, session: Session) -> None:
        wanted = getattr(session, "bytes_wanted", 0)
        while wanted and not self._eof:
            chunk = self.source[self._offset : self._offset + wanted]
            self._offset += len(chunk)
            if chunk:
                session.feed(chunk, now=self.now)
            else:
                self._eof = True
                session.feed_eof(now=self.now)
            wanted = session.bytes_wanted

    def _drain(self, session: Session) -> None:
        while (event := session.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, DataReceived):
                self.received += event.data

    def _accept(self, datagram: bytes) -> None:
        request = decode(datagram)
        if isinstance(request, ReadRequest):
            self.server = ReadServer(request, CLIENT, self.server_config, file_size=len(self.source), now=self.now)
        elif isinstance(request, WriteRequest):
            self.server = WriteServer(request, CLIENT, self.server_config, now=self.now)

    def run(self, *, limit: int = 1_000_000) -> None:
        flight: list[tuple[float, int, str, bytes, tuple]] = []  # (arrival, sequence, direction, datagram, to)
        sequence = 0
        for _ in range(limit):
            for session in (self.client, self.server):
                if session is not None:
                    self._feed(session)
                    self._drain(session)
            outgoing = [("c>s", d, a) for d, a in self.client.datagrams_to_send()]
            if self.server is not None:
                outgoing += [("s>c", d, a) for d, a in self.server.datagrams_to_send()]
            for direction, datagram, addr in outgoing:
                sequence += 1
                arrival = self.now + self.delay + (self.rng.uniform(0, self.jitter) if self.jitter else 0.0)
                heapq.heappush(flight, (arrival, sequence, direction, datagram, addr))
            timers = [t for s in (self.client, self.server) if s is not None and (t := s.get_timer()) is not None]
            if flight and (not timers or flight[0][0] <= min(timers)):
                arrival, index, direction, datagram, addr = heapq.heappop(flight)
                self.now = max(self.now, arrival)
                self._deliver(direction, datagram, addr, index)
                continue
            if not timers:
                return
            self.now = max(self.now, min(timers))
            for session in (self.client, self.server):
                if session is not None:
                    session.handle_timer(now=self.now)
        raise AssertionError("link did not settle")

    def _deliver(self, direction: str, datagram: bytes, addr: tuple, index: int) -> None:
        packet = decode(datagram)
        dropped = self.drop(direction, packet, index)
        self.log.append(Delivery(self.now, direction, packet, dropped))
        if dropped:
            return
        for _ in range(2 if self.dup(direction, packet, index) else 1):
            if direction == "s>c":
                self.client.receive_datagram(datagram, SERVER_TID, now=self.now)
            elif addr == SERVER and (self.server is None or isinstance(packet, (ReadRequest, WriteRequest))):
                if self.server is None:
                    self._accept(datagram)  # a repeated request is absorbed, as a listener does
            elif self.server is not None:
                self.server.receive_datagram(datagram, CLIENT, now=self.now)

    # ------------------------------------------------------------------ assertions helpers
    def packets(self, direction: str, kind: type) -> list[Delivery]:
        return [d for d in self.log if d.direction == direction and isinstance(d.packet, kind)]

    def outcome(self, session: Session) -> object:
        return session.outcome

    def completed(self) -> bool:
        return isinstance(self.client.outcome, TransferComplete) and isinstance(
            getattr(self.server, "outcome", None), TransferComplete
        )

    def failed(self, session: Session) -> TransferFailed:
        assert isinstance(session.outcome, TransferFailed), session.outcome
        return session.outcome


def once(match):
    """A drop rule: drop the first datagram for which ``match(packet)`` holds."""
    done = []

    def rule(direction, packet, index):
        if not done and match(packet):
            done.append(packet)
            return True
        return False

    return rule


def _server_default(client: TransferConfig | None) -> TransferConfig:
    """A generous server in the same modes (timer, selective repeat) as the client."""
    if client is None:
        return TransferConfig(blksize=65464, windowsize=64)
    return TransferConfig(
        blksize=65464, windowsize=64, fixed_timeout=client.fixed_timeout, selective=client.selective
    )


def download(data: bytes, config: TransferConfig | None = None, server_config: TransferConfig | None = None, **kw):
    link = Link(
        client=ReadClient("file.bin", SERVER, config or TransferConfig(), now=0.0),
        server_config=server_config or _server_default(config),
        source=data,
        **kw,
    )
    link.run()
    return link


def upload(data: bytes, config: TransferConfig | None = None, server_config: TransferConfig | None = None, **kw):
    config = config or TransferConfig()
    link = Link(
        client=WriteClient("file.bin", SERVER, config, tsize=len(data), now=0.0),
        server_config=server_config or _server_default(config),
        source=data,
        **kw,
    )
    # the uploading client reads the source; the server receives into link.received
    link.run()
    return link
