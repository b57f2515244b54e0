"""Congestion control for selective-repeat transfers: how many blocks may be in flight.

Theory of operation
-------------------
The policy sits behind a small interface (``CongestionControl``, after aioquic's ``congestion/base.py``): the
sender tells it what was acknowledged, what was lost and when its timer expired, and asks ``window`` (blocks
that may be in flight).  It never sees a socket or a clock; ``now`` and the RTT estimator come in as arguments.

``DelayGatedAimd`` is the default.  It is TCP's slow start and additive increase (RFC 5681) with one change
that matters on lossy links: it tells congestion from random loss by queueing delay, as the mission asks.  The
path's queueing delay is the latest round-trip sample minus the smallest seen; it counts as *congested* when that
exceeds ``max(QUEUE_DELAY_FLOOR, min_rtt / 8)``.

* Growth: in slow start the window grows by one block per block acknowledged (doubling each round trip); after
  it, by one block per window acknowledged.  While the path is congested the window does not grow, and slow
  start ends (a queue is building: the window has reached the bottleneck's capacity).  Slow start has then
  overshot (the window doubled once more since the queue began), so the window drops to what the path holds
  without the queue: times min RTT / latest RTT, at most halved.
* Loss while congested: a bottleneck queue overflowed, or a loss met a queue.  The window shrinks to what the
  path holds without the queue (times min RTT / latest RTT), but never below ``BETA`` (0.7, CUBIC's) of
  itself, once per round trip (losses of blocks sent before the reduction belong to the same episode); so a
  random loss that meets a small queue costs a few percent, not 30 % of the link.
* Loss while not congested: random loss (radio, a lossy link).  The window is left alone: throttling would only
  slow the transfer down, which is what makes TCP CUBIC crawl at 1-2 % random loss.
* Timer expiry: the ACK clock stopped.  The window halves (not to one block: a lost window tail on a lossy link
  is no reason to start from nothing).
* Pacing: new blocks leave at ``pacing_rate`` (the window per smoothed round trip, times 2 in slow start and
  1.25 after, as Linux paces TCP), in bursts of at most ``PACING_BURST`` blocks, so a window that just grew is
  not dumped into a short bottleneck queue at once.

``WindowPacing`` is the default for go-back-N (RFC 7440 windows with standard peers).  Such a receiver
acknowledges only a whole window (or a gap), so a sender cannot keep fewer blocks in flight without stalling it;
what it can choose is how fast a window leaves.  It paces, at a rate in blocks per second:

* Start-up: before a round trip is measured, windows leave unpaced; then the rate starts at ``2 *
  INITIAL_WINDOW`` blocks per round trip and doubles every smoothed round trip *while a window is being sent*
  (a go-back-N sender hears nothing until the window ends, so waiting for ACKs to grow would take one window
  per doubling).  Start-up ends at the first sign of a queue, at the delivery rate of the ACK that showed it
  (n blocks of the window whose first block left at t0 took ``now - t0 - min_rtt``, the round trip's fixed part
  taken out), or half the rate reached when the ACK covered too few blocks to tell.
* Queue: the newest acknowledged block's round trip, from its latest transmission, exceeds the smallest round
  trip by ``max(QUEUE_DELAY_FLOOR, min_rtt / 8)``.  (The RTO estimator may not use such samples, Karn's rule;
  they are good enough to see a queue, and go-back-N resends so much that few blocks are ever sent once.)
* Afterwards: each ACK that finds no queue raises the rate by ``GROWTH``, each that finds one lowers it by as
  much (``DRAIN``), so the rate settles just under the bottleneck's; a loss with a queue multiplies it by
  ``BETA`` once per episode; a loss without one changes nothing (random loss); a timer expiry (usually a
  window's tail lost in a full queue, a gap no go-back-N receiver can report) multiplies it by ``BETA`` too.
  It never goes below ``MIN_WINDOW`` blocks per round trip.
* Timer: a go-back-N round trip is sampled once a window, so the RTO cannot anticipate the queue the next
  step up of the rate builds; the retransmission timer waits ``2 * GROWTH`` of a window's sending time
  longer (``timer_allowance``), within the TFTP timeout.

``FixedWindow`` keeps the negotiated window as it is and never paces (``--congestion none``: the policy before
this module, and a baseline for tests).
"""

from __future__ import annotations

import math

from rudp.core.rtt import RttEstimator

__all__ = [
    "CongestionControl",
    "DelayGatedAimd",
    "WindowPacing",
    "FixedWindow",
    "make_congestion_control",
    "POLICIES",
    "INITIAL_WINDOW",
    "MIN_WINDOW",
    "BETA",
    "QUEUE_DELAY_FLOOR",
    "GROWTH",
    "PACING_BURST",
]

