"""Retransmission timeout from measured round-trip times: RFC 6298, with the bounds TFTP needs.

Theory of operation
-------------------
``RttEstimator`` keeps SRTT and RTTVAR from round-trip samples and derives the retransmission timeout (RTO):

* before any sample, RTO = ``initial`` (RFC 6298 section 2.1; 1 s there, and never above the TFTP timeout);
* first sample R: SRTT = R, RTTVAR = R/2 (section 2.2);
* later samples R': RTTVAR = (1 - beta) RTTVAR + beta |SRTT - R'|, then SRTT = (1 - alpha) SRTT + alpha R', with
  alpha = 1/8 and beta = 1/4 (section 2.3: RTTVAR is updated with the old SRTT, so the order matters);
* RTO = SRTT + max(G, K RTTVAR) with K = 4 and G the clock granularity, then clamped to ``[minimum, maximum]``.

``backoff()`` doubles the RTO after a timeout, up to ``maximum`` (section 5.5), and the doubled value holds until
the next sample arrives (section 5.7).  Karn's rule (section 3: samples MUST NOT come from retransmitted
segments) is the caller's job: it only offers samples for blocks it sent once; ``sampleable`` helps it decide.

Bounds.  RFC 6298 asks for a 1 s minimum (section 2.4) because TCP's delayed ACKs and coarse clocks once made
anything lower spurious; a TFTP receiver acknowledges at once, and the TFTP ``timeout`` (RFC 2349, default 5 s) is
the classic fixed timer, so here the maximum is that timeout and the minimum is small (``MIN_RTO``, 10 ms): on a
LAN a lost block is resent after milliseconds, not seconds.  Section 2.4's "MAY use a maximum of at least 60 s"
becomes "at most the negotiated timeout", so an rudp peer is never slower than a classic one.

The estimator holds numbers only: no clock, no randomness (STYLE.md sections 1 and 7).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RttEstimator", "RttStats", "ALPHA", "BETA", "K", "K_GRANULARITY", "MIN_RTO", "INITIAL_RTO"]

ALPHA = 1 / 8  # RFC 6298 section 2.3
BETA = 1 / 4  # RFC 6298 section 2.3
K = 4  # RFC 6298 section 2.2
K_GRANULARITY = 0.001  # G: the clock granularity, seconds (time.monotonic is finer; 1 ms as in QUIC, RFC 9002)
MIN_RTO = 0.010  # seconds; see "Bounds" above
INITIAL_RTO = 1.0  # RFC 6298 section 2.1


@dataclass
class RttStats:
    samples: int = 0
    min_rtt: float | None = None
    max_rtt: float | None = None
    latest: float | None = None  # the most recent sample (congestion control reads queueing delay from it)
    backoffs: int = 0


class RttEstimator:
    """SRTT, RTTVAR and RTO per RFC 6298; verbs ``sample(rtt)`` and ``backoff()``; read ``rto``."""

    def __init__(self, *, initial: float = INITIAL_RTO, minimum: float = MIN_RTO, maximum: float) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError(f"need 0 < minimum <= maximum, not {minimum} and {maximum}")
        self.minimum = minimum
        self.maximum = maximum
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self._base = self._clamp(initial)  # the RTO from the estimates, before backoff
        self.rto = self._base
        self.stats = RttStats()

    def sample(self, rtt: float) -> None:
        """A round-trip time measured on a datagram that was sent exactly once (Karn's rule)."""
        # Written out (no min/max/clamp calls): this runs once per ACK, and lockstep lives on ACKs.
        if rtt < 0.0:
            rtt = 0.0
        srtt, rttvar = self.srtt, self.rttvar
        if srtt is None or rttvar is None:
            srtt, rttvar = rtt, rtt / 2  # RFC 6298 section 2.2
        else:
            rttvar = (1 - BETA) * rttvar + BETA * abs(srtt - rtt)  # section 2.3, with the old SRTT
            srtt = (1 - ALPHA) * srtt + ALPHA * rtt
        self.srtt, self.rttvar = srtt, rttvar
        spread = K * rttvar
        rto = srtt + (spread if spread > K_GRANULARITY else K_GRANULARITY)
        rto = self.minimum if rto < self.minimum else self.maximum if rto > self.maximum else rto
        self._base = self.rto = rto  # section 5.7: a new sample ends the backoff
        s = self.stats
        s.samples += 1
        if s.min_rtt is None or rtt < s.min_rtt:
            s.min_rtt = rtt
        if s.max_rtt is None or rtt > s.max_rtt:
            s.max_rtt = rtt
        s.latest = rtt

    def backoff(self) -> None:
        """A retransmission timer expired: double the RTO (RFC 6298 section 5.5), up to the maximum."""
        self.rto = min(self.rto * 2, self.maximum)
        self.stats.backoffs += 1

    def set_maximum(self, maximum: float) -> None:
        """The negotiated TFTP timeout became known: it bounds the RTO from now on."""
        self.maximum = max(maximum, self.minimum)
        self._base = self._clamp(self._base)
        self.rto = min(self.rto, self.maximum)

    def _clamp(self, rto: float) -> float:
        return min(max(rto, self.minimum), self.maximum)
