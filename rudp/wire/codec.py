"""Bytes <-> typed TFTP packets: the one boundary where construct's exceptions are caught.

Theory of operation
-------------------
:func:`decode` turns any ``bytes`` into a packet from :mod:`rudp.wire.packets` or raises
:class:`MalformedPacket` with a short, named ``reason`` (see :data:`REASONS`); it raises nothing else, whatever
the input.  A malformed datagram is the *peer's* fault: callers drop it and count the reason (STYLE.md section 4).

:func:`encode` is the inverse.  It raises ``ValueError`` (or ``TypeError`` for a non-packet) when asked to put on
the wire something the wire cannot carry: that is a *local* programming error, never a ``MalformedPacket``.

The layouts live in :mod:`rudp.wire.schema` (construct).  DATA and ACK are the hot packets of a transfer, so both
directions take a fast path for them with a precompiled ``struct.Struct('!HH')``; every other kind, and any
DATA/ACK too short for the fast path, goes through construct.  :func:`decode_with_construct` and
:func:`encode_with_construct` skip the fast path so tests can prove the two agree byte for byte, including on
which inputs are rejected and why.

Decoding is structural only: an empty filename, an unknown mode, an option the core does not understand or an
unknown error code all decode fine; judging them is :mod:`rudp.core`'s job.  Names, modes and options keep their
exact case, order and duplicates, so ``encode(decode(x)) == x`` for every datagram ``decode`` accepts.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

from construct import CheckError, ConstructError, Container, StreamError, TerminatedError

from . import schema
from .packets import (
    MAX_BLKSIZE,
    MAX_SACK_BITMAP,
    Ack,
    Data,
    Error,
    Opcode,
    OptionAck,
    Options,
    Packet,
    ReadRequest,
    SelectiveAck,
    WriteRequest,
)

__all__ = [
    "MalformedPacket",
    "REASONS",
    "TRUNCATED",
    "UNKNOWN_OPCODE",
    "MISSING_NUL",
    "TRAILING_BYTES",
    "OVERSIZED",
    "MALFORMED",
    "MAX_DATAGRAM",
    "Buffer",
    "decode",
    "data_header",
    "data_payload",
    "encode",
    "encode_data",
    "encode_data_parts",
    "encode_ack",
    "decode_with_construct",
    "encode_with_construct",
    "encode_sack",
    "describe",
]

MAX_DATAGRAM: Final = schema.MAX_DATAGRAM

# What decode() takes: a datagram as bytes (a DATA payload is then a read-only view of it, see data_payload), or a
# view of a receive buffer (recv_into), which is never kept by reference.
Buffer = bytes | bytearray | memoryview

# MalformedPacket.reason values.  Every 16-bit block number and error code is legal on the wire, so there is
# no "bad block" or "bad error code" here: judging those is the session's business.
TRUNCATED: Final = "truncated"  # shorter than the opcode, block number or error code needs
UNKNOWN_OPCODE: Final = "unknown opcode"  # not 1..6 nor rudp's SACK
MISSING_NUL: Final = "missing NUL"  # a filename, mode, option name/value or message runs off the end
TRAILING_BYTES: Final = "trailing bytes"  # bytes after a complete ACK or ERROR
OVERSIZED: Final = "oversized"  # longer than the largest DATA packet (4 + 65464 bytes) or SACK
MALFORMED: Final = "malformed"  # anything else construct objects to (never seen; kept so decode cannot leak)
REASONS: Final = (TRUNCATED, UNKNOWN_OPCODE, MISSING_NUL, TRAILING_BYTES, OVERSIZED, MALFORMED)

_MAX_BLOCK: Final = 0xFFFF  # RFC 1350 section 5: block numbers and error codes are 2 bytes
_HEAD = struct.Struct("!HH")  # opcode + block number: the whole ACK, the header of DATA
_OP_DATA: Final = int(Opcode.DATA)
_OP_ACK: Final = int(Opcode.ACK)
_OP_SACK: Final = int(Opcode.SACK)


class MalformedPacket(ValueError):
    """A datagram that is not a well-formed TFTP packet; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------------------------- decoding


def decode(datagram: Buffer) -> Packet:
    """Decode one datagram; raise :class:`MalformedPacket` (and nothing else) if it is not a TFTP packet."""
    size = len(datagram)
    if size > MAX_DATAGRAM:
        raise MalformedPacket(OVERSIZED, f"{size} bytes")
    if size >= schema.HEADER_SIZE:
        opcode, block = _HEAD.unpack_from(datagram)
        if opcode == _OP_DATA:
            # RFC 1350 section 5 / RFC 2348: 0..blksize bytes of data; the size cap was checked above.
            return Data(block, data_payload(datagram))
        if opcode == _OP_ACK:
            if size != schema.HEADER_SIZE:
                raise MalformedPacket(TRAILING_BYTES, f"ACK of {size} bytes")
            return Ack(block)
        if opcode == _OP_SACK and size <= schema.HEADER_SIZE + MAX_SACK_BITMAP:
            return SelectiveAck(block, bytes(datagram[schema.HEADER_SIZE :]))
    return _parse(datagram)


