"""What the lab's link does: ``LinkSpec``, the same impairment in each direction, in the units a benchmark uses.

A ``LinkSpec`` becomes one ``rudp.impair.Impairment`` per direction.  The relay's datagrams are whole IP packets
(a TUN device hands over the IP header too), so the bottleneck counts ``len(packet)`` bytes and nothing more.
Without an explicit ``queue`` the drop-tail queue holds one bandwidth-delay product of MTU-sized packets
(``rate * 2 * delay / 8 / MTU``), at least ``MIN_QUEUE``: the classic buffer sizing of a router in front of a
bottleneck, deep enough for one TCP flow to fill the link.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from rudp.impair.model import Impairment

__all__ = ["LinkSpec", "MTU", "MIN_QUEUE"]

MTU = 1500  # the TUN devices' MTU (Ethernet's): rudp's default 1468-byte blocks fill one packet exactly
MIN_QUEUE = 64  # packets: the smallest default queue (a short-RTT path still absorbs a burst)


@dataclass(frozen=True)
class LinkSpec:
    """The link between namespaces a and b; every field applies to each direction separately."""

    rate: float | None = None  # bottleneck bits/s in each direction (None: unlimited)
    delay: float = 0.0  # one-way seconds (RTT = 2 * delay)
    loss: float = 0.0  # random per-packet loss, each direction (0..1)
    jitter: float = 0.0  # plus uniform(0, jitter) seconds per packet (reorders packets closer than that)
    reorder: float = 0.0  # probability a packet is held back 10 ms so that later ones overtake it
    dup: float = 0.0  # probability a packet is delivered twice
    queue: int | None = None  # drop-tail queue in packets; None: one bandwidth-delay product, at least 64
    seed: int = 1

    def __post_init__(self) -> None:
        self.impairment()  # Impairment checks every value and says which one is wrong

    @property
    def queue_packets(self) -> int:
        """The queue actually used: ``queue``, or one bandwidth-delay product of MTU packets, at least 64."""
        if self.queue is not None:
            return self.queue
        if self.rate is None:
            return MIN_QUEUE
        return max(MIN_QUEUE, math.ceil(self.rate * 2 * self.delay / 8 / MTU))

    def impairment(self) -> Impairment:
        """The model of one direction."""
        return Impairment(
            loss=self.loss,
            dup=self.dup,
            reorder=self.reorder,
            delay=self.delay,
            jitter=self.jitter,
            rate=self.rate,
            queue=self.queue_packets,
        )

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> LinkSpec:
        return cls(**data)
