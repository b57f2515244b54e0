"""rudp's digest options (spec section 7.7): the algorithms, their values, and the trailer check.

A digest option is named after its algorithm and says where the digest travels:

* ``trailer`` (what rudp's clients offer): the digest follows the file in the DATA stream, as lower-case hex
  ASCII.  The side that sends hashes each byte as it first feeds it to the session; the side that receives holds
  back the last ``DIGESTS[algorithm]`` bytes of the stream (:class:`TrailerCheck`) and acknowledges the final
  block only if they are the digest of the rest.  Nobody reads the file twice.
* in the request: a WRQ carries the file's hex digest, and an RRQ asks with ``0`` for the server to put it in
  its OACK.  It costs a pre-pass over the file before the first packet; the driver's sink checks it.

Hashing is pure computation, so it lives here with the sessions that use it: no I/O.  ``xxh128`` (XXH3-128, the
default) costs about a thirtieth of ``sha256`` per byte here.  Neither is keyed: both detect damage, neither stops
a forger who can rewrite the request as well as the data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol

import xxhash

__all__ = ["DIGESTS", "DIGEST_ASK", "TRAILER", "Hash", "new_hash", "TrailerCheck"]

DIGESTS = {"xxh128": 32, "sha256": 64}  # option name -> hex digits of its digest
DIGEST_ASK = "0"  # an RRQ's value: "put the file's digest in your OACK"
TRAILER = "trailer"  # either request's value: "the digest follows the file's bytes in the DATA stream"
_HEX = frozenset("0123456789abcdef")


class Hash(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


_CONSTRUCTORS: dict[str, Callable[[], Hash]] = {"xxh128": xxhash.xxh3_128, "sha256": hashlib.sha256}
assert _CONSTRUCTORS.keys() == DIGESTS.keys(), "every digest option needs a hash function"


def new_hash(algorithm: str) -> Hash:
    """A fresh hash object for the digest option ``algorithm`` (KeyError if rudp does not know it)."""
    return _CONSTRUCTORS[algorithm]()


class TrailerCheck:
    """The receiving side of ``trailer`` mode: pass the file's bytes on, keep back the stream's last bytes, and
    tell at the end whether they are the hex digest of everything passed on.

    ``take`` never copies a block: it returns the bytes held back from before (at most one digest long) and a
    view of the new block without its tail."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._hash = new_hash(algorithm)
        self._size = DIGESTS[algorithm]
        self._tail = b""  # the stream's last bytes so far: the digest, if the stream ends now

    def take(self, data: bytes | memoryview) -> tuple[bytes | memoryview, ...]:
        """The file bytes that ``data``, the stream's next bytes, releases (in order; possibly none)."""
        n = self._size
        pieces: tuple[bytes | memoryview, ...]
        if len(data) >= n:
            view = memoryview(data)
            pieces = (self._tail, view[: len(data) - n])
            self._tail = bytes(view[len(data) - n :])
        else:
            joined = self._tail + bytes(data)
            cut = max(0, len(joined) - n)
            pieces = (joined[:cut],)
            self._tail = joined[cut:]
        out = tuple(piece for piece in pieces if len(piece))
        for piece in out:
            self._hash.update(piece)
        return out

    def matches(self) -> bool:
        """The stream ended: were its last bytes the digest of the file bytes before them?"""
        return self._tail == self._hash.hexdigest().encode("ascii")

    def mismatch(self) -> str:
        """The one-line reason for a failed check (ERROR 0's message and the receiving command's error)."""
        sent = self._tail.decode("ascii", "replace")
        if not (sent and _HEX.issuperset(sent)):
            sent = "no digest"  # damaged beyond recognition, or cut short: never echo raw bytes into an ERROR
        return (
            f"{self.algorithm} mismatch: file damaged in transit, not kept "
            f"(expected {sent[:12]}..., got {self._hash.hexdigest()[:12]}...)"
        )