def data_payload(datagram: Buffer) -> bytes:
    """DATA's payload.  A ``bytes`` datagram is immutable, so the payload is a view of it, not a copy (64 KiB
    a block saved on the receive path); a mutable buffer (``recv_into``) is copied, as it may be reused."""
    if type(datagram) is bytes:
        return memoryview(datagram)[schema.HEADER_SIZE :]  # type: ignore[return-value]  # bytes-like, read-only
    return bytes(datagram[schema.HEADER_SIZE :])


def decode_with_construct(datagram: Buffer) -> Packet:
    """:func:`decode` without the struct fast path (for tests proving both agree)."""
    size = len(datagram)
    if size > MAX_DATAGRAM:
        raise MalformedPacket(OVERSIZED, f"{size} bytes")
    return _parse(datagram)


def _parse(datagram: Buffer) -> Packet:
    try:
        parsed = schema.packet.parse(bytes(datagram))
    except schema.MissingNul as exc:  # before StreamError: it is a subclass
        raise MalformedPacket(MISSING_NUL) from exc
    except schema.UnknownOpcode as exc:
        raise MalformedPacket(UNKNOWN_OPCODE, f"opcode {int.from_bytes(datagram[:2], 'big')}") from exc
    except TerminatedError as exc:
        raise MalformedPacket(TRAILING_BYTES) from exc
    except CheckError as exc:
        raise MalformedPacket(OVERSIZED) from exc
    except StreamError as exc:
        raise MalformedPacket(TRUNCATED) from exc
    except (ConstructError, ValueError) as exc:  # ValueError covers UnicodeError
        raise MalformedPacket(MALFORMED, str(exc).replace("\n", " ")) from exc
    return _FROM_CONSTRUCT[str(parsed.opcode)](parsed.body)


def _options_from(items: Any) -> Options:
    return tuple((item.name, item.value) for item in items)


_FROM_CONSTRUCT: Final[dict[str, Callable[[Container], Packet]]] = {
    "RRQ": lambda b: ReadRequest(b.filename, b.mode, _options_from(b.options)),
    "WRQ": lambda b: WriteRequest(b.filename, b.mode, _options_from(b.options)),
    "DATA": lambda b: Data(b.block, b.data),
    "ACK": lambda b: Ack(b.block),
    "ERROR": lambda b: Error(b.code, b.message),
    "OACK": lambda b: OptionAck(_options_from(b.options)),
    "SACK": lambda b: SelectiveAck(b.block, b.bitmap),
}


# ---------------------------------------------------------------------------------------------- encoding


def encode_data(block: int, payload: Buffer) -> bytes:
    """DATA on the fast path: ``| 03 | block | payload |`` (RFC 1350 section 5)."""
    header, payload = encode_data_parts(block, payload)
    return header + payload


def encode_data_parts(block: int, payload: Buffer) -> tuple[bytes, Buffer]:
    """DATA as its two pieces, header and payload, for a gathering send (``sendmsg``) that never copies the
    payload in user space; joined they are exactly ``encode_data``'s bytes."""
    if len(payload) > MAX_BLKSIZE:  # RFC 2348: blksize at most 65464 octets
        raise ValueError(f"DATA payload of {len(payload)} bytes exceeds {MAX_BLKSIZE}")
    return data_header(block), payload


def data_header(block: int) -> bytes:
    """The first 4 bytes of DATA ``block``: ``| 03 | block |``.  A receiver that expects ``block`` can recognise
    it by these bytes alone (``decode`` would return ``Data(block, data_payload(datagram))``)."""
    _check_u16(block, "block")
    return _HEAD.pack(_OP_DATA, block)


def encode_ack(block: int) -> bytes:
    """ACK on the fast path: ``| 04 | block |`` (RFC 1350 section 5)."""
    _check_u16(block, "block")
    return _HEAD.pack(_OP_ACK, block)


def encode_sack(block: int, bitmap: Buffer) -> bytes:
    """SACK on the fast path: ``| 0x0100 | block | bitmap |`` (spec/protocol.md)."""
    _check_u16(block, "block")
    if len(bitmap) > MAX_SACK_BITMAP:
        raise ValueError(f"SACK bitmap of {len(bitmap)} bytes exceeds {MAX_SACK_BITMAP}")
    return _HEAD.pack(_OP_SACK, block) + bitmap


def encode(packet: Packet) -> bytes:
    """Encode a packet; ``ValueError`` if a field cannot go on the wire, ``TypeError`` for a non-packet."""
    kind = type(packet)
    if kind is Data:
        return encode_data(packet.block, packet.data)  # type: ignore[union-attr]
    if kind is Ack:
        return encode_ack(packet.block)  # type: ignore[union-attr]
    if kind is SelectiveAck:
        return encode_sack(packet.block, packet.bitmap)  # type: ignore[union-attr]
    return encode_with_construct(packet)


