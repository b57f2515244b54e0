"""The sans-I/O session base: what every TFTP transfer role shares.

Theory of operation
-------------------
A session is one transfer seen from one end.  Its driver feeds it datagrams (``receive_datagram``) and timer
expiries (``handle_timer``), always with the current time as an argument, and after each call collects what to
transmit (``datagrams_to_send``), when to wake it next (``get_timer``) and what happened (``next_event``).  The
session never touches a socket, a file, the clock or a random generator.

Lifecycle: ``state`` moves REQUESTING -> NEGOTIATING -> TRANSFERRING -> (DALLYING) -> CLOSED, with the table in
``_TRANSITIONS`` as the only legal moves.  A terminal ``TransferComplete`` or ``TransferFailed`` event is emitted
exactly once; after it the session answers nothing but a repeated final DATA while it dallies.

Retransmission: whatever the session is waiting on (an answer to its request, an ACK for its window, the next
DATA) has one deadline.  When it passes, the session resends its last unanswered datagram(s).  The wait is the
RFC 6298 RTO from measured round trips (``rudp.core.rtt``), doubled after each expiry and never above the TFTP
timeout (the negotiated RFC 2349 one once known); with ``config.fixed_timeout`` it is always that timeout, as in
classic TFTP.  A retry counts toward ``config.retries`` only when the wait was the full timeout, so giving up
takes at least as long as with the classic timer: ``retries`` full timeouts without progress end the transfer
with TIMED_OUT (plus the short backed-off waits before them).  Progress resets the count.  The roles offer
round-trip samples only for datagrams sent once (Karn's rule, RFC 6298 section 3).

Peers (TIDs, RFC 1350 section 4): once the peer's address and port are known, a datagram from anywhere else gets
ERROR 5 and changes nothing.  A peer's ERROR ends the transfer and is never answered (RFC 1350 section 2: an
error packet "is not acknowledged, and not retransmitted").  Undecodable datagrams are dropped and counted by
reason.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Any

from rudp.core.config import TransferConfig
from rudp.core.events import Event, FailureKind, Negotiated, TransferComplete, TransferFailed, TransferStats
from rudp.core.rtt import INITIAL_RTO, RttEstimator
from rudp.wire.codec import Buffer, MalformedPacket, decode, encode
from rudp.wire.packets import Error, ErrorCode, Opcode, Packet

__all__ = [
    "Address",
    "Datagram",
    "State",
    "Session",
    "IllegalTransition",
    "datagram_length",
    "same_endpoint",
    "fmt_address",
]

Address = tuple[Any, ...]  # as socket.recvfrom gives it: (host, port) or (host, port, flowinfo, scope_id)
# One datagram to send: its bytes, or a DATA's (header, payload) that a driver gathers without a copy.
Datagram = bytes | tuple[bytes, Buffer]


def datagram_length(datagram: Datagram) -> int:
    return len(datagram) if isinstance(datagram, bytes) else len(datagram[0]) + len(datagram[1])


_ERROR_OPCODE = Opcode.ERROR.to_bytes(2, "big")


class State(enum.Enum):
    REQUESTING = "requesting"  # client: request sent, no answer yet
    NEGOTIATING = "negotiating"  # OACK sent or received, waiting for the other side to confirm it
    TRANSFERRING = "transferring"
    DALLYING = "dallying"  # receiver: final ACK sent, answering a repeated final DATA for a while
    CLOSED = "closed"


_TRANSITIONS: dict[State, set[State]] = {
    State.REQUESTING: {State.NEGOTIATING, State.TRANSFERRING, State.CLOSED},
    State.NEGOTIATING: {State.TRANSFERRING, State.CLOSED},
    State.TRANSFERRING: {State.DALLYING, State.CLOSED},
    State.DALLYING: {State.CLOSED},
    State.CLOSED: set(),
}


class IllegalTransition(RuntimeError):
    """A bug in rudp, never the peer's doing: the session tried a state change the table forbids."""


def same_endpoint(a: Address, b: Address) -> bool:
    return a[0] == b[0] and a[1] == b[1]


