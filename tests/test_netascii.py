"""Netascii translation: golden vectors, a reference scanner, and chunking-independence properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rudp.wire.netascii import NetasciiDecoder, decode, encode

# Bytes that matter to netascii, weighted so that CR/LF/NUL sequences are common.
_interesting = st.sampled_from([b"\r", b"\n", b"\0", b"a", b"\r\n", b"\r\0", b"\r\r", b"\xff"])
wire_like = st.lists(_interesting, max_size=60).map(b"".join) | st.binary(max_size=200)


def reference_decode(wire: bytes) -> bytes:
    """Plain left-to-right scanner: the specification the fast decoder must match."""
    out = bytearray()
    i = 0
    while i < len(wire):
        b = wire[i]
        if b == 0x0D and i + 1 < len(wire) and wire[i + 1] == 0x0A:
            out.append(0x0A)
            i += 2
        elif b == 0x0D and i + 1 < len(wire) and wire[i + 1] == 0x00:
            out.append(0x0D)
            i += 2
        else:  # ordinary byte, or a CR followed by something else (kept), or a CR at the very end
            out.append(b)
            i += 1
    return bytes(out)


def reference_encode(local: bytes) -> bytes:
    out = bytearray()
    for b in local:
        if b == 0x0D:
            out += b"\r\0"
        elif b == 0x0A:
            out += b"\r\n"
        else:
            out.append(b)
    return bytes(out)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for p in points:
        pieces.append(data[start:p])
        start = p
    pieces.append(data[start:])
    return pieces


def decode_pieces(pieces: list[bytes]) -> bytes:
    decoder = NetasciiDecoder()
    return b"".join(decoder.feed(p) for p in pieces) + decoder.finish()


@pytest.mark.parametrize(
    ("local", "wire"),
    [
        (b"", b""),
        (b"abc", b"abc"),
        (b"a\nb", b"a\r\nb"),
        (b"a\rb", b"a\r\0b"),
        (b"\r\n", b"\r\0\r\n"),
        (b"\n\r", b"\r\n\r\0"),
        (b"\0", b"\0"),
    ],
)
def test_golden_vectors_both_ways(local: bytes, wire: bytes) -> None:
    assert encode(local) == wire
    assert decode(wire) == local


@pytest.mark.parametrize(
    ("wire", "local"),
    [
        (b"a\rb", b"a\rb"),  # lenient: CR followed by something else stays a CR
        (b"\r\r\n", b"\r\n"),  # the second CR pairs with the LF
        (b"\r\r\0", b"\r\r"),
        (b"abc\r", b"abc\r"),  # CR at end of stream
        (b"\r", b"\r"),
    ],
)
def test_lenient_decoding(wire: bytes, local: bytes) -> None:
    assert decode(wire) == local == reference_decode(wire)


def test_trailing_cr_is_held_until_next_chunk() -> None:
    decoder = NetasciiDecoder()
    assert decoder.feed(b"x\r") == b"x"
    assert decoder.feed(b"") == b""  # an empty chunk does not resolve it
    assert decoder.feed(b"\nY") == b"\nY"
    assert decoder.feed(b"\r") == b""
    assert decoder.feed(b"\0") == b"\r"
    assert decoder.feed(b"\r") == b""
    assert decoder.finish() == b"\r"
    assert decoder.finish() == b""


def test_decoder_takes_any_bytes_like_chunk() -> None:
    # A received DATA payload is a memoryview of its datagram (rudp.wire.codec).
    wire = b"a\r\nb\r\0c\r"
    decoder = NetasciiDecoder()
    assert decoder.feed(memoryview(wire)) == b"a\nb\rc"
    assert decoder.feed(bytearray(b"\n")) == b"\n"
    assert decoder.finish() == b""


@given(st.binary(max_size=300))
def test_encode_matches_reference(local: bytes) -> None:
    assert encode(local) == reference_encode(local)


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=10))
def test_encode_is_chunk_independent(local: bytes, cuts: list[int]) -> None:
    assert b"".join(encode(p) for p in split_at(local, cuts)) == encode(local)


@given(st.binary(max_size=300) | wire_like, st.lists(st.integers(min_value=0), max_size=10))
def test_decode_any_split_of_encoding_roundtrips(local: bytes, cuts: list[int]) -> None:
    assert decode_pieces(split_at(encode(local), cuts)) == local


@given(wire_like, st.lists(st.integers(min_value=0), max_size=10))
def test_decode_arbitrary_wire_is_chunk_independent_and_matches_reference(wire: bytes, cuts: list[int]) -> None:
    whole = reference_decode(wire)
    assert decode(wire) == whole
    assert decode_pieces(split_at(wire, cuts)) == whole


@given(wire_like)
def test_decode_byte_by_byte(wire: bytes) -> None:
    assert decode_pieces([wire[i : i + 1] for i in range(len(wire))]) == reference_decode(wire)
