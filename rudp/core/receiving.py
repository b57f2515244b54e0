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

Selective repeat (rudp's ``sack`` option, negotiated between rudp peers only).  Blocks beyond a gap, up to a
window ahead, are kept (at most ``windowsize`` of them, so memory stays bounded) and delivered once the gap is
filled.  Instead of one ACK per window the receiver sends a SACK (``rudp.core.sack``): the in-order run it holds
plus a bitmap of the blocks it holds beyond the first missing one.  It sends one every ``ack_every`` arrivals (a
quarter window, at most 64: the sender's window slides instead of draining), at once when an arrival opens a new
gap or fills one, when its timer expires, and when the flow pauses: when the driver has handed over everything
that had arrived (``datagrams_to_send``) and no DATA follows within ``PAUSE_GAPS`` of the usual gap between
arrivals (a moving average), at most ``MAX_ACK_DELAY``.  So a window's tail is acknowledged almost at once, not
after a timeout, while a receiver that is merely faster than the link does not answer every single datagram
(which at 100 Mbit/s would be a SACK every 120 µs); the round trips the sender measures grow by those few
gaps at most.  The final ACK is a plain ACK, as in RFC 1350.  The steady state of a clean transfer, the very
block expected, full-sized, from the peer, with nothing held, takes a fast path (``_next_in_order``) that skips
decoding and dispatch but does exactly what the general path does for that block: on loopback the receiver
handles a 64 KiB block every ~25 µs, and the general path's Python was a sixth of that.

While waiting, the timer resends the last thing sent (request, OACK, ACK 0 or last ACK) up to ``retries``
times.  After the final ACK the session dallies (RFC 1350 section 6): for ``config.dally`` (default: two
timeouts) it answers a repeated final DATA with the final ACK again, in case that ACK was lost, then closes;
each repeat restarts the dally, since it shows that the sender is still waiting.
"""

from __future__ import annotations

from rudp.core.config import TransferConfig
from rudp.core.digests import TRAILER, TrailerCheck
from rudp.core.events import DataReceived, FailureKind, Negotiated
from rudp.core.sack import build_bitmap
from rudp.core.session import Address, Datagram, Session, State
from rudp.wire.codec import data_header, data_payload, encode_ack, encode_sack
from rudp.wire.netascii import NetasciiDecoder
from rudp.wire.packets import Data, ErrorCode, Packet
from rudp.wire.schema import HEADER_SIZE

__all__ = ["ReceivingSession"]

_WIRE = 0x10000
_HALF = 0x8000
_DATA_HEAD = int.from_bytes(data_header(0), "big")  # DATA block n's first 4 bytes, as an int: this | n
_TRANSFERRING = State.TRANSFERRING  # (a module constant: an enum member's lookup costs more, once per block)
PAUSE_GAPS = 2.0  # selective repeat: a pause is this many usual inter-arrival gaps without DATA...
MAX_ACK_DELAY = 0.001  # ...but never longer than this (seconds): then the pending SACK leaves
_GAP_GAIN = 1 / 8  # weight of the newest inter-arrival gap in its moving average


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
        self._held: dict[int, bytes] = {}  # selective repeat: blocks beyond a gap, by absolute number
        self._final_block: int | None = None  # selective repeat: the short block's number, once seen
        self._ack_due: float | None = None  # selective repeat: when news arrived that no SACK has reported yet
        self._ack_wake: float | None = None  # selective repeat: when that news is acknowledged if no DATA comes
        self._last_data_at: float | None = None  # selective repeat: when the latest DATA arrived
        self._gap: float | None = None  # selective repeat: moving average of the time between DATA arrivals
        self._trailer: TrailerCheck | None = None  # spec 7.7 ``trailer``: holds back and checks the digest
        self._full_datagram = -1  # selective repeat: the size of a full DATA datagram (the fast path's kind)
        self._ack_every = 1  # selective repeat: a SACK after this many arrivals at most

    def receive_datagram(self, data: bytes, addr: Address, *, now: float) -> None:
        if not self._next_in_order(data, addr, now):
            super().receive_datagram(data, addr, now=now)

    def _start_transfer(self, negotiated: Negotiated) -> None:
        if negotiated.digest is not None and negotiated.digest.value == TRAILER:
            self._trailer = TrailerCheck(negotiated.digest.algorithm)
        if negotiated.selective:
            self._full_datagram = HEADER_SIZE + negotiated.blksize
            self._ack_every = max(1, min(negotiated.windowsize // 4, 8))  # arrivals per SACK: a quarter window
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
        if self.negotiated.selective and self.state is State.TRANSFERRING:
            self._on_data_selective(data, distance, now)
            return
        if distance < 0:
            self.stats.duplicates += 1
            dallying_sr = self.state is State.DALLYING and self.negotiated.selective
            if self._expected + distance == self._acked or dallying_sr:
                # Our ACK was lost or late: answer the repeat (RFC 1350).  A selective-repeat sender that lost
                # the final ACK probes with its oldest unacknowledged block, not the final one: answer that too.
                assert self._last_sent is not None
                self._last_sent_at = None  # Karn's rule: the next DATA could answer either copy
                self._send_to(*self._last_sent)
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
        self._answered(now)
        if not self._take(payload):
            return
        if len(payload) < self.negotiated.blksize:
            self._finish(now)
        elif self._since_ack >= self.negotiated.windowsize:
            self._ack(self._expected - 1, now)
        else:
            self._arm(now)

    def _take(self, payload: bytes) -> bool:
        """Deliver the expected block's bytes; False if that ended the transfer (the size limit)."""
        assert self.negotiated is not None
        size = len(payload)
        final = size < self.negotiated.blksize
        self._expected += 1
        self._since_ack += 1
        self._gap_acked = False
        stats = self.stats
        stats.payload_bytes += size
        stats.blocks += 1
        self._progress()
        out = payload
        if self._decoder is not None:
            out = self._decoder.feed(payload) + (self._decoder.finish() if final else b"")
        trailer = self._trailer
        if trailer is None:
            pieces: tuple[bytes | memoryview, ...] = (out,)
        else:  # spec 7.7: the digest is the stream's end; the file is everything before it
            pieces = trailer.take(out)
            if final:
                pieces += trailer.finish()
        for piece in pieces:
            self._received += len(piece)
        limit = self.config.max_size
        if limit is not None and self._received > limit:
            self._fail(
                FailureKind.REFUSED, f"file exceeds the {limit}-byte limit", code=ErrorCode.DISK_FULL
            )  # RFC 1350 error 3: "Disk full or allocation exceeded"
            return False
        events = self._events
        for piece in pieces:
            if piece:
                events.append(DataReceived(piece))  # type: ignore[arg-type]
        return True

    def _finish(self, now: float) -> None:
        """The final block is in: the final ACK, the outcome, then dally (RFC 1350 section 6)."""
        if self._trailer is not None and not self._trailer.matches():
            # Spec 7.7: damaged in transit.  No final ACK: the peer gets ERROR 0 and nothing is kept.
            self._fail(FailureKind.DAMAGED, self._trailer.mismatch(), code=ErrorCode.NOT_DEFINED)
            return
        self._ack(self._expected - 1, now)
        self._complete()
        self._move(State.DALLYING)
        self._deadline = now + self._dally_time()

    # ----------------------------------------------------------------- selective repeat
    def _on_data_selective(self, data: Data, distance: int, now: float) -> None:
        assert self.negotiated is not None
        window, blksize = self.negotiated.windowsize, self.negotiated.blksize
        if len(data.data) > blksize:
            self._protocol_error(
                f"DATA block {data.block} carries {len(data.data)} bytes, more than blksize {blksize}"
            )
            return
        self._arrived(now)
        block = self._expected + distance
        if distance < 0 or block in self._held:
            self.stats.duplicates += 1
            self._since_ack += 1
            if self._since_ack >= self._ack_every:
                self._sack(now)
            elif self._ack_due is None:
                self._ack_due = now  # the SACK that answers it may have been lost
            return
        if distance >= window or (self._final_block is not None and block > self._final_block):
            return  # beyond any window the sender may send: nonsense, or a stale block from before a rollover
        if len(data.data) < blksize:
            if self._final_block is not None and self._final_block != block:
                self._protocol_error(f"two final blocks: {self._final_block % _WIRE} and {data.block}")
                return
            self._final_block = block
        if distance > 0:
            self.stats.out_of_order += 1
            opens_gap = block - 1 not in self._held and block - 1 >= self._expected
            self._held[block] = data.data
            self._since_ack += 1
            if opens_gap or self._since_ack >= self._ack_every:
                self._sack(now)  # a new gap: tell the sender at once which blocks are missing
            else:
                self._ack_due = now
            return
        recovering = bool(self._held)
        if self._expected == 1:
            self._answered(now)  # mid-stream DATA does not wait for our SACKs: only the first is an answer
        if not self._take(data.data):
            return
        while self._expected in self._held:
            if not self._take(self._held.pop(self._expected)):
                return
        if self._final_block is not None and self._expected > self._final_block:
            self._finish(now)
        elif recovering or self._since_ack >= self._ack_every:
            self._sack(now)
        else:
            self._ack_due = now

    def _arrived(self, now: float) -> None:
        """Selective repeat: a DATA arrived; update the moving average of the time between arrivals."""
        last, self._last_data_at = self._last_data_at, now
        if last is not None:
            gap = now - last
            self._gap = gap if self._gap is None else self._gap + _GAP_GAIN * (gap - self._gap)

    def _next_in_order(self, datagram: bytes, addr: Address, now: float) -> bool:
        """The fast path: if ``datagram`` is the steady state of a clean selective-repeat transfer (the very block
        expected, full-sized, from the peer, nothing held beyond a gap), take it and return True, having done
        exactly what the general path (``receive_datagram`` down to ``_on_data_selective``) does for it, minus
        the decoding and dispatch; else change nothing and return False.  (Nothing held also means the final
        block has not arrived: one that arrives beyond a gap is held until the transfer ends.)
        ``tests/test_receiving_fast.py`` holds the two paths to the same outcome on random traffic."""
        if (
            len(datagram) != self._full_datagram
            or self.state is not _TRANSFERRING
            or self._held
            or int.from_bytes(datagram[:4], "big") != _DATA_HEAD | (self._expected % _WIRE)
        ):
            return False
        peer = self.peer
        if peer is None or addr[1] != peer[1] or addr[0] != peer[0]:
            return False
        stats = self.stats
        stats.datagrams_received += 1
        stats.wire_bytes_received += len(datagram)
        self._arrived(now)
        if self._expected == 1:
            self._answered(now)
        if not self._take(data_payload(datagram)):
            return True
        if self._since_ack >= self._ack_every:
            self._sack(now)
        else:
            self._ack_due = now
        return True

    def datagram_parts_to_send(self) -> list[tuple[Datagram, Address]]:
        """Selective repeat: everything that arrived has been handed over; acknowledge what is news if the flow
        has paused (at once when the gap between arrivals is not known yet)."""
        if self._ack_due is not None and self.state is State.TRANSFERRING:
            gap, last = self._gap, self._last_data_at
            if gap is None or last is None:
                self._sack(self._ack_due)
            else:
                self._ack_wake = last + min(PAUSE_GAPS * gap, MAX_ACK_DELAY)
        return super().datagram_parts_to_send()

    def get_timer(self) -> float | None:
        wake, deadline = self._ack_wake, self._deadline
        if wake is None:
            return deadline
        return wake if deadline is None or wake < deadline else deadline

    def handle_timer(self, *, now: float) -> None:
        wake = self._ack_wake
        if wake is not None and now >= wake:
            self._ack_wake = None
            if self._ack_due is not None and self.state is State.TRANSFERRING:
                self._sack(now)
        super().handle_timer(now=now)

    def _sack(self, now: float) -> None:
        self._ack_due = None
        self._ack_wake = None
        cumulative = self._expected - 1
        self._acked = cumulative
        self._since_ack = 0
        assert self.peer is not None
        sack = encode_sack(cumulative % _WIRE, build_bitmap(cumulative, self._held))
        self._send_remembered(sack, self.peer, now)

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
            selective = self.negotiated is not None and self.negotiated.selective
            if self.state is State.TRANSFERRING and selective and (self._expected > 1 or self._held):
                self._sack(now)  # what we hold now, which may say more than the last one did
                self._last_sent_at = None
                return
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
