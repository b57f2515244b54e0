"""Per-source token buckets: the server's request rate limit (spec section 13.5).

Each source address has a bucket of ``burst`` tokens that refills at ``rate`` tokens a second; a request takes
one token, and a request that finds its bucket empty is dropped without an answer.  Time is an argument, as in
the sessions.  Memory is bounded: a bucket that has refilled completely is indistinguishable from a new one and
is forgotten when the table is pruned; when ``max_sources`` buckets are all in use, requests from new sources are
refused until some refill (fail closed, so a flood of forged sources cannot grow the table).
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["TokenBuckets"]


class TokenBuckets:
    def __init__(self, *, rate: float, burst: int, max_sources: int = 65536) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, not {rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, not {burst}")
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # source -> (tokens, when last counted)

    def take(self, source: Hashable, *, now: float) -> bool:
        """Take one token from ``source``'s bucket; False if it has none left (drop the request)."""
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._prune(now)
                if len(self._buckets) >= self.max_sources:
                    return False
            tokens = float(self.burst)
        else:
            tokens, then = bucket
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[source] = (tokens, now)
            return False
        self._buckets[source] = (tokens - 1.0, now)
        return True

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        full = self.burst / self.rate  # seconds after which any bucket is full again
        for source, (_, then) in list(self._buckets.items()):
            if now - then >= full:
                del self._buckets[source]