def encode_with_construct(packet: Packet) -> bytes:
    """:func:`encode` without the struct fast path (for tests proving both agree)."""
    obj = _to_construct(packet)
    try:
        return schema.packet.build(obj)
    except (ConstructError, UnicodeError) as exc:
        # _to_construct validated everything we know of; this is the schema's own last word.
        raise ValueError(f"cannot encode {packet!r}: {exc}") from exc


def _to_construct(packet: Packet) -> dict[str, Any]:
    if isinstance(packet, (ReadRequest, WriteRequest)):
        body: dict[str, Any] = {
            "filename": _check_string(packet.filename, "filename"),
            "mode": _check_string(packet.mode, "mode"),
            "options": _check_options(packet.options),
        }
        opcode = Opcode.RRQ if isinstance(packet, ReadRequest) else Opcode.WRQ
    elif isinstance(packet, Data):
        _check_u16(packet.block, "block")
        if len(packet.data) > MAX_BLKSIZE:
            raise ValueError(f"DATA payload of {len(packet.data)} bytes exceeds {MAX_BLKSIZE}")
        body, opcode = {"block": packet.block, "data": bytes(packet.data)}, Opcode.DATA
    elif isinstance(packet, Ack):
        body, opcode = {"block": _check_u16(packet.block, "block")}, Opcode.ACK
    elif isinstance(packet, Error):
        body = {"code": _check_u16(packet.code, "error code"), "message": _check_string(packet.message, "message")}
        opcode = Opcode.ERROR
    elif isinstance(packet, OptionAck):
        body, opcode = {"options": _check_options(packet.options)}, Opcode.OACK
    elif isinstance(packet, SelectiveAck):
        _check_u16(packet.block, "block")
        if len(packet.bitmap) > MAX_SACK_BITMAP:
            raise ValueError(f"SACK bitmap of {len(packet.bitmap)} bytes exceeds {MAX_SACK_BITMAP}")
        body, opcode = {"block": packet.block, "bitmap": bytes(packet.bitmap)}, Opcode.SACK
    else:
        raise TypeError(f"not a TFTP packet: {packet!r}")
    # The schema's Switch matches the opcode *name*: an int or Opcode member would hit its default.
    return {"opcode": opcode.name, "body": body}


def _check_u16(value: int, what: str) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= _MAX_BLOCK:
        raise ValueError(f"{what} {value} outside 0..{_MAX_BLOCK}")
    return value


def _check_string(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    # RFC 1350 section 5: strings end at the first zero byte, so they cannot contain one.
    if "\x00" in value:
        raise ValueError(f"{what} {value!r} contains NUL")
    try:
        value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:  # a lone surrogate that did not come from decoding bytes
        raise ValueError(f"{what} {value!r} is not encodable: {exc.reason}") from exc
    return value


def _check_options(options: Options) -> list[dict[str, str]]:
    pairs = []
    for pair in options:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"option must be a (name, value) tuple, not {pair!r}")
        name, value = pair
        pairs.append({"name": _check_string(name, "option name"), "value": _check_string(value, "option value")})
    return pairs


# ---------------------------------------------------------------------------------------------- logging

_QUOTE_LIMIT: Final = 60  # a peer's 64 KiB error message must not flood the log


def _quote(text: str) -> str:
    if len(text) > _QUOTE_LIMIT:
        return repr(text[:_QUOTE_LIMIT]) + "..."
    return repr(text)


def _text(text: str) -> str:
    """Bare if it reads unambiguously (``octet``, ``blksize``), quoted and clipped otherwise."""
    plain = bool(text) and text.isprintable() and " " not in text and len(text) <= _QUOTE_LIMIT
    return text if plain else _quote(text)


def _describe_options(options: Options) -> str:
    return "".join(f" {_text(name)}={_text(value)}" for name, value in options)


def describe(packet: Packet) -> str:
    """A short one-line summary for logs and ladder diagrams, e.g. ``DATA block=3 len=512``."""
    if isinstance(packet, Data):
        return f"DATA block={packet.block} len={len(packet.data)}"
    if isinstance(packet, Ack):
        return f"ACK block={packet.block}"
    if isinstance(packet, Error):
        return f"ERROR {int(packet.code)} {_quote(packet.message)}"
    if isinstance(packet, (ReadRequest, WriteRequest)):
        kind = "RRQ" if isinstance(packet, ReadRequest) else "WRQ"
        return f"{kind} {_quote(packet.filename)} {_text(packet.mode)}{_describe_options(packet.options)}"
    if isinstance(packet, OptionAck):
        return f"OACK{_describe_options(packet.options)}"
    if isinstance(packet, SelectiveAck):
        held = sum(bin(byte).count("1") for byte in packet.bitmap)
        return f"SACK block={packet.block} +{held} beyond"
    raise TypeError(f"not a TFTP packet: {packet!r}")
