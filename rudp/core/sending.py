"""The DATA-sending half of a transfer: RFC 1350 lockstep and RFC 7440 go-back-N windows.

Theory of operation
-------------------
The driver pushes file bytes in with ``feed`` while ``bytes_wanted`` is positive and calls ``feed_eof`` when the
file ends; the session cuts them into blocks of ``blksize`` and keeps only the blocks not yet acknowledged (at most
one window).  A block shorter than ``blksize`` ends the transfer, so a file whose size is a multiple of
``blksize`` ends with an empty block (RFC 1350 section 6).

Blocks carry absolute numbers 1, 2, 3, ... inside the session; the wire carries them modulo 65536, so block
65536 is sent as 0 (the rollover every common peer uses).  ACKs are mapped back to the absolute number nearest
above the last acknowledged block.

Window: blocks ``base .. base + windowsize - 1`` are sent back to back, then the session waits for an ACK.
An ACK for block k in the window acknowledges everything up to k and a new window starts at k + 1 (go-back-N:
blocks after k that were in flight are sent again).  An ACK that acknowledges nothing new is a duplicate and is
ignored: resending on a duplicate ACK is the Sorcerer's Apprentice bug (RFC 1123 section 4.2.3.1).  With one
exception, the receiver's gap ACK for a window whose *first* block was lost, which repeats the ACK that opened
the window: a repeat that comes at least ``GAP_ACK_DELAY`` of the smallest round trip after the window left
is taken as the receiver's answer to the window (a copy of the opening ACK normally travels right behind it),
so the window is sent again at once, at most once per window sent, and only with windows of more than one
block (a lockstep receiver never sends a gap ACK).  A copy of an ACK that is delayed by most of a round trip
looks the same, and the second copy of the window it causes makes the receiver repeat the next window's
opening ACK equally late; so a window that follows one resent this way is never resent for a repeated ACK
(its own timer still runs).  The chain ends there: a late copy costs at most one window, never the
Sorcerer's Apprentice's endless doubling.  When the
timer expires the whole window from ``base`` is sent again.  windowsize 1 is exactly RFC 1350's lockstep.

Selective repeat (rudp's ``sack`` option, between rudp peers).  The window slides: every ACK or SACK that
advances ``base`` lets new blocks go out at once, keeping up to ``windowsize`` blocks in flight.  A SACK also
says which blocks beyond the first missing one arrived.  Every transmission gets a sequence number; a block is
taken as lost when a block transmitted at least ``PACKET_THRESHOLD`` transmissions after its own latest one has
arrived (the packet threshold of RFC 9002 section 6.1.1, counted in transmissions as RACK does, RFC 8985), and
is then resent at once.  A resent block is judged by its new transmission, so a SACK written before the copy
could arrive never triggers another, and a duplicated or stale SACK reports nothing newer: no Sorcerer's
Apprentice.  When the timer expires, only the oldest block no SACK reported is sent again, as a probe (QUIC's
PTO, RFC 9002 section 6.2.4): a timer that fired early (a stalled path, a busy host) then costs one datagram,
not a window, and once the probe arrives its SACK shows every earlier transmission still missing as lost.

Congestion control (``rudp.core.congestion``).  Selective repeat: new blocks go out only while the blocks in
flight (sent, neither acknowledged nor SACKed) are fewer than the policy's window, and at its pacing rate;
retransmissions of lost blocks are not held back.  Go-back-N: a standard RFC 7440 receiver acknowledges only a
full window (or a gap, or its own timeout), so every window is sent whole, but *paced*: the policy hears of
each window acknowledged, of each loss (a gap ACK, or an ACK short of the blocks sent) and of each timeout, and
its pacing rate spreads the window over the round trip instead of dumping it into a bottleneck queue that
would drop most of it and make every window a retransmission.
"""

from __future__ import annotations

from collections import deque

from rudp.core.config import TransferConfig
from rudp.core.congestion import PACING_BURST, CongestionControl, FixedWindow, make_congestion_control
from rudp.core.digests import TRAILER, Hash, new_hash
from rudp.core.events import Negotiated
from rudp.core.sack import held_blocks
from rudp.core.session import Address, Session, State
from rudp.wire import netascii
from rudp.wire.codec import encode_data_parts
from rudp.wire.packets import Ack, Packet, SelectiveAck

