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
  start ends (a queue is building: the window has reached the bottleneck's capacity).
* Loss while congested: a bottleneck queue overflowed.  The window shrinks to ``BETA`` (0.7, CUBIC's) of
  itself, once per round trip (losses of blocks sent before the reduction belong to the same episode).
* Loss while not congested: random loss (radio, a lossy link).  The window is left alone: throttling would only
  slow the transfer down, which is what makes TCP CUBIC crawl at 1-2 % random loss.
* Timer expiry: the ACK clock stopped.  The window halves (not to one block: a lost window tail on a lossy link
  is no reason to start from nothing).
* Pacing: new blocks leave at ``pacing_rate`` (the window per smoothed round trip, times 2 in slow start and
  1.25 after, as Linux paces TCP), in bursts of at most ``PACING_BURST`` blocks, so a window that just grew is
  not dumped into a short bottleneck queue at once.

``FixedWindow`` keeps the negotiated window as it is (the policy before this module, and a baseline for tests).
"""

from __future__ import annotations

import math

from rudp.core.rtt import RttEstimator

__all__ = [
    "CongestionControl",
    "DelayGatedAimd",
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

    def pacing_rate(self, *, rtt: RttEstimator) -> float | None:
        """Blocks per second new blocks may leave at; None: as fast as the window allows."""
        return None


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
        if self._congested(rtt):
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
        if not self._congested(rtt):
            self.random_losses += 1
            return
        self.cwnd = max(float(MIN_WINDOW), self.cwnd * BETA)
        self.ssthresh = self.cwnd
        self._recovery_tx = current_tx
        self.reductions += 1

    def on_timeout(self, *, now: float) -> None:
        self.cwnd = max(float(MIN_WINDOW), self.cwnd / 2)
        self.ssthresh = self.cwnd

    def pacing_rate(self, *, rtt: RttEstimator) -> float | None:
        if rtt.srtt is None or rtt.srtt <= 0:
            return None
        gain = PACING_GAIN[0] if self.cwnd < self.ssthresh else PACING_GAIN[1]
        return gain * self.window() / rtt.srtt

    @staticmethod
    def _congested(rtt: RttEstimator) -> bool:
        least, latest = rtt.stats.min_rtt, rtt.stats.latest
        if least is None or latest is None:
            return False
        return latest - least > max(QUEUE_DELAY_FLOOR, least / 8)


POLICIES = {"delay": DelayGatedAimd, "none": FixedWindow}


def make_congestion_control(name: str, *, max_window: int) -> CongestionControl:
    return POLICIES[name](max_window=max_window)
