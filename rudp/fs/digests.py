"""The pre-pass of a digest carried in the request (spec section 7.7): hash a file before the first packet.

The default ``trailer`` mode needs no pre-pass (``rudp.core.digests``); this is for a WRQ that carries the digest
and for a server asked for it in its OACK."""

from __future__ import annotations

from typing import BinaryIO

from rudp.core.digests import new_hash

__all__ = ["file_digest"]

_CHUNK = 1024 * 1024  # the pre-pass reads this much at a time: past ~256 KiB larger reads gain nothing here


def file_digest(source: BinaryIO, algorithm: str) -> str:
    """The hex digest of ``source`` read from its start, leaving it at its start again: the pre-pass of the side
    that offers a digest option for a file it sends.  Raises OSError if the file cannot be read."""
    digest = new_hash(algorithm)
    view = memoryview(bytearray(_CHUNK))
    source.seek(0)
    while n := source.readinto(view):  # type: ignore[attr-defined]
        digest.update(view[:n])
    source.seek(0)
    return digest.hexdigest()
