"""The network impairment model: what one direction of a path does to the datagrams offered to it.

Theory of operation
-------------------
A ``Channel`` is one direction of a path.  ``send(data, now)`` offers it one datagram at time ``now`` and returns
what comes out at the far end: nothing (dropped), one ``Delivery``, or two (duplicated), each with its arrival
time on the same clock as ``now``.  The channel holds no socket and reads no clock: the simulator feeds it
virtual time, the UDP shim wall-clock time, a test any numbers it likes.  ``now`` should not decrease between
calls (a smaller ``now`` only makes the queue look fuller than it is).

Each datagram passes through these stages, in this order; a datagram dropped at one stage skips the rest:

1. **Bottleneck** (only with ``rate``).  A drop-tail queue of ``queue`` datagrams in front of a link of ``rate``
   bits per second.  A datagram occupies the link for ``(len(data) + HEADER_BYTES) * 8 / rate`` seconds, where
   ``HEADER_BYTES`` = 28 is an IPv4 header (20) plus a UDP header (8); link-layer framing is not counted.  The
   channel remembers the departure time of every admitted datagram still in the system; the occupancy at
   ``now`` is the number of departures still in the future (the datagram being serialised included).  If it is
   ``queue`` or more, the datagram is dropped (``lost_queue``); otherwise it departs at
   ``max(now, last departure) + serialisation time``.  So a burst of up to ``queue`` datagrams offered at once
   is absorbed without loss, and a sustained overload of twice the rate loses about half.  Without ``rate`` a
   datagram "departs" at ``now``.  A channel whose datagrams already are whole IP packets (the network lab's TUN
   relay) is built with ``header_bytes=0`` so that no header is counted twice.
2. **Burst loss** (only with ``burst = (p, r)``).  A two-state Gilbert-Elliott chain that starts in the good
   state and steps once per datagram reaching this stage: good -> bad with probability ``p``, bad -> good with
   probability ``r``; the step comes first, then a datagram in the bad state is lost (``lost_burst``).  The
   long-run loss rate is ``p / (p + r)`` and bad periods last ``1 / r`` datagrams on average.  The chain counts
   datagrams, not time, and does not step for datagrams the queue already dropped.
3. **Random loss**: each datagram is lost with probability ``loss`` (``lost_random``).
4. **Corruption**: with probability ``corrupt``, 1 to 3 distinct random bits of the payload are flipped (the
   UDP checksum is assumed recomputed, as if the damage happened where checksums do not reach, so the receiver
   sees it).  An empty payload cannot be corrupted.
5. **Delay**: arrival = departure + ``delay`` + uniform(0, ``jitter``).  Jitter alone reorders datagrams sent
   less than ``jitter`` apart, as on a real path whose queues vary.  With probability ``reorder`` the datagram
   is also held back ``reorder_gap`` seconds so that later ones overtake it (``reordered``).
6. **Duplication**: with probability ``dup`` a second, identical copy (same content, corrupted or not) arrives
   ``DUPLICATE_GAP`` (1 us) after the original.

Loss after the bottleneck (stages 2-3) means a lost datagram has still used its share of the link, as when a
radio hop or a later router drops it.

Randomness
----------
The only source of randomness is the ``random.Random`` handed to the constructor, which draws one 64-bit seed
from it for each random effect, in a fixed order (burst, loss, corrupt, jitter, reorder, dup), and from then on
each effect draws from its own generator.  Consequences:

- the same impairment, the same sequence of ``send`` calls and an equally seeded ``rng`` give identical
  deliveries and counters;
- an effect whose parameter is zero draws nothing, so adding ``loss=0`` changes nothing;
- switching one effect on or off does not change the decisions of the others: with the same seed, adding
  ``dup=0.01`` loses exactly the same datagrams as before, and raising ``loss`` from 1 % to 2 % loses a superset
  of the datagrams (for the same offered sequence), which keeps parameter sweeps smooth.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, fields

__all__ = ["Impairment", "Delivery", "Channel", "Counters", "HEADER_BYTES", "DUPLICATE_GAP"]

HEADER_BYTES = 28  # IPv4 (20) + UDP (8) header bytes counted on the bottleneck per datagram
DUPLICATE_GAP = 1e-6  # seconds between a datagram and its duplicate


def _probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"{name} must be a probability between 0 and 1, not {value!r}")


def _seconds(name: str, value: float) -> None:
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")


@dataclass(frozen=True)
class Impairment:
    """One direction of a path.  All probabilities are 0..1, times in seconds; the defaults are a clean path."""

    loss: float = 0.0  # Bernoulli loss per datagram
    burst: tuple[float, float] | None = None  # Gilbert-Elliott (p, r): P(good->bad), P(bad->good)
    dup: float = 0.0  # probability a datagram is delivered twice (the copy follows right behind)
    reorder: float = 0.0  # probability a datagram is held back reorder_gap so later ones overtake it
    reorder_gap: float = 0.010  # seconds a reordered datagram is held back
    delay: float = 0.0  # fixed one-way delay, seconds
    jitter: float = 0.0  # plus uniform(0, jitter) seconds per datagram
    corrupt: float = 0.0  # probability of flipping 1..3 random bits of the payload
    rate: float | None = None  # bottleneck rate in bits per second (None: infinite)
    queue: int = 64  # drop-tail queue length in datagrams in front of the rate limit

    def __post_init__(self) -> None:
        for name in ("loss", "dup", "reorder", "corrupt"):
            _probability(name, getattr(self, name))
        if self.burst is not None:
            if len(self.burst) != 2:
                raise ValueError(f"burst must be a pair (p, r), not {self.burst!r}")
            _probability("burst p (good -> bad)", self.burst[0])
            _probability("burst r (bad -> good)", self.burst[1])
            object.__setattr__(self, "burst", (float(self.burst[0]), float(self.burst[1])))
        for name in ("reorder_gap", "delay", "jitter"):
            _seconds(name, getattr(self, name))
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive number of bits per second or None, not {self.rate!r}")
        if isinstance(self.queue, bool) or not isinstance(self.queue, int) or self.queue < 1:
            raise ValueError(f"queue must be a whole number of datagrams >= 1, not {self.queue!r}")

    @property
    def is_clean(self) -> bool:
        """True when the path does nothing: every datagram arrives once, intact, in order, at the time sent."""
        return (
            self.loss == 0
            and (self.burst is None or self.burst[0] == 0)
            and self.dup == 0
            and self.reorder == 0
            and self.delay == 0
            and self.jitter == 0
            and self.corrupt == 0
            and self.rate is None
        )

    @property
    def burst_loss(self) -> float:
        """The long-run loss rate of the Gilbert-Elliott chain alone, p / (p + r) (0 without a burst model)."""
        if self.burst is None:
            return 0.0
        p, r = self.burst
        return p / (p + r) if p + r > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Delivery:
    at: float  # arrival time (seconds, same clock as `now`)
    data: bytes  # possibly corrupted payload
    duplicate: bool  # this is the extra copy
    corrupted: bool
    reordered: bool


@dataclass
class Counters:
    """What a channel did.  ``delivered`` counts every delivery, duplicate copies included, so
    ``offered == delivered - duplicated + lost``."""

    offered: int = 0
    delivered: int = 0
    lost_random: int = 0
    lost_burst: int = 0
    lost_queue: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    bytes_offered: int = 0
    bytes_delivered: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def lost(self) -> int:
        """All three kinds of loss: random, burst and queue."""
        return self.lost_random + self.lost_burst + self.lost_queue


class Channel:
    """One direction.  Pure and seeded: no clock, no global random; identical inputs -> identical outputs."""

    def __init__(self, impairment: Impairment, rng: random.Random, *, header_bytes: int = HEADER_BYTES) -> None:
        self.impairment = impairment
        self.header_bytes = header_bytes  # added to each datagram's length on the bottleneck
        self.counters = Counters()
        self.bad = False  # the Gilbert-Elliott state
        self._departures: deque[float] = deque()  # departure times of datagrams admitted to the bottleneck
        # One generator per random effect, seeded from the injected rng in a fixed order (see the module doc).
        seeds = [rng.getrandbits(64) for _ in range(6)]
        self._burst_rng, self._loss_rng, self._corrupt_rng, self._jitter_rng, self._reorder_rng, self._dup_rng = (
            random.Random(seed) for seed in seeds
        )

    def queued(self, now: float) -> int:
        """Datagrams in the bottleneck at ``now`` (queued or being serialised)."""
        departures = self._departures
        while departures and departures[0] <= now:
            departures.popleft()
        return len(departures)

    def send(self, data: bytes, now: float) -> list[Delivery]:
        """Offer one datagram at ``now``; return its deliveries: [] when dropped, otherwise 1 or 2, in order."""
        imp = self.impairment
        counters = self.counters
        counters.offered += 1
        counters.bytes_offered += len(data)

        # 1. Bottleneck: drop-tail queue in front of the rate limit.
        departure = now
        if imp.rate is not None:
            if self.queued(now) >= imp.queue:
                counters.lost_queue += 1
                return []
            start = max(now, self._departures[-1]) if self._departures else now
            departure = start + (len(data) + self.header_bytes) * 8 / imp.rate
            self._departures.append(departure)

        # 2. Gilbert-Elliott burst loss: step the chain, then lose the datagram in the bad state.
        if imp.burst is not None:
            p, r = imp.burst
            if self.bad:
                if r > 0 and self._burst_rng.random() < r:
                    self.bad = False
            elif p > 0 and self._burst_rng.random() < p:
                self.bad = True
            if self.bad:
                counters.lost_burst += 1
                return []

        # 3. Bernoulli loss.
        if imp.loss > 0 and self._loss_rng.random() < imp.loss:
            counters.lost_random += 1
            return []

        # 4. Corruption: flip 1..3 distinct bits.
        corrupted = False
        payload = bytes(data)
        if imp.corrupt > 0 and payload and self._corrupt_rng.random() < imp.corrupt:
            payload = _flip_bits(payload, self._corrupt_rng)
            corrupted = True
            counters.corrupted += 1

        # 5. Delay, jitter and the reordering hold-back.
        at = departure + imp.delay
        if imp.jitter > 0:
            at += self._jitter_rng.uniform(0.0, imp.jitter)
        reordered = False
        if imp.reorder > 0 and self._reorder_rng.random() < imp.reorder:
            at += imp.reorder_gap
            reordered = True
            counters.reordered += 1

        # 6. Duplication: an identical copy right behind the original.
        deliveries = [Delivery(at=at, data=payload, duplicate=False, corrupted=corrupted, reordered=reordered)]
        if imp.dup > 0 and self._dup_rng.random() < imp.dup:
            copy = Delivery(at=at + DUPLICATE_GAP, data=payload, duplicate=True, corrupted=corrupted,
                            reordered=reordered)
            deliveries.append(copy)
            counters.duplicated += 1
        counters.delivered += len(deliveries)
        counters.bytes_delivered += len(payload) * len(deliveries)
        return deliveries


def _flip_bits(payload: bytes, rng: random.Random) -> bytes:
    bits = len(payload) * 8
    damaged = bytearray(payload)
    for position in rng.sample(range(bits), min(rng.randint(1, 3), bits)):
        damaged[position >> 3] ^= 1 << (position & 7)
    return bytes(damaged)
