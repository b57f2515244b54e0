"""Address validation for server sessions: the amplification bound (spec section 17.1).

Theory of operation
-------------------
A server session's first datagram (an OACK, DATA 1 or ACK 0) goes to the source address of a request, and anyone
can forge that.  Until the client proves that it receives what we send, the session must not become a traffic
multiplier toward that address.  The proof is a datagram from the client's endpoint, at this session's own port
(its TID, which only our first datagram told the client), that answers the first datagram:

* a sending session (RRQ): ACK 0 for an OACK (RFC 2347), ACK 1 for DATA 1 (RFC 1350);
* a receiving session (WRQ): a DATA inside the window that our OACK or ACK 0 opened (blocks 1..windowsize).

Until then, once the driver has called ``require_validation``, the session

* sends its first answer once and never resends it on a timer;
* sends it once more only when the driver calls ``answer_again`` because the client repeated its request (a
  client whose first answer was lost does that, RFC 1350 section 2); the listener rations those per source;
* ignores every other datagram from the client (no gap ACK, no resend), though a client's ERROR still ends it;
* ends quietly, TIMED_OUT with no ERROR sent, when ``lifetime`` seconds pass without the proof.

After the proof it behaves exactly as it would without this mixin.  Sessions built without ``require_validation``
(the simulator, in-memory tests) are untouched.  The mixin goes first in a server role's bases so that its
overrides of the public verbs wrap the role's own.
"""

from __future__ import annotations

from rudp.core.events import FailureKind
from rudp.core.receiving import ReceivingSession
from rudp.core.sending import SendingSession
from rudp.core.session import Address, Datagram, Session, State, fmt_address, same_endpoint
from rudp.wire.codec import MalformedPacket, decode
from rudp.wire.packets import Ack, Data, Error, Packet

__all__ = ["AddressValidation"]


class AddressValidation(Session):
    _validating = False
    _validate_until = 0.0
    _first_answer: list[tuple[Datagram, Address]] | None = None
    unvalidated_ignored = 0  # datagrams from the client ignored while its address was unproven

    def require_validation(self, *, now: float, lifetime: float) -> None:
        """Hold back every retransmission until the client has proven it receives our datagrams; give up
        quietly after ``lifetime`` seconds without that proof."""
        if self.closed:
            return
        self._validating = True
        self._validate_until = now + lifetime
        if self._deadline is not None:
            self._deadline = self._validate_until

    @property
    def validated(self) -> bool:
        return not self._validating

    def answer_again(self, *, now: float) -> bool:
        """The client repeated its request: send the first answer once more, if the address is still unproven
        and the answer has left once.  True if something was queued."""
        if not self._validating or self.closed or not self._first_answer:
            return False
        for datagram, addr in self._first_answer:
            self._send_to(datagram, addr)
            self.stats.retransmissions += 1
        # Karn's rule (RFC 6298 section 3): the answer to come may be to either copy.
        for name in ("_oack_sent_at", "_last_sent_at"):
            if hasattr(self, name):
                setattr(self, name, None)
        sent_at = getattr(self, "_sent_at", None)
        if isinstance(sent_at, dict):
            sent_at.clear()
        return True

    def drop_unvalidated(self, reason: str) -> bool:
        """End the session quietly (ABORTED, no ERROR sent) if its client has not proven its address; True if
        it was ended.  The listener uses it to make room for a new request when a limit is reached."""
        if not self._validating or self.closed:
            return False
        self._fail(FailureKind.ABORTED, reason, notify=False)
        return True

    # ----------------------------------------------------------------- wrapping the driver's verbs
    def receive_datagram(self, data: bytes, addr: Address, *, now: float) -> None:
        if self._validating and self.peer is not None and same_endpoint(addr, self.peer) and not self.closed:
            try:
                packet = decode(data)
            except MalformedPacket:
                packet = None  # the base class counts it
            if packet is not None and not isinstance(packet, Error):
                if not self._proves_receipt(packet):
                    self.unvalidated_ignored += 1
                    return
                self._validating = False
        super().receive_datagram(data, addr, now=now)

    def handle_timer(self, *, now: float) -> None:
        if self._validating and self._deadline is not None and now >= self._deadline:
            self._deadline = None
            self.stats.timeouts += 1
            self._fail(
                FailureKind.TIMED_OUT,
                f"no answer from {fmt_address(self.peer)}, whose address was never validated "
                "(nothing was resent to it)",
                notify=False,  # an ERROR would be one more datagram toward a possibly forged address
            )
            return
        super().handle_timer(now=now)

    def datagram_parts_to_send(self) -> list[tuple[Datagram, Address]]:
        out = super().datagram_parts_to_send()
        if self._validating and out and self._first_answer is None:
            self._first_answer = list(out)
        return out

    def _arm(self, now: float) -> None:
        if self._validating:
            self._deadline = self._validate_until  # no retransmission timer: only the end of the wait
            return
        super()._arm(now)

    def _proves_receipt(self, packet: Packet) -> bool:
        if isinstance(self, SendingSession):
            # RFC 2347: ACK 0 confirms an OACK to an RRQ; RFC 1350: ACK 1 answers DATA 1.
            return isinstance(packet, Ack) and packet.block == (0 if self.state is State.NEGOTIATING else 1)
        if isinstance(self, ReceivingSession):
            window = self.negotiated.windowsize if self.negotiated is not None else 1
            return isinstance(packet, Data) and 1 <= packet.block <= window
        return False
