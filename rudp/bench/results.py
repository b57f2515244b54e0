"""What one bench run measured (``Measurement``) and what one fairness run measured (``FairnessResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rudp.bench.matrix import Scenario

__all__ = ["Measurement", "FairnessResult", "OK", "CAPPED", "FAILED"]

OK, CAPPED, FAILED = "ok", "capped", "failed"


@dataclass
class Measurement:
    """One transfer of one protocol in one scenario.

    ``status`` is "ok" (the whole file arrived, size and SHA-256 match), "capped" (cut at the run's time cap:
    ``bytes`` is what the receiver had written by then, ``seconds`` the time to the cap) or "failed" (an error, or
    a copy that does not match: never counted in the medians).
    """

    protocol: str
    scenario: Scenario
    repeat: int
    status: str = FAILED
    bytes: int = 0  # file bytes the receiver had (all of them when "ok")
    seconds: float | None = None  # completion time (time to the cap when "capped")
    wire_bytes: int | None = None  # IP bytes offered to the link, both directions
    retransmissions: int | None = None
    error: str | None = None
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def counted(self) -> bool:
        return self.status in (OK, CAPPED) and bool(self.seconds) and self.bytes > 0

    @property
    def goodput(self) -> float | None:
        """File bits per second."""
        return self.bytes * 8 / self.seconds if self.counted and self.seconds else None

    @property
    def overhead(self) -> float | None:
        """Bytes on the wire (both directions, IP headers included) per byte of file moved."""
        return self.wire_bytes / self.bytes if self.counted and self.wire_bytes is not None else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            **self.scenario.as_dict(),
            "repeat": self.repeat,
            "status": self.status,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "goodput_bps": self.goodput,
            "wire_bytes": self.wire_bytes,
            "wire_per_payload": self.overhead,
            "retransmissions": self.retransmissions,
            "error": self.error,
            "counters": self.counters,
            "info": self.info,
        }


@dataclass
class FairnessResult:
    """rudp and one TCP flow sharing a bottleneck: each one's share of capacity x the overlapping interval."""

    tcp: str  # "tcp-cubic" or "tcp-bbr"
    rate: float
    rtt: float
    loss: float
    interval: float = 0.0  # seconds both flows were moving data
    bytes: dict[str, int] = field(default_factory=dict)  # {"rudp": n, "tcp": n} moved in the interval
    error: str | None = None

    def share(self, flow: str) -> float | None:
        if self.error or self.interval <= 0 or flow not in self.bytes:
            return None
        return self.bytes[flow] * 8 / (self.rate * self.interval)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tcp": self.tcp,
            "rate": self.rate,
            "rtt": self.rtt,
            "loss": self.loss,
            "interval": self.interval,
            "bytes": self.bytes,
            "share_rudp": self.share("rudp"),
            "share_tcp": self.share("tcp"),
            "error": self.error,
        }