INITIAL_WINDOW = 10  # blocks (RFC 6928's initial window of ten segments)
MIN_WINDOW = 4  # blocks: below this a single loss stalls the ACK clock
BETA = 0.7  # multiplicative decrease (CUBIC, RFC 9438 section 4.6)
QUEUE_DELAY_FLOOR = 0.002  # seconds of queueing delay always tolerated (host and scheduling noise)
GROWTH = 1 / 8  # after slow start, the window grows by this fraction of itself per round trip without a queue
DRAIN = 1 - GROWTH  # go-back-N: the pacing rate shrinks by this for each window that met a queue
DELIVERY_SAMPLE = 20  # go-back-N: blocks an ACK must cover for its delivery rate to be trusted
PACING_GAIN = (2.0, 1.25)  # pacing rate / (window per round trip): in slow start, after it
PACING_BURST = 10  # blocks that may leave back to back


class CongestionControl:
    """The interface.  ``window`` is in blocks; every verb is keyword-only and takes ``now``."""

    def window(self) -> int:
        raise NotImplementedError

    def on_acked(self, *, blocks: int, now: float, rtt: RttEstimator) -> None:
        """``blocks`` blocks were newly acknowledged (cumulatively or by a SACK)."""

    def on_lost(self, *, sent_tx: int, current_tx: int, now: float, rtt: RttEstimator) -> None:
        """A block whose latest transmission was number ``sent_tx`` was judged lost; ``current_tx`` is the
        number of the latest transmission so far."""

    def on_timeout(self, *, now: float) -> None:
        """The retransmission timer expired."""

    def on_window(
        self, *, blocks: int, sent_at: float, last_sent_at: float, now: float, rtt: RttEstimator
    ) -> None:
        """Go-back-N: an ACK covered ``blocks`` blocks of the window whose first block left at ``sent_at``; the
        last of them left at ``last_sent_at``."""

    def pacing_rate(self, *, rtt: RttEstimator, now: float) -> float | None:
        """Blocks per second new blocks may leave at; None: as fast as the window allows."""
        return None

    def timer_allowance(self) -> float:
        """Seconds the retransmission timer should wait beyond the RTO for queueing this policy's own probing
        may add (a go-back-N round trip is sampled once a window, so the RTO alone cannot know it)."""
        return 0.0


class FixedWindow(CongestionControl):
    def __init__(self, *, max_window: int) -> None:
        self.max_window = max_window

    def window(self) -> int:
        return self.max_window


class DelayGatedAimd(CongestionControl):
    def __init__(self, *, max_window: int) -> None:
        self.max_window = max_window
        self.cwnd = float(min(INITIAL_WINDOW, max_window))
        self.ssthresh = math.inf
        self._recovery_tx = 0  # losses of transmissions up to this one belong to the last reduction
        self.reductions = 0  # congestion responses, for statistics and tests
        self.random_losses = 0  # losses judged random (no queue), left alone

    def window(self) -> int:
        return max(1, min(self.max_window, int(self.cwnd)))

    def on_acked(self, *, blocks: int, now: float, rtt: RttEstimator) -> None:
        if congested(rtt):
            if self.cwnd < self.ssthresh:
                # Slow start overshot: the window doubled once more since the queue began.  Leave it at what the
                # path holds without that queue (x min RTT / latest RTT, at most halved), or rudp would sit on a
                # standing queue of its own making for the rest of the transfer.
                least, latest = rtt.stats.min_rtt, rtt.stats.latest
                if least and latest:
                    self.cwnd = max(float(MIN_WINDOW), self.cwnd * max(0.5, least / latest))
            self.ssthresh = min(self.ssthresh, self.cwnd)  # a queue is building: slow start is over
            return
        if self.cwnd < self.ssthresh:
            self.cwnd += blocks  # slow start
        else:
            self.cwnd += blocks * GROWTH  # no queue: grow by GROWTH of the window per round trip
        self.cwnd = min(self.cwnd, float(self.max_window))

    def on_lost(self, *, sent_tx: int, current_tx: int, now: float, rtt: RttEstimator) -> None:
        if sent_tx <= self._recovery_tx:
            return  # part of an episode already answered
        if not congested(rtt):
            self.random_losses += 1
            return
        # Shrink to what the path holds without the queue (the window times min RTT / latest RTT), and by
        # no more than BETA: a loss met with a small standing queue costs a little, not 30 % of the link.
        least, latest = rtt.stats.min_rtt, rtt.stats.latest
        factor = max(BETA, least / latest) if least and latest else BETA
        self.cwnd = max(float(MIN_WINDOW), self.cwnd * factor)
        self.ssthresh = self.cwnd
        self._recovery_tx = current_tx
        self.reductions += 1

    def on_timeout(self, *, now: float) -> None:
        self.cwnd = max(float(MIN_WINDOW), self.cwnd / 2)
        self.ssthresh = self.cwnd

    def pacing_rate(self, *, rtt: RttEstimator, now: float) -> float | None:
        if rtt.srtt is None or rtt.srtt <= 0:
            return None
        gain = PACING_GAIN[0] if self.cwnd < self.ssthresh else PACING_GAIN[1]
        return gain * self.window() / rtt.srtt