__all__ = ["SendingSession", "PACKET_THRESHOLD", "GAP_ACK_DELAY"]

_WIRE = 0x10000
PACKET_THRESHOLD = 3  # a block is lost once a block this far beyond it has arrived (RFC 9002 section 6.1.1)
GAP_ACK_DELAY = 0.75  # go-back-N: a repeated window-opening ACK this many min RTTs after the window is a gap ACK


class SendingSession(Session):
    def __init__(self, config: TransferConfig, *, peer: Address | None) -> None:
        super().__init__(config, peer=peer)
        self._pending = bytearray()  # fed bytes not yet cut into a block
        self._view: memoryview | None = None  # the last chunk fed, cut into blocks without copying it
        self._eof = False
        self._blocks: dict[int, bytes | memoryview] = {}  # block number -> payload, for unacknowledged blocks
        self._cut_upto = 0  # highest block number cut so far
        self._final: int | None = None  # number of the final (short) block, once known
        self._base = 1  # first unacknowledged block
        self._next = 1  # next block to transmit in the current window
        self._highest_sent = 0
        self._sent_at: dict[int, float] = {}  # block -> when it was sent, for blocks sent exactly once (Karn)
        self._last_tx: dict[int, int] = {}  # selective repeat: block -> sequence number of its latest transmission
        self._last_tx_at: dict[int, float] = {}  # block -> when its latest transmission left
        self._tx_count = 0  # transmissions so far
        self._tx_order: deque[tuple[int, int]] = deque()  # selective repeat: (tx number, block), oldest first
        self._delivered_tx = 0  # selective repeat: the latest transmission known to have arrived
        self._sacked: set[int] = set()  # selective repeat: blocks beyond base the receiver reported holding
        self.congestion: CongestionControl = FixedWindow(max_window=1)  # chosen once the window is negotiated
        self._window_sent_at: float | None = None  # go-back-N: when the current window's first block left
        self._gap_resent = False  # go-back-N: the current window was resent for a repeated ACK
        self._gap_resent_before = False  # go-back-N: ... and so was the one before it
        self._pace_time = 0.0  # when the next new block is due by the pacing rate
        self._pace_wake: float | None = None  # wake-up for blocks held back by pacing
        self._trailer_hash: Hash | None = None  # spec 7.7 ``trailer``: the digest of every byte fed so far
        self._sealed = False  # the end of the file is settled: the trailer, if any, follows the fed bytes

    def _offer_trailer(self, algorithm: str) -> None:
        """Hash every byte fed from now on: if ``trailer`` is agreed, its digest follows them (spec 7.7)."""
        self._trailer_hash = new_hash(algorithm)

    # ----------------------------------------------------------------- file input
    @property
    def bytes_wanted(self) -> int:
        """How many more file bytes the session can use now (0 when the window is stocked or the file ended)."""
        if self._eof or self.state is State.CLOSED:
            return 0
        window = self.negotiated.windowsize if self.negotiated else 1
        blksize = self.negotiated.blksize if self.negotiated else self.config.blksize
        stocked = self._cut_upto - self._base + 1
        fed = len(self._pending) + (len(self._view) if self._view is not None else 0)
        return max(0, (window - stocked + 1) * blksize - fed)

    def feed(self, data: bytes, *, now: float) -> None:
        if self._eof:
            raise ValueError("feed() after feed_eof()")
        if self.config.mode == "netascii":
            data = netascii.encode(data)
        if self._trailer_hash is not None:
            self._trailer_hash.update(data)
        self._spill()  # rare: fed again before the last chunk was cut
        # Bytes are immutable, so blocks can be slices of the chunk: no copy (mutable buffers are copied once).
        self._view = memoryview(data if isinstance(data, bytes) else bytes(data))
        self._pump(now)

    def _spill(self) -> None:
        """Move what is left of the zero-copy chunk into ``_pending`` (a copy of less than a block, usually)."""
        if self._view is not None:
            self._pending += self._view
            self._view = None

    def feed_eof(self, *, now: float) -> None:
        self._eof = True
        self._seal()
        self._pump(now)

    def _seal(self) -> None:
        """Once the file has ended and the options are settled, put the digest after it if ``trailer`` was
        agreed (spec 7.7): the stream's last bytes are the hex digest of everything before them."""
        if self._sealed or not self._eof or self.negotiated is None:
            return
        self._sealed = True
        digest, hashed, self._trailer_hash = self.negotiated.digest, self._trailer_hash, None
        if digest is not None and digest.value == TRAILER and hashed is not None:
            self._spill()
            self._pending += hashed.hexdigest().encode("ascii")

    # ----------------------------------------------------------------- protocol
    def _start_transfer(self, negotiated: Negotiated, now: float) -> None:
        self.congestion = make_congestion_control(
            self.config.congestion, max_window=negotiated.windowsize, selective=negotiated.selective
        )
        self._negotiated(negotiated)
        self._move(State.TRANSFERRING)
        self._seal()  # the file may have ended before the peer answered
        self._progress()
        self._pump(now)

    def _cut(self) -> None:
        """Cut fed bytes into blocks until the window is stocked."""
        assert self.negotiated is not None
        blksize, window = self.negotiated.blksize, self.negotiated.windowsize
        while self._final is None and self._cut_upto < self._base + window - 1:
            view = self._view
            if self._pending and view is not None:  # a block straddling two chunks: complete it (a copy)
                need = blksize - len(self._pending)
                self._pending += view[:need]
                view = self._view = view[need:] if len(view) > need else None
            if not self._pending and view is not None and len(view) >= blksize:
                payload: bytes | memoryview = view[:blksize]
                self._view = view[blksize:] if len(view) > blksize else None
            elif view is not None and not self._pending:  # less than a block left: keep it for the next chunk
                self._spill()
                continue
            elif len(self._pending) >= blksize:
                with memoryview(self._pending) as pending:
                    payload = bytes(pending[:blksize])
                del self._pending[:blksize]
            elif self._eof:
                payload = bytes(self._pending)
                self._pending.clear()
                self._final = self._cut_upto + 1
            else:
                return
            self._cut_upto += 1
            self._blocks[self._cut_upto] = payload

    def _pump(self, now: float) -> None:
        """Transmit the blocks of the current window that are ready and not yet sent."""
        if self.state is not State.TRANSFERRING:
            return
        assert self.negotiated is not None
        self._cut()
        end = self._base + self.negotiated.windowsize
        selective = self.negotiated.selective
        if selective:  # congestion control: at most its window in flight (sent, not acknowledged nor SACKed)
            in_flight = self._next - self._base - len(self._sacked)
            end = min(end, self._next + max(0, self.congestion.window() - in_flight))
        rate = self.congestion.pacing_rate(rtt=self.rtt, now=now)
        sent = False
        while self._next < end and self._next in self._blocks:
            if rate is not None:  # a token bucket of PACING_BURST blocks, refilled at ``rate`` blocks/s
                burst = PACING_BURST / rate
                if now < self._pace_time - burst:
                    self._pace_wake = self._pace_time - burst
                    break
                self._pace_time = max(self._pace_time, now) + 1 / rate
            block = self._next
            if block <= self._highest_sent:
                self.stats.retransmissions += 1
                self._sent_at.pop(block, None)  # Karn's rule: an ACK now could be for either copy
            else:
                self._highest_sent = block
                self._sent_at[block] = now
            self._tx_count += 1
            self._last_tx_at[block] = now
            if selective:
                self._last_tx[block] = self._tx_count
                self._tx_order.append((self._tx_count, block))
            elif block == self._base:
                self._window_sent_at = now
            self._send(encode_data_parts(block % _WIRE, self._blocks[block]))
            self._next += 1
            sent = True
        if sent and not (selective and self._deadline is not None):
            self._arm(now)  # go-back-N: from the window's last block; selective: the timer already runs

    def _timeout(self) -> float:
        base = super()._timeout()
        if self.config.fixed_timeout:
            return base
        return min(self.rtt.maximum, base + self.congestion.timer_allowance())

    def get_timer(self) -> float | None:
        times = [t for t in (self._deadline, self._pace_wake) if t is not None]
        return min(times) if times else None

    def handle_timer(self, *, now: float) -> None:
        if self._pace_wake is not None and now >= self._pace_wake:
            self._pace_wake = None
            self._pump(now)
        super().handle_timer(now=now)

    def _resend(self, block: int, now: float) -> None:
        """Selective repeat: send one block again."""
        self.stats.retransmissions += 1
        self._sent_at.pop(block, None)  # Karn's rule
        self._tx_count += 1
        self._last_tx[block] = self._tx_count
        self._tx_order.append((self._tx_count, block))
        self._last_tx_at[block] = now
        self._send(encode_data_parts(block % _WIRE, self._blocks[block]))

    def _on_sack(self, block: int, bitmap: bytes, now: float) -> None:
        """Selective repeat: an ACK or SACK.  Slide the window, note what arrived, resend what is lost."""
        acked = self._base - 1 + (block - (self._base - 1)) % _WIRE
        if acked >= self._next:
            self.stats.duplicates += 1  # older than base (a late SACK) or for blocks never sent: no news
            return
        newest: int | None = None  # the highest block this (S)ACK reports for the first time
        sample_from: float | None = None  # when that block was sent, if it was sent once (Karn)
        fresh = 0  # blocks this (S)ACK reports for the first time
        advanced = acked >= self._base
        if advanced:
            for done in range(self._base, acked + 1):
                self._delivered(done, now)
                sent_at = self._sent_at.pop(done, None)
                self._last_tx.pop(done, None)
                self._last_tx_at.pop(done, None)
                if done in self._sacked:
                    self._sacked.discard(done)  # reported before: its round trip was measured then
                else:
                    fresh += 1
                    newest, sample_from = done, sent_at
                payload = self._blocks.pop(done)
                self.stats.payload_bytes += len(payload)
                self.stats.blocks += 1
            self._base = acked + 1
            self._progress()
            if acked == self._final:
                self._rtt_sample(sample_from, now)
                self._deadline = None
                self._complete()
                self._close()
                return
        else:
            self.stats.duplicates += 1
        for held in held_blocks(acked, bitmap):
            if held >= self._next:
                break
            if held >= self._base and held not in self._sacked:
                self._sacked.add(held)
                self._delivered(held, now)
                fresh += 1
                newest, sample_from = held, self._sent_at.get(held)
        if newest is not None:
            self._rtt_sample(sample_from, now)
        if advanced or fresh:
            self._deadline = None  # progress: the timer restarts from now (RFC 6298 section 5.3)
            self.congestion.on_acked(blocks=fresh, now=now, rtt=self.rtt)
        # Loss detection, in transmission order (so a SACK costs what it reports, not the whole window): every
        # transmission at or before ``lost_before`` whose block is still missing (neither acknowledged, nor
        # SACKed, nor sent again since) is lost, if some block beyond base was SACKed.
        lost_before = self._delivered_tx - PACKET_THRESHOLD
        order, last_tx, sacked = self._tx_order, self._last_tx, self._sacked
        while order and order[0][0] <= lost_before:
            tx, missing = order[0]
            if last_tx.get(missing) != tx or missing in sacked:
                order.popleft()  # delivered, or superseded by a later copy with its own entry
                continue
            if not sacked:
                break  # nothing beyond base arrived: no evidence yet (the timer's probe will find out)
            order.popleft()
            self.congestion.on_lost(sent_tx=tx, current_tx=self._tx_count, now=now, rtt=self.rtt)
            self._resend(missing, now)
        self._next = max(self._next, self._base)
        self._pump(now)
        if self._deadline is None:
            self._arm(now)

    def _delivered(self, block: int, now: float) -> None:
        """``block`` arrived: its latest transmission is the newest known delivery, unless that transmission is
        too recent to be the copy that arrived (a resent block whose first copy was only late; RFC 8985
        section 6.1 rules out such deliveries by their round-trip time)."""
        tx = self._last_tx.get(block)
        if tx is None or tx <= self._delivered_tx:
            return
        if block not in self._sent_at:  # resent: which copy arrived?
            least = self.rtt.stats.min_rtt
            if least is None or now - self._last_tx_at[block] < least:
                return
        self._delivered_tx = tx

    def _on_ack(self, ack: Ack, now: float) -> None:
        assert self.negotiated is not None
        if self.negotiated.selective:
            self._on_sack(ack.block, b"", now)
            return
        acked = self._base - 1 + (ack.block - (self._base - 1)) % _WIRE
        if acked >= self._next:
            return  # acknowledges a block never sent (a stale ACK from before a rollover): ignore it
        if acked < self._base:
            # RFC 1123 section 4.2.3.1: a duplicate ACK must not cause a retransmission (Sorcerer's Apprentice).
            self.stats.duplicates += 1
            if acked == self._base - 1 and self._is_gap_ack(now):
                # RFC 7440 section 4: the receiver's ACK of its last in-order block after a gap; the gap is this
                # window's first block.  Once per window sent (see the module's theory of operation).
                self._lost(self._base, now)
                self._window_sent_at = None
                self._gap_resent = True
                self._next = self._base
                self._pump(now)
            return
        self._rtt_sample(self._sent_at.get(acked), now)
        last_sent_at = self._last_tx_at.get(acked)
        if self._window_sent_at is not None and last_sent_at is not None:
            self.congestion.on_window(
                blocks=acked - self._base + 1,
                sent_at=self._window_sent_at,
                last_sent_at=last_sent_at,
                now=now,
                rtt=self.rtt,
            )
        if acked < self._next - 1:
            self._lost(acked + 1, now)  # RFC 7440 section 4: the receiver stopped at a gap (or gave up waiting)
        for block in range(self._base, acked + 1):
            self._sent_at.pop(block, None)
            self._last_tx_at.pop(block, None)
            payload = self._blocks.pop(block)
            self.stats.payload_bytes += len(payload)
            self.stats.blocks += 1
        self._base = acked + 1
        self._next = self._base  # RFC 7440 section 4: the next window starts after the acknowledged block
        self._gap_resent_before, self._gap_resent = self._gap_resent, False
        self._progress()
        if acked == self._final:
            self._deadline = None
            self._complete()
            self._close()
            return
        self._deadline = None
        self._pump(now)

    def _lost(self, block: int, now: float) -> None:
        """Go-back-N: ``block`` (sent in the current run from ``base``) did not arrive; tell the policy."""
        # Numbered by block (see WindowPacing): losses of blocks resent after a reduction are the same episode.
        self.congestion.on_lost(sent_tx=block, current_tx=self._highest_sent, now=now, rtt=self.rtt)

    def _is_gap_ack(self, now: float) -> bool:
        assert self.negotiated is not None
        if self.negotiated.windowsize == 1 or self._gap_resent_before:
            return False
        least = self.rtt.stats.min_rtt
        sent = self._window_sent_at
        return least is not None and sent is not None and now - sent >= GAP_ACK_DELAY * least

    def _resend_window(self, now: float) -> None:
        assert self.negotiated is not None
        self.congestion.on_timeout(now=now)
        if self.negotiated.selective:
            probe = next((b for b in range(self._base, self._next) if b not in self._sacked), None)
            if probe is not None:
                self._resend(probe, now)
            self._pump(now)
            self._arm(now)
            return
        self._next = self._base
        self._pump(now)
        if self._deadline is None:  # nothing was ready to send: keep waiting for the file
            self._arm(now)

    def _data_packet(self, packet: Packet, now: float) -> None:
        """Handle a packet while TRANSFERRING."""
        if isinstance(packet, Ack):
            self._on_ack(packet, now)
        elif isinstance(packet, SelectiveAck) and self.negotiated is not None and self.negotiated.selective:
            self._on_sack(packet.block, packet.bitmap, now)
        # OACK or DATA now: a late duplicate of the handshake, or nonsense; neither changes anything.

    def _on_timeout(self, now: float) -> None:
        if self.state is State.TRANSFERRING:
            if self._retry(f"ACK of block {self._base % _WIRE}"):
                self._resend_window(now)
