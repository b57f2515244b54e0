"""The SACK bitmap: which blocks beyond the first missing one a receiver holds (rudp's ``sack`` option).

A SACK names ``cumulative``, the last block of the in-order run the receiver holds (as an ACK does); block
``cumulative + 1`` is missing by definition, and bit i of the bitmap (most significant bit of byte 0 first) says
whether block ``cumulative + 2 + i`` arrived.  Block numbers here are absolute (never wrapped); the sessions map
them to and from the wire's 16 bits.  Pure functions: no state, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from rudp.wire.packets import MAX_SACK_BITMAP

__all__ = ["build_bitmap", "held_blocks", "MAX_REPORTED"]

MAX_REPORTED = 8 * MAX_SACK_BITMAP  # blocks a bitmap can describe beyond cumulative + 1


def build_bitmap(cumulative: int, held: Iterable[int]) -> bytes:
    """The bitmap for ``held`` blocks (each > cumulative + 1); those too far to describe are left out."""
    first = cumulative + 2
    offsets = [block - first for block in held if 0 <= block - first < MAX_REPORTED]
    if not offsets:
        return b""
    bitmap = bytearray(max(offsets) // 8 + 1)
    for offset in offsets:
        bitmap[offset >> 3] |= 0x80 >> (offset & 7)
    return bytes(bitmap)


def held_blocks(cumulative: int, bitmap: bytes) -> Iterator[int]:
    """The absolute blocks a bitmap reports as held, in increasing order."""
    first = cumulative + 2
    for index, byte in enumerate(bitmap):
        if byte:
            for bit in range(8):
                if byte & (0x80 >> bit):
                    yield first + index * 8 + bit
