"""Fuzzing the codec beyond tests/test_wire.py: mutated real packets, sizes at and past the limits, every kind.

tests/test_wire.py already checks short arbitrary bytes (up to 48) and generated packets with small fields.  Here:

* mutations of valid packets of every kind (bit flips, byte overwrites, truncation, insertion, deletion,
  duplication of a slice, an opcode swapped for another), so most inputs get deep into a layout;
* long inputs: DATA and SACK at and just past their size limits, requests with long strings and many options;
* every input given as ``bytes``, ``bytearray`` and ``memoryview`` decodes the same way;
* anything ``decode`` accepts is re-encoded to the same bytes by both paths, and the fast path (struct) and
  construct agree on the outcome, reason included.

All properties are derandomized with bounded examples, so a failure reproduces from the printed example.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rudp.wire.codec import (
    MAX_DATAGRAM,
    REASONS,
    MalformedPacket,
    decode,
    decode_with_construct,
    encode,
    encode_with_construct,
)
from rudp.wire.packets import (
    MAX_BLKSIZE,
    MAX_SACK_BITMAP,
    Ack,
    Data,
    Error,
    Opcode,
    OptionAck,
    Packet,
    ReadRequest,
    SelectiveAck,
    WriteRequest,
)

FUZZ = settings(derandomize=True, deadline=None, max_examples=200, database=None)

u16 = st.integers(min_value=0, max_value=0xFFFF)
names = st.one_of(
    st.sampled_from(["blksize", "tsize", "timeout", "windowsize", "sack", "sha256", "octet", "netascii", ""]),
    st.binary(max_size=40).map(lambda b: b.replace(b"\x00", b"").decode("utf-8", "surrogateescape")),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40),
)
options = st.lists(st.tuples(names, names), max_size=12).map(tuple)
# Every kind of packet, including sizes at the limits of DATA and SACK.
packets = st.one_of(
    st.builds(ReadRequest, names, names, options),
    st.builds(WriteRequest, names, names, options),
    st.builds(Data, u16, st.one_of(st.binary(max_size=700), st.sampled_from([b"x" * MAX_BLKSIZE]))),
    st.builds(Ack, u16),
    st.builds(Error, u16, names),
    st.builds(OptionAck, options),
    st.builds(SelectiveAck, u16, st.one_of(st.binary(max_size=64), st.sampled_from([b"\xff" * MAX_SACK_BITMAP]))),
)
OPCODES = [int(op) for op in Opcode] + [0, 7, 0xFFFF]


def outcome(decoder: Any, datagram: Any) -> tuple[str, Any]:
    """("ok", packet) or ("malformed", reason); anything else raised escapes and fails the test."""
    try:
        return "ok", decoder(datagram)
    except MalformedPacket as exc:
        assert exc.reason in REASONS
        return "malformed", exc.reason


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid packet's bytes with one to four random mutations."""
    data = bytearray(encode(draw(packets)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "repeat", "opcode", "nul"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            data[min(at, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
        elif kind == "opcode":
            data[:2] = draw(st.sampled_from(OPCODES)).to_bytes(2, "big")
        elif kind == "nul":
            data[at:at] = b"\x00"
    return bytes(data)


# Long inputs: a known opcode followed by many bytes, around the DATA and SACK limits.
long_inputs = st.builds(
    lambda op, size, fill: op.to_bytes(2, "big") + bytes([fill]) * size,
    st.sampled_from(OPCODES),
    st.sampled_from(
        [0, 1, 2, 3, 511, 512, 513, MAX_SACK_BITMAP + 1, MAX_SACK_BITMAP + 2, MAX_SACK_BITMAP + 3]
        + [MAX_DATAGRAM - 3, MAX_DATAGRAM - 2, MAX_DATAGRAM - 1, MAX_DATAGRAM + 10]
    ),
    st.sampled_from([0, 1, 0x41, 0xFF]),
)


def check_datagram(datagram: bytes) -> None:
    fast = outcome(decode, datagram)
    assert outcome(decode_with_construct, datagram) == fast, "the fast path and construct disagree"
    for buffer in (bytearray(datagram), memoryview(datagram)):
        assert outcome(decode, buffer) == fast, f"decoding a {type(buffer).__name__} differs"
    if fast[0] == "ok":
        assert encode(fast[1]) == datagram
        assert encode_with_construct(fast[1]) == datagram


@FUZZ
@given(mutated())
def test_mutated_packets_raise_only_malformed_and_both_paths_agree(datagram: bytes) -> None:
    check_datagram(datagram)


@settings(FUZZ, max_examples=60)
@given(long_inputs)
def test_long_inputs_at_the_size_limits(datagram: bytes) -> None:
    check_datagram(datagram)
    if len(datagram) > MAX_DATAGRAM:
        assert outcome(decode, datagram) == ("malformed", "oversized")


@FUZZ
@given(
    st.binary(min_size=2, max_size=2).filter(lambda b: b not in (b"\x00\x03", b"\x00\x04")),
    st.binary(max_size=700),
)
def test_arbitrary_bodies_behind_arbitrary_opcodes(opcode: bytes, body: bytes) -> None:
    check_datagram(opcode + body)


@FUZZ
@given(packets)
def test_every_kind_round_trips_and_the_fast_path_agrees_with_construct(packet: Packet) -> None:
    datagram = encode(packet)
    assert encode_with_construct(packet) == datagram
    for decoder in (decode, decode_with_construct):
        assert decoder(datagram) == packet
        assert decoder(bytearray(datagram)) == packet


@pytest.mark.parametrize("size", [MAX_DATAGRAM, MAX_DATAGRAM + 1])
def test_data_at_and_past_the_largest_datagram(size: int) -> None:
    datagram = b"\x00\x03\x12\x34" + b"z" * (size - 4)
    if size == MAX_DATAGRAM:
        assert decode(datagram) == Data(0x1234, b"z" * MAX_BLKSIZE)
    else:
        assert outcome(decode, datagram) == outcome(decode_with_construct, datagram) == ("malformed", "oversized")


@pytest.mark.parametrize("extra", [0, 1])
def test_sack_bitmap_at_and_past_its_limit(extra: int) -> None:
    datagram = b"\x01\x00\x00\x07" + b"\x01" * (MAX_SACK_BITMAP + extra)
    assert outcome(decode, datagram) == outcome(decode_with_construct, datagram)
    assert outcome(decode, datagram)[0] == ("ok" if extra == 0 else "malformed")