def congested(rtt: RttEstimator) -> bool:
    """A queue is building: the latest round trip exceeds the smallest by more than the noise allowance."""
    least, latest = rtt.stats.min_rtt, rtt.stats.latest
    if least is None or latest is None:
        return False
    return latest - least > max(QUEUE_DELAY_FLOOR, least / 8)


class WindowPacing(CongestionControl):
    """Go-back-N: every window goes out whole, at a rate found as the module's theory of operation says."""

    def __init__(self, *, max_window: int) -> None:
        self.max_window = max_window
        self.rate: float | None = None  # blocks per second; None until a round trip is measured
        self.startup = True
        self._ramp_start = 0.0  # start-up: when ``rate`` was last set (it doubles every SRTT from there)
        self._recovery_tx = 0
        self._queue = False  # the latest acknowledged block met a queue
        self.reductions = 0
        self.random_losses = 0

    def window(self) -> int:
        return self.max_window

    def pacing_rate(self, *, rtt: RttEstimator, now: float) -> float | None:
        srtt = rtt.srtt
        if srtt is None or srtt <= 0:
            return None
        if self.rate is None:
            self.rate, self._ramp_start = PACING_GAIN[0] * INITIAL_WINDOW / srtt, now
        rate = self._ramped(now, srtt) if self.startup else self.rate
        return max(rate, MIN_WINDOW / srtt)  # never below MIN_WINDOW blocks a round trip

    def _ramped(self, now: float, srtt: float) -> float:
        assert self.rate is not None
        doublings = min(max(0.0, now - self._ramp_start) / srtt, 30.0)
        # Never faster than a whole window per tenth of a round trip: beyond that, pacing changes nothing.
        return min(self.rate * 2.0**doublings, self.max_window * 10 / srtt)

    def on_window(
        self, *, blocks: int, sent_at: float, last_sent_at: float, now: float, rtt: RttEstimator
    ) -> None:
        """``last_sent_at``: when the newest acknowledged block last left (its round trip, Karn or not, tells
        whether it waited in a queue)."""
        least, srtt = rtt.stats.min_rtt, rtt.srtt
        if least is None or srtt is None or self.rate is None:
            return
        self._queue = queue = now - last_sent_at - least > max(QUEUE_DELAY_FLOOR, least / 8)
        if self.startup:
            ramped = self._ramped(now, srtt)
            if queue:
                self.startup = False
                self.rate = self._exit_rate(blocks, now - sent_at - least, ramped)
            else:
                self.rate, self._ramp_start = ramped, now
        elif queue:
            self.rate *= DRAIN  # slower than the path until the queue is gone
        else:
            self.rate *= 1 + GROWTH

    @staticmethod
    def _exit_rate(blocks: int, elapsed: float, ramped: float) -> float:
        """The rate start-up ends at: what the path delivered (``blocks`` in ``elapsed`` seconds, the round
        trip's fixed part taken out), if enough blocks were measured to tell; else half the rate reached (the
        ramp has doubled once more since the queue began)."""
        if blocks >= DELIVERY_SAMPLE and elapsed > 0:
            return min(ramped, blocks / elapsed)
        return ramped / 2

    def timer_allowance(self) -> float:
        # Raising the rate by GROWTH above a bottleneck queues up to GROWTH of a window's sending time.
        return 0.0 if self.rate is None else 2 * GROWTH * self.max_window / self.rate

    def on_lost(self, *, sent_tx: int, current_tx: int, now: float, rtt: RttEstimator) -> None:
        if sent_tx <= self._recovery_tx or self.rate is None:
            return
        if not self._queue:
            self.random_losses += 1  # random loss: no reason to slow down (nor to stop ramping up)
            return
        self._recovery_tx = current_tx
        self.reductions += 1
        if self.startup and rtt.srtt is not None:
            self.startup = False
            self.rate = self._ramped(now, rtt.srtt) / 2
        self.rate *= BETA

    # For go-back-N the sender numbers transmissions by block (``on_lost(sent_tx=lost block, current_tx=highest
    # block sent)``): every restart resends lower blocks, and their losses, while the queue the overshoot built
    # drains, belong to the episode already answered.

    def on_timeout(self, *, now: float) -> None:
        if self.rate is not None:
            # Usually the tail of a window lost in an overflowing queue (a go-back-N receiver cannot see that
            # gap): as for a loss with a queue.  pacing_rate keeps it above MIN_WINDOW blocks a round trip.
            self.rate *= BETA
            self.startup = False


POLICIES = {"delay": DelayGatedAimd, "none": FixedWindow}
WINDOW_POLICIES = {"delay": WindowPacing, "none": FixedWindow}  # go-back-N


def make_congestion_control(name: str, *, max_window: int, selective: bool = True) -> CongestionControl:
    """The policy called ``name`` (``POLICIES``) for a selective-repeat or a go-back-N sender."""
    return (POLICIES if selective else WINDOW_POLICIES)[name](max_window=max_window)