class Session:
    def __init__(self, config: TransferConfig, *, peer: Address | None) -> None:
        self.config = config
        self.peer = peer  # the remote TID (address, port); None until a client hears its first answer
        self.server: Address | None = None  # clients: where the request went (the server's well-known port)
        self.state = State.REQUESTING
        self.stats = TransferStats()
        self.negotiated: Negotiated | None = None
        self.outcome: TransferComplete | TransferFailed | None = None
        self._out: list[tuple[Datagram, Address]] = []
        self._events: deque[Event] = deque()
        self._deadline: float | None = None
        self._tries = 0  # full-timeout retransmissions since the last progress
        self.rtt = RttEstimator(
            initial=min(INITIAL_RTO, config.timeout),
            minimum=min(config.min_rto, config.timeout),
            maximum=config.timeout,
        )

    # ----------------------------------------------------------------- the driver's verbs
    def receive_datagram(self, data: bytes, addr: Address, *, now: float) -> None:
        if self.state is State.CLOSED:
            return
        self.stats.datagrams_received += 1
        self.stats.wire_bytes_received += len(data)
        if self.peer is not None and not same_endpoint(addr, self.peer):
            self._wrong_tid(data, addr)
            return
        try:
            packet = decode(data)
        except MalformedPacket as exc:
            self.stats.malformed[exc.reason] += 1
            return
        if self.peer is None and not self._claim_peer(addr, packet):
            if not self._may_answer_later(addr):
                self._wrong_tid(data, addr)
            return
        if isinstance(packet, Error):
            if self.state is State.DALLYING:  # the transfer already succeeded; the peer is just leaving
                self._close()
                return
            if self._recover_from(packet, now):
                return
            self._fail(FailureKind.PEER_ERROR, _describe_error(packet), code=packet.code, notify=False)
            return
        self._on_packet(packet, now)

    def handle_timer(self, *, now: float) -> None:
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            self._on_timeout(now)

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        """What to send, each datagram as one ``bytes``."""
        return [(d if isinstance(d, bytes) else b"".join(d), a) for d, a in self.datagram_parts_to_send()]

    def datagram_parts_to_send(self) -> list[tuple[Datagram, Address]]:
        """What to send, a DATA as its (header, payload) so that a driver can gather them (``sendmsg``) without
        copying the payload; anything else as ``bytes``.  Subclasses that queue at collection time hook here."""
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return self._deadline

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def abort(self, message: str, *, code: int = ErrorCode.NOT_DEFINED) -> None:
        """Give up locally (Ctrl-C, disk full, a failed rename, ...): tell the peer with an ERROR if we know it.

        Datagrams queued but not yet collected by the driver are withdrawn, so a final ACK that has not left
        yet is replaced by the ERROR: the peer never hears "done" for a file we then failed to keep."""
        unsent, self._out = self._out, []
        if self.state is State.DALLYING and not unsent:
            self._close()  # the final ACK is out: the transfer succeeded as far as the peer knows
        elif self.state is not State.CLOSED:
            self._fail(FailureKind.ABORTED, message, code=code, notify=self.peer is not None)

    def peer_unreachable(self) -> None:
        """The driver saw ICMP port unreachable for the peer: nobody is listening there any more."""
        if self.state is State.DALLYING:
            self._close()
        elif self.state is not State.CLOSED:
            message = f"nothing is listening at {fmt_address(self.remote)}"
            self._fail(FailureKind.UNREACHABLE, message, notify=False)

    @property
    def remote(self) -> Address | None:
        """The address this session talks to: the peer's TID once known, else where the request went."""
        return self.peer or self.server

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def finished(self) -> bool:
        """The outcome is known (the session may still dally)."""
        return self.outcome is not None

    # ----------------------------------------------------------------- for the roles
    def _on_packet(self, packet: Packet, now: float) -> None:
        raise NotImplementedError

    def _on_timeout(self, now: float) -> None:
        raise NotImplementedError

    def _recover_from(self, error: Error, now: float) -> bool:
        """The peer sent an ERROR: can the session carry on some other way?  (Clients may retry without
        options; see rudp.core.client.)"""
        return False

    def _claim_peer(self, addr: Address, packet: Packet) -> bool:
        """A valid packet came while the peer is unknown: may ``addr`` become the peer?  (Clients say yes to a
        first answer from the server's host; see rudp.core.client.)"""
        return False

    def _may_answer_later(self, addr: Address) -> bool:
        """A packet from ``addr`` was not taken as the peer's first answer: is ``addr`` still one that could send
        it (then it is ignored, not told ERROR 5)?  Clients say yes to the server's host."""
        return False

    def _wrong_tid(self, data: bytes, addr: Address) -> None:
        self.stats.wrong_tid += 1
        if data[:2] != _ERROR_OPCODE:  # never answer an ERROR: two confused ends would ping-pong
            # RFC 1350 section 4: "If a source TID does not match, the packet should be discarded as erroneously
            # sent from somewhere else.  An error packet should be sent to the source of the incorrect packet,
            # while not disturbing the transfer."
            self._send_to(encode(Error(ErrorCode.UNKNOWN_TID, "Unknown transfer ID")), addr)

    def _move(self, new: State) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.state.value} -> {new.value}")
        self.state = new

    def _send_to(self, datagram: Datagram, addr: Address) -> None:
        self._out.append((datagram, addr))
        self.stats.datagrams_sent += 1
        self.stats.wire_bytes_sent += datagram_length(datagram)

    def _send(self, datagram: Datagram) -> None:
        assert self.peer is not None
        self._send_to(datagram, self.peer)

    def _arm(self, now: float) -> None:
        self._deadline = now + self._timeout()

    def _timeout(self) -> float:
        """Seconds before a retransmission: the RTO, or with ``fixed_timeout`` the TFTP timeout itself (the
        negotiated RFC 2349 one once known, else the local one)."""
        return self.rtt.maximum if self.config.fixed_timeout else self.rtt.rto

    def _dally_time(self) -> float:
        return 2 * self.rtt.maximum if self.config.dally is None else self.config.dally

    def _rtt_sample(self, sent_at: float | None, now: float) -> None:
        """An answer came to something sent once at ``sent_at`` (None: it was resent, so no sample: Karn)."""
        if sent_at is not None and not self.config.fixed_timeout:
            self.rtt.sample(now - sent_at)

    def _progress(self) -> None:
        self._tries = 0

    def _retry(self, waiting_for: str) -> bool:
        """A timeout happened: True if we may retransmit, else the transfer has failed."""
        self.stats.timeouts += 1
        full = self.config.fixed_timeout or self.rtt.rto >= self.rtt.maximum
        self.rtt.backoff()  # RFC 6298 section 5.5
        if not full:
            return True
        if self._tries >= self.config.retries:
            self._fail(
                FailureKind.TIMED_OUT,
                f"timed out waiting for {waiting_for} from {fmt_address(self.remote)} "
                f"after {self.config.retries} retransmissions",
            )
            return False
        self._tries += 1
        return True

    def _negotiated(self, negotiated: Negotiated) -> None:
        self.negotiated = negotiated
        self.rtt.set_maximum(negotiated.timeout)  # RFC 2349: the negotiated timeout is the longest wait
        self._events.append(negotiated)

    def _complete(self) -> None:
        self.outcome = TransferComplete()
        self._events.append(self.outcome)

    def _fail(self, kind: FailureKind, message: str, *, code: int | None = None, notify: bool = True) -> None:
        """End the transfer.  With ``notify`` the peer gets ERROR ``code`` (default 0) carrying ``message``."""
        if notify and self.peer is not None:
            self._send(encode(Error(ErrorCode.NOT_DEFINED if code is None else code, message)))
        self.outcome = TransferFailed(kind, message, code)
        self._events.append(self.outcome)
        self._close()

    def _protocol_error(self, message: str, code: int = ErrorCode.ILLEGAL_OPERATION) -> None:
        self._fail(FailureKind.PROTOCOL_ERROR, message, code=code)

    def _close(self) -> None:
        self._move(State.CLOSED)
        self._deadline = None


def _describe_error(packet: Error) -> str:
    try:
        name = ErrorCode(packet.code).name.replace("_", " ").lower()
    except ValueError:
        name = "unknown error code"
    text = packet.message.strip() or name
    return f"peer sent ERROR {packet.code} ({name}): {text}"


def fmt_address(addr: Address | None) -> str:
    """host:port for people: IPv4-mapped IPv6 shown as IPv4, other IPv6 in brackets."""
    if addr is None:
        return "the peer"
    host = str(addr[0])
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
