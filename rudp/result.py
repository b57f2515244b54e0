"""The outcome of one transfer as users see it: a one-line summary and a JSON-ready dict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["TransferResult"]


@dataclass(frozen=True)
class TransferResult:
    direction: str  # "send" (upload), "get" (download), "recv" (server received), "serve" (server sent)
    local: str  # the local file
    remote: str  # the name on the other side
    peer: str  # host:port of the other side
    bytes: int  # file bytes moved
    seconds: float
    blksize: int | None = None
    windowsize: int | None = None
    timeout: float | None = None
    tsize: int | None = None
    options_acknowledged: bool = False
    digest: str | None = None  # the digest option both sides agreed on (spec 7.7): the file was checked with it
    retransmissions: int = 0
    ok: bool = True
    error: str | None = None
    exit_code: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0

    def summary(self) -> str:
        verb = {"send": "sent", "get": "received", "recv": "received", "serve": "sent"}[self.direction]
        arrow = {"send": "to", "get": "from", "recv": "from", "serve": "to"}[self.direction]
        head = f"{verb} {self.local} {arrow} {self.peer}"
        if self.remote != self.local:
            head += f" as {self.remote}" if self.direction == "send" else f" ({self.remote})"
        if not self.ok:
            return f"failed: {head}: {self.error}"
        retx = self.retransmissions
        return (
            f"{head}: {self.bytes} bytes in {self.seconds:.2f} s ({self.mb_per_s:.2f} MB/s), "
            f"blksize {self.blksize}, windowsize {self.windowsize}, {retx} retransmission{'s' * (retx != 1)}"
        )

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mb_per_s"] = round(self.mb_per_s, 3)
        d["seconds"] = round(self.seconds, 6)
        return d
