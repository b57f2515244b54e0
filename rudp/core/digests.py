"""rudp's digest options (spec section 7.7): the algorithms, their values, and the trailer check.

A digest option is named after its algorithm and says where the digest travels:

* ``trailer`` (what rudp's clients offer): the digest follows the file in the DATA stream, as lower-case hex
  ASCII.  The side that sends hashes each byte as it first feeds it to the session; the side that receives holds
  back the stream's end (:class:`TrailerCheck`) and acknowledges the final block only if its last
  ``DIGESTS[algorithm]`` bytes are the digest of the rest.  Nobody reads the file twice.
* in the request: a WRQ carries the file's hex digest, and an RRQ asks with ``0`` for the server to put it in
  its OACK.  It costs a pre-pass over the file before the first packet; the driver's sink checks it.

Hashing is pure computation, so it lives here with the sessions that use it: no I/O.  ``xxh128`` (XXH3-128, the
default) costs about a thirtieth of ``sha256`` per byte here.  Neither is keyed: both detect damage, neither stops
a forger who can rewrite the request as well as the data.
"""

from __future__ import annotations

import hashlib
from collections import deque
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
    """The receiving side of ``trailer`` mode: pass the file's bytes on, keep back the stream's end, and tell at
    the end whether its last bytes are the hex digest of everything passed on.

    Blocks are held back whole and released whole once the blocks after them hold a digest's length, so a
    block is never cut or copied on its way (one event, one write each); only the last one or two are joined and
    cut, once, by :meth:`finish`."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._hash = new_hash(algorithm)
        self._size = DIGESTS[algorithm]
        self._held: deque[bytes | memoryview] = deque()  # the stream's latest blocks: the digest is in them
        self._held_bytes = 0
        self._tail = b""  # the stream's last bytes, once it has ended

    def take(self, data: bytes | memoryview) -> tuple[bytes | memoryview, ...]:
        """The file bytes that ``data``, the stream's next bytes, releases (in order; usually one block)."""
        held = self._held
        if len(held) == 1 and len(data) >= self._size:  # the steady state: the newest block alone holds a digest
            piece, held[0], self._held_bytes = held[0], data, len(data)
            self._hash.update(piece)
            return (piece,)
        held.append(data)
        self._held_bytes += len(data)
        out: list[bytes | memoryview] = []
        while self._held_bytes - len(held[0]) >= self._size:  # the rest still holds a whole digest
            piece = held.popleft()
            self._held_bytes -= len(piece)
            self._hash.update(piece)
            out.append(piece)
        return tuple(out)

    def finish(self) -> tuple[bytes | memoryview, ...]:
        """The stream has ended: the file's last bytes (all held but the digest).  Then :meth:`matches` tells."""
        joined = b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        cut = max(0, len(joined) - self._size)
        body, self._tail = joined[:cut], joined[cut:]
        self._hash.update(body)
        return (body,) if body else ()

    def matches(self) -> bool:
        """After :meth:`finish`: were the stream's last bytes the digest of the file bytes before them?"""
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
