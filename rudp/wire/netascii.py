"""Netascii translation for TFTP mode "netascii" (RFC 1350 section 1, RFC 764 "NVT ASCII").

Theory of operation
-------------------
On the wire a line ends with CR LF and a bare carriage return is sent as CR NUL (RFC 764: "the sequence CR NUL
must be used where a carriage return alone is actually desired").  The local newline is LF.

* Encoding (local -> wire) looks at one byte at a time: CR -> CR NUL, LF -> CR LF.  It needs no state, so a file
  can be encoded chunk by chunk and the pieces concatenated.  Encoding expands the data; the sender cuts blocks out
  of the encoded stream, so a CR may end one DATA block and its NUL or LF start the next.
* Decoding (wire -> local) reads left to right: CR LF -> LF, CR NUL -> CR, and (leniently, as most servers do) a
  CR followed by any other byte is kept as a CR and the following byte is decoded normally.  The two pairs begin
  with CR and their second byte is never CR, so their occurrences cannot overlap and two ``bytes.replace`` calls
  give exactly the left-to-right result.  The only state is a CR at the very end of a chunk, whose meaning
  depends on the first byte of the next one: :class:`NetasciiDecoder` holds it back until then, and
  :meth:`NetasciiDecoder.finish` emits it as a CR if the stream ends there.

Pure functions, no I/O.
"""

from __future__ import annotations

__all__ = ["encode", "decode", "NetasciiDecoder"]

_CR = b"\r"


def encode(data: bytes) -> bytes:
    """Translate local bytes (LF newlines) to netascii.  Stateless: chunks may be encoded independently."""
    # CR first: the CRs that the second replacement inserts must not be doubled.
    return data.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


def _decode_complete(data: bytes) -> bytes:
    # Valid only when ``data`` does not end in a CR whose successor is still unknown.
    return data.replace(b"\r\n", b"\n").replace(b"\r\0", b"\r")


class NetasciiDecoder:
    """Streaming netascii -> local decoder; correct for any split of the wire stream into chunks."""

    __slots__ = ("_pending_cr",)

    def __init__(self) -> None:
        self._pending_cr = False

    def feed(self, chunk: bytes | bytearray | memoryview) -> bytes:
        """Decode the next piece of the wire stream; a trailing CR is held back until the next call.  Any
        bytes-like chunk will do (a received DATA payload is a memoryview of its datagram)."""
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        if self._pending_cr:
            chunk = _CR + chunk
        if chunk.endswith(_CR):
            self._pending_cr = True
            chunk = chunk[:-1]
        else:
            self._pending_cr = False
        return _decode_complete(chunk)

    def finish(self) -> bytes:
        """End of stream: a held-back CR had no successor, so it stands for itself."""
        if self._pending_cr:
            self._pending_cr = False
            return _CR
        return b""


def decode(data: bytes) -> bytes:
    """Decode a complete netascii stream in one piece."""
    decoder = NetasciiDecoder()
    return decoder.feed(data) + decoder.finish()
