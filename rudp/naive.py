"""Naive UDP: what a home-made "just send the chunks" transfer does, and how to measure the damage.

The naive sender cuts a file into datagram-sized chunks and sends each once: no header, no ACK, no
retransmission, no ordering.  The naive receiver appends whatever arrives, in arrival order.  ``analyse``
compares what arrived with the original (chunks of random data are unique, so each arrival can be matched to
its place) and counts the damage.  Used by the simulator and by the demonstration over real sockets.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["chunks", "NaiveReport", "analyse"]


def chunks(data: bytes, size: int) -> list[bytes]:
    if size <= 0:
        raise ValueError("chunk size must be positive")
    return [data[i : i + size] for i in range(0, len(data), size)]


@dataclass(frozen=True)
class NaiveReport:
    sent: int  # datagrams sent (each chunk once)
    arrived: int  # datagrams that arrived, duplicates included
    missing: int  # chunks that never arrived
    missing_bytes: int
    duplicated: int  # extra copies of chunks that arrived more than once
    out_of_order: int  # arrivals of a chunk earlier in the file than one already received
    corrupted: int  # arrivals that match no chunk of the file
    received_bytes: int
    original_bytes: int
    intact: bool  # the received file equals the original
    sha256_original: str
    sha256_received: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if self.intact:
            return f"intact: {self.received_bytes} bytes, sha256 matches"
        return (
            f"DAMAGED: {self.received_bytes} bytes received for {self.original_bytes}; "
            f"{self.missing} of {self.sent} chunks missing ({self.missing_bytes} bytes), "
            f"{self.duplicated} duplicated, {self.out_of_order} out of order, {self.corrupted} corrupted; "
            "sha256 mismatch"
        )


def analyse(original: bytes, arrivals: list[bytes], chunk_size: int) -> NaiveReport:
    pieces = chunks(original, chunk_size)
    where: dict[bytes, int] = {}
    for index, piece in enumerate(pieces):
        where.setdefault(piece, index)
    seen: set[int] = set()
    duplicated = out_of_order = corrupted = 0
    highest = -1
    for data in arrivals:
        place = where.get(data)
        if place is None:
            corrupted += 1
            continue
        if place in seen:
            duplicated += 1
            continue
        seen.add(place)
        if place < highest:
            out_of_order += 1
        highest = max(highest, place)
    missing = [i for i in range(len(pieces)) if i not in seen]
    received = b"".join(arrivals)
    return NaiveReport(
        sent=len(pieces),
        arrived=len(arrivals),
        missing=len(missing),
        missing_bytes=sum(len(pieces[i]) for i in missing),
        duplicated=duplicated,
        out_of_order=out_of_order,
        corrupted=corrupted,
        received_bytes=len(received),
        original_bytes=len(original),
        intact=received == original,
        sha256_original=hashlib.sha256(original).hexdigest(),
        sha256_received=hashlib.sha256(received).hexdigest(),
    )
