"""Tests for rudp.wire: golden vectors both ways, every truncation, properties, fast path == construct path.

The golden datagrams live in spec/vectors.json (format: spec/vectors.md) so the spec and the tests cannot drift.
Hypothesis runs derandomized: every run draws the same examples, so a failure reproduces as is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rudp.wire import schema
from rudp.wire.codec import (
    MAX_DATAGRAM,
    REASONS,
    MalformedPacket,
    decode,
    decode_with_construct,
    describe,
    encode,
    encode_ack,
    encode_data,
    encode_data_parts,
    encode_with_construct,
)
from rudp.wire.packets import (
    MAX_BLKSIZE,
    Ack,
    Data,
    Error,
    ErrorCode,
    Opcode,
    OptionAck,
    Packet,
    ReadRequest,
    SelectiveAck,
    WriteRequest,
)

VECTORS_PATH = Path(__file__).resolve().parent.parent / "spec" / "vectors.json"
VECTORS: dict[str, list[dict[str, Any]]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
VALID = VECTORS["valid"]
INVALID = VECTORS["invalid"]

# Deterministic example generation; no deadline because a loaded CI box must not turn slowness into failure.
PROPERTY = settings(derandomize=True, deadline=None, max_examples=400)


# ---------------------------------------------------------------------------------------------- helpers


def unhex(text: str) -> bytes:
    """spec/vectors.md notation: whitespace-separated hex tokens; ``HH*N`` repeats byte HH N times."""
    out = bytearray()
    for token in text.split():
        if "*" in token:
            byte, count = token.split("*")
            out += bytes.fromhex(byte) * int(count)
        else:
            out += bytes.fromhex(token)
    return bytes(out)


def wire_text(fields: dict[str, Any], key: str) -> str:
    if key + "_hex" in fields:
        return unhex(fields[key + "_hex"]).decode("utf-8", "surrogateescape")
    return fields[key]


def packet_from_json(fields: dict[str, Any]) -> Packet:
    kind = fields["kind"]
    if kind in ("RRQ", "WRQ"):
        cls = ReadRequest if kind == "RRQ" else WriteRequest
        options = tuple((name, value) for name, value in fields["options"])
        return cls(wire_text(fields, "filename"), wire_text(fields, "mode"), options)
    if kind == "DATA":
        return Data(fields["block"], unhex(fields["data_hex"]))
    if kind == "ACK":
        return Ack(fields["block"])
    if kind == "ERROR":
        return Error(fields["code"], wire_text(fields, "message"))
    if kind == "OACK":
        return OptionAck(tuple((name, value) for name, value in fields["options"]))
    if kind == "SACK":
        return SelectiveAck(fields["block"], unhex(fields["bitmap_hex"]))
    raise AssertionError(f"unknown kind {kind!r} in {VECTORS_PATH}")


def outcome(decoder: Any, datagram: bytes) -> tuple[str, object]:
    """("ok", packet) or ("rejected", reason); any other exception propagates and fails the test."""
    try:
        return ("ok", decoder(datagram))
    except MalformedPacket as exc:
        assert exc.reason in REASONS, exc.reason
        return ("rejected", exc.reason)


def by_name(vectors: list[dict[str, Any]]) -> Any:
    return pytest.mark.parametrize("vector", vectors, ids=[v["name"] for v in vectors])


# ---------------------------------------------------------------------------------------------- the vector file


def test_vector_file_is_complete() -> None:
    names = [v["name"] for v in VALID + INVALID]
    assert len(names) == len(set(names)), "duplicate vector names"
    kinds = {v["packet"]["kind"] for v in VALID}
    assert kinds == {op.name for op in Opcode}
    codes = {v["packet"]["code"] for v in VALID if v["packet"]["kind"] == "ERROR"}
    assert set(ErrorCode) <= codes
    assert {v["reason"] for v in INVALID} <= set(REASONS)


# ---------------------------------------------------------------------------------------------- golden vectors


@by_name(VALID)
def test_valid_vector_decodes_and_reencodes(vector: dict[str, Any]) -> None:
    datagram = unhex(vector["hex"])
    expected = packet_from_json(vector["packet"])
    for decoder in (decode, decode_with_construct):
        packet = decoder(datagram)
        assert packet == expected
        assert type(packet) is type(expected)
    for encoder in (encode, encode_with_construct):
        assert encoder(expected) == datagram


@by_name(INVALID)
def test_invalid_vector_is_rejected_with_reason(vector: dict[str, Any]) -> None:
    datagram = unhex(vector["hex"])
    for decoder in (decode, decode_with_construct):
        with pytest.raises(MalformedPacket) as info:
            decoder(datagram)
        assert info.value.reason == vector["reason"]


@by_name(VALID)
def test_every_truncation_is_rejected_cleanly_or_decodes(vector: dict[str, Any]) -> None:
    datagram = unhex(vector["hex"])
    for end in range(len(datagram)):
        prefix = datagram[:end]
        kind, result = outcome(decode, prefix)
        if kind == "ok":
            assert encode(result) == prefix  # type: ignore[arg-type]
        if end <= 1024:  # the construct path is slow; 64 KiB of prefixes of a max DATA add nothing
            assert outcome(decode_with_construct, prefix) == (kind, result)


def test_truncated_data_is_shorter_data_but_truncated_ack_is_rejected() -> None:
    assert decode(bytes.fromhex("0003 0001 6869")[:5]) == Data(1, b"h")
    with pytest.raises(MalformedPacket) as info:
        decode(bytes.fromhex("0004 0001")[:3])
    assert info.value.reason == "truncated"


def test_decoded_fields_have_plain_types() -> None:
    error = decode(bytes.fromhex("0005 0001 78 00"))
    assert isinstance(error, Error) and type(error.code) is int and error.code == ErrorCode.FILE_NOT_FOUND
    data = decode(bytearray.fromhex("0003 0001 78"))
    assert isinstance(data, Data) and type(data.data) is bytes


def test_data_from_bytes_is_a_view_of_the_datagram_not_a_copy() -> None:
    datagram = bytes.fromhex("0003 0007") + bytes(range(256)) * 4
    data = decode(datagram)
    assert isinstance(data, Data) and data == Data(7, datagram[4:])
    view = data.data
    assert isinstance(view, memoryview) and view.readonly and view.obj is datagram  # no copy of the payload
    assert bytes(view) == datagram[4:] and len(view) == 1024 and hash(data) == hash(Data(7, view))


def test_data_from_a_mutable_buffer_is_copied() -> None:
    buffer = bytearray.fromhex("0003 0001 6869")  # what recv_into fills and then reuses
    data = decode(buffer)
    buffer[4:6] = b"XX"
    assert isinstance(data, Data) and data.data == b"hi" and type(data.data) is bytes
    view = decode(memoryview(bytearray.fromhex("0003 0001 6869")))
    assert isinstance(view, Data) and type(view.data) is bytes


def test_decode_accepts_buffers() -> None:
    for vector in VALID[:12]:
        datagram = unhex(vector["hex"])
        assert decode(memoryview(datagram)) == decode(bytearray(datagram)) == decode(datagram)


def test_size_limit_is_the_largest_data_packet() -> None:
    assert MAX_DATAGRAM == 4 + MAX_BLKSIZE == 65468
    assert decode(b"\x00\x03\x00\x01" + bytes(MAX_BLKSIZE)) == Data(1, bytes(MAX_BLKSIZE))
    for junk in (b"\x00\x03\x00\x01" + bytes(MAX_BLKSIZE + 1), b"\x00\x04" + bytes(MAX_DATAGRAM)):
        with pytest.raises(MalformedPacket) as info:
            decode(junk)
        assert info.value.reason == "oversized"


# ---------------------------------------------------------------------------------------------- encode misuse


@pytest.mark.parametrize(
    "packet",
    [
        Ack(-1),
        Ack(65536),
        Data(65536, b""),
        Data(1, bytes(MAX_BLKSIZE + 1)),
        Error(65536, "x"),
        Error(-1, "x"),
        Error(1, "a\x00b"),
        ReadRequest("a\x00b", "octet"),
        WriteRequest("a", "oct\x00et"),
        ReadRequest("a", "octet", (("blk\x00size", "512"),)),
        OptionAck((("blksize", "5\x0012"),)),
        ReadRequest("\ud800", "octet"),  # a surrogate that surrogateescape cannot map back to a byte
    ],
    ids=repr,
)
def test_encode_refuses_what_the_wire_cannot_carry(packet: Packet) -> None:
    for encoder in (encode, encode_with_construct):
        with pytest.raises(ValueError) as info:
            encoder(packet)
        assert not isinstance(info.value, MalformedPacket)  # local misuse, not the peer's fault


def test_encode_type_errors() -> None:
    with pytest.raises(TypeError):
        encode(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode(Ack("1"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode(OptionAck((("blksize",),)))  # type: ignore[arg-type]


def test_fast_path_encoders_validate() -> None:
    assert encode_ack(7) == bytes.fromhex("0004 0007")
    assert encode_data(7, b"ab") == bytes.fromhex("0003 0007 6162")
    for bad in (-1, 65536):
        with pytest.raises(ValueError):
            encode_ack(bad)
        with pytest.raises(ValueError):
            encode_data(bad, b"")
    with pytest.raises(ValueError):
        encode_data(1, bytes(MAX_BLKSIZE + 1))


def test_schema_refuses_nul_even_without_the_codec() -> None:
    # NullTerminated alone would write b"a\0b\0": a different, valid-looking packet.
    with pytest.raises(schema.NulInString):
        schema.packet.build({"opcode": "ERROR", "body": {"code": 0, "message": "a\x00b"}})


# ---------------------------------------------------------------------------------------------- describe


@pytest.mark.parametrize(
    ("packet", "text"),
    [
        (Data(3, bytes(512)), "DATA block=3 len=512"),
        (Ack(0), "ACK block=0"),
        (Error(1, "File not found"), "ERROR 1 'File not found'"),
        (Error(9, ""), "ERROR 9 ''"),
        (ReadRequest("foo.txt", "octet"), "RRQ 'foo.txt' octet"),
        (WriteRequest("a b", "netascii", (("tsize", "0"),)), "WRQ 'a b' netascii tsize=0"),
        (OptionAck((("blksize", "1428"), ("windowsize", "8"))), "OACK blksize=1428 windowsize=8"),
        (OptionAck(()), "OACK"),
        (OptionAck((("a b", ""),)), "OACK 'a b'=''"),
    ],
)
def test_describe(packet: Packet, text: str) -> None:
    assert describe(packet) == text


def test_describe_clips_long_peer_text() -> None:
    assert len(describe(Error(0, "x" * 65000))) < 100


# ---------------------------------------------------------------------------------------------- properties

u16 = st.integers(min_value=0, max_value=0xFFFF)
# Wire strings as the codec produces them: any NUL-free bytes (via surrogateescape), or plain NUL-free text.
wire_strings = st.one_of(
    st.binary(max_size=24).map(lambda b: b.replace(b"\x00", b"").decode("utf-8", "surrogateescape")),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=24),
    st.sampled_from(["octet", "netascii", "OCTET", "mail", ""]),
)
option_names = st.one_of(st.sampled_from(["blksize", "BlkSize", "tsize", "timeout", "windowsize"]), wire_strings)
option_lists = st.lists(st.tuples(option_names, wire_strings), max_size=5).map(tuple)
packets = st.one_of(
    st.builds(ReadRequest, wire_strings, wire_strings, option_lists),
    st.builds(WriteRequest, wire_strings, wire_strings, option_lists),
    st.builds(Data, u16, st.binary(max_size=600)),
    st.builds(Ack, u16),
    st.builds(SelectiveAck, u16, st.binary(max_size=40)),
    st.builds(Error, u16, wire_strings),
    st.builds(OptionAck, option_lists),
)
# Arbitrary bytes rarely look like TFTP, so also glue plausible opcodes to plausible pieces.
pieces = st.sampled_from([b"\x00", b"\x00\x00", b"\x00\x01", b"a", b"octet", b"blksize", b"\xff", b"\xe9\x00"])
# Known opcodes listed three times so most examples get past the opcode (sampled_from draws uniformly).
opcodes = st.sampled_from(
    [b"", b"\x00", b"\x00\x00", b"\x00\x07", b"\xff\xff"] + [op.to_bytes(2, "big") for op in Opcode] * 3
)
structured = st.builds(lambda op, body: op + b"".join(body), opcodes, st.lists(pieces, max_size=8))
datagrams = st.one_of(structured, st.binary(max_size=48))


@settings(PROPERTY, max_examples=1000)
@given(datagrams)
def test_decode_raises_only_malformed_and_agrees_with_construct(datagram: bytes) -> None:
    fast = outcome(decode, datagram)
    assert outcome(decode_with_construct, datagram) == fast
    if fast[0] == "ok":
        packet: Packet = fast[1]  # type: ignore[assignment]
        assert encode(packet) == datagram
        assert encode_with_construct(packet) == datagram


@PROPERTY
@given(packets)
def test_generated_packets_round_trip_on_both_paths(packet: Packet) -> None:
    datagram = encode(packet)
    assert encode_with_construct(packet) == datagram
    assert decode(datagram) == packet
    assert decode_with_construct(datagram) == packet


@PROPERTY
@given(u16, st.binary(max_size=600))
def test_fast_encoders_match_construct(block: int, payload: bytes) -> None:
    assert encode_data(block, payload) == encode_with_construct(Data(block, payload))
    header, rest = encode_data_parts(block, payload)  # what a gathering send puts on the wire
    assert header + rest == encode_with_construct(Data(block, payload)) and rest is payload
    assert encode_ack(block) == encode_with_construct(Ack(block))
