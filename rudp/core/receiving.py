"""The DATA-receiving half of a transfer: in-order delivery, ACK policy, gap ACKs, dallying.

Theory of operation
-------------------
The session expects block ``expected`` (absolute; the wire number is ``expected % 65536``).  A DATA packet's
position relative to it is its signed distance modulo 65536:

* 0, the expected block: its bytes go to the driver as a ``DataReceived`` event.  It is acknowledged when it ends
  a window (``windowsize`` in-order blocks since the last ACK, RFC 7440 section 4) or the file (a block shorter
  than ``blksize``).  With windowsize 1 that is every block: RFC 1350 lockstep.
* negative, a block we already have: a duplicate.  If it is the block we last acknowledged, the ACK was lost
  or late, so it is sent again (RFC 1350: the receiver answers a repeated DATA with its ACK); older duplicates
  are dropped, so duplicated datagrams cannot multiply ACKs.
* positive, a block beyond a gap: dropped (go-back-N keeps no out-of-order blocks) and, once per gap, the last
  in-order block is acknowledged at once so the sender can start its next window there (RFC 7440 section 4).

While waiting, the timer resends the last thing sent (request, OACK, ACK 0 or last ACK) up to ``retries``
times.  After the final ACK the session dallies (RFC 1350 section 6): for ``config.dally`` (default: two
timeouts) it answers a repeated final DATA with the final ACK again, in case that ACK was lost, then closes;
each repeat restarts the dally, since it shows that the sender is still waiting.
"""

from __future__ import annotations

from rudp.core.config import TransferConfig
from rudp.core.events import DataReceived, FailureKind, Negotiated
from rudp.core.session import Address, Session, State
from rudp.wire.codec import encode_ack
from rudp.wire.netascii import NetasciiDecoder
from rudp.wire.packets import Data, ErrorCode, Packet

__all__ = ["ReceivingSession"]

_WIRE = 0x10000
_HALF = 0x8000


class ReceivingSession(Session):
    def __init__(self, config: TransferConfig, *, peer: Address | None) -> None:
        super().__init__(config, peer=peer)
        self._expected = 1
        self._acked = 0  # last block acknowledged
        self._since_ack = 0  # in-order blocks accepted since the last ACK
        self._gap_acked = False  # a gap ACK was already sent for the current ``expected``
        self._last_sent: tuple[bytes, Address] | None = None  # what the timer resends
        self._last_sent_at: float | None = None  # when, if it was sent once (Karn's rule)
        self._decoder = NetasciiDecoder() if config.mode == "netascii" else None
        self._received = 0  # file bytes delivered

    def _start_transfer(self, negotiated: Negotiated) -> None:
        self._negotiated(negotiated)
        self._move(State.TRANSFERRING)

    def _send_remembered(self, datagram: bytes, addr: Address, now: float) -> None:
        """Send something the timer will resend until the peer answers."""
        self._last_sent = (datagram, addr)
        self._last_sent_at = now
        self._send_to(datagram, addr)
        self._arm(now)

    def _answered(self, now: float) -> None:
        """The sender answered what we last sent (the next DATA came): a round-trip sample."""
        self._rtt_sample(self._last_sent_at, now)
        self._last_sent_at = None

    def _ack(self, block: int, now: float) -> None:
        self._acked = block
        self._since_ack = 0
        assert self.peer is not None
        self._send_remembered(encode_ack(block % _WIRE), self.peer, now)

    def _on_data(self, data: Data, now: float) -> None:
        assert self.negotiated is not None
        distance = (data.block - self._expected + _HALF) % _WIRE - _HALF
        if distance < 0:
            self.stats.duplicates += 1
            if self._expected + distance == self._acked:
                assert self._last_sent is not None
                self._send_to(*self._last_sent)  # our ACK was lost or late: answer the repeat (RFC 1350)
                if self.state is State.DALLYING:
                    # The sender is still waiting for the final ACK: keep listening for another full dally.
                    self._deadline = now + self._dally_time()
            return
        if self.state is State.DALLYING:
            return  # the transfer is over: nothing new can arrive, and nothing now is worth an ERROR
        blksize = self.negotiated.blksize
        if len(data.data) > blksize:
            self._protocol_error(
                f"DATA block {data.block} carries {len(data.data)} bytes, more than blksize {blksize}"
            )
            return
        if distance > 0:
            self.stats.out_of_order += 1
            if not self._gap_acked:
                self._gap_acked = True
                # RFC 7440 section 4: on a gap the receiver acknowledges the last in-order block at once.
                self._ack(self._expected - 1, now)
            return
        self._accept(data.data, now)

    def _accept(self, payload: bytes, now: float) -> None:
        assert self.negotiated is not None
        final = len(payload) < self.negotiated.blksize
        self._answered(now)
        self._expected += 1
        self._since_ack += 1
        self._gap_acked = False
        self.stats.payload_bytes += len(payload)
        self.stats.blocks += 1
        self._progress()
        out = payload
        if self._decoder is not None:
            out = self._decoder.feed(payload) + (self._decoder.finish() if final else b"")
        self._received += len(out)
        limit = self.config.max_size
        if limit is not None and self._received > limit:
            self._fail(
                FailureKind.REFUSED, f"file exceeds the {limit}-byte limit", code=ErrorCode.DISK_FULL
            )  # RFC 1350 error 3: "Disk full or allocation exceeded"
            return
        if out:
            self._events.append(DataReceived(out))
        if final:
            self._ack(self._expected - 1, now)
            self._complete()
            self._move(State.DALLYING)
            self._deadline = now + self._dally_time()
        elif self._since_ack >= self.negotiated.windowsize:
            self._ack(self._expected - 1, now)
        else:
            self._arm(now)

    def _data_packet(self, packet: Packet, now: float) -> None:
        """Handle a packet while TRANSFERRING or DALLYING."""
        if isinstance(packet, Data):
            self._on_data(packet, now)
        # ACK, OACK, requests now: nonsense from a sender; ignore rather than kill a working transfer.

    def _on_timeout(self, now: float) -> None:
        if self.state is State.DALLYING:
            self._close()
            return
        what = "the first DATA" if self._expected == 1 else f"DATA block {self._expected % _WIRE}"
        if self._retry(what):
            self.stats.retransmissions += 1
            if self.state is State.TRANSFERRING and self._expected - 1 > self._acked:
                # The window's tail is late or lost: acknowledge what did arrive, so the sender resends only
                # the rest (an ACK for a block inside the window is an ordinary RFC 7440 ACK).
                self._ack(self._expected - 1, now)
                self._last_sent_at = None
                return
            assert self._last_sent is not None
            self._last_sent_at = None  # Karn's rule: the next DATA could answer either copy
            self._send_to(*self._last_sent)
            self._arm(now)

    @property
    def bytes_received(self) -> int:
        return self._received
