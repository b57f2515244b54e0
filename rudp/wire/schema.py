"""The TFTP wire format, declared once with construct: the one source of truth for packet layouts.

Theory of operation
-------------------
``packet`` is a single construct: a 16-bit big-endian opcode, a ``Switch`` on that opcode selecting the body
layout, then ``Terminated`` so nothing may follow a complete packet.  Parsing yields a construct ``Container``
(``opcode`` is the Opcode *name*, ``body`` holds the fields); :mod:`rudp.wire.codec` turns that into the typed
dataclasses of :mod:`rudp.wire.packets` and back.  This module knows layouts only, never policy (which modes or
options are acceptable is :mod:`rudp.core`'s business), and it never catches anything: the codec is the one
place where construct's exceptions become ``MalformedPacket``.

Strings are NUL-terminated byte runs (RFC 1350 section 5) decoded as UTF-8 with ``surrogateescape``, so any byte
sequence survives a parse/build round trip.  construct's ``CString`` only knows a few codecs and would reject or
mangle such names, hence ``WireString``.

Three small constructs make every failure say *why* by its exception class alone, so the codec never reads
construct's messages or paths:

* ``WireString`` turns "ran out of bytes before the NUL" into :class:`MissingNul`;
* ``OptionsEnd`` follows an option list: ``GreedyRange`` swallows the error of an incomplete (name, value) pair
  and stops, so leftover bytes there mean an option without its NUL (:class:`MissingNul`), not junk;
* the ``Switch`` default is :class:`UnknownOpcode`.

Anything else is construct's own: ``StreamError`` (a fixed-width field cut short), ``TerminatedError`` (bytes
after a complete ACK or ERROR), ``CheckError`` (DATA payload over the RFC 2348 maximum).

Building: pass the opcode as its *name* (``"ACK"``).  construct's ``Enum`` would accept ``4`` or ``Opcode.ACK``,
but ``Switch`` looks up the value as given, so those fall through to the default and raise.  Do not use
``packet.compile()``: with construct 2.10.70 a compiled Enum+Switch build silently emits only the opcode when the
Switch has no default, and raises when it has one.
"""

from __future__ import annotations

from typing import Any

from construct import (
    Adapter,
    Check,
    Construct,
    ConstructError,
    Enum,
    GreedyBytes,
    GreedyRange,
    Int16ub,
    NullTerminated,
    StreamError,
    Struct,
    Switch,
    Terminated,
    len_,
    this,
)

from .packets import MAX_BLKSIZE, MAX_SACK_BITMAP, Opcode

__all__ = [
    "MAX_DATAGRAM",
    "HEADER_SIZE",
    "MissingNul",
    "UnknownOpcode",
    "NulInString",
    "WireString",
    "OptionsEnd",
    "option",
    "options",
    "request_body",
    "data_body",
    "ack_body",
    "error_body",
    "oack_body",
    "sack_body",
    "packet",
]

HEADER_SIZE = 4  # RFC 1350 section 5: 2-byte opcode + 2-byte block number (DATA, ACK) or error code (ERROR)
# The largest legitimate datagram is a DATA packet carrying the largest block RFC 2348 allows.
MAX_DATAGRAM = HEADER_SIZE + MAX_BLKSIZE


class MissingNul(StreamError):
    """A NUL-terminated string ran to the end of the datagram without its NUL."""


class UnknownOpcode(ConstructError):
    """The opcode is not one of RFC 1350 section 5's (plus OACK, RFC 2347)."""


class NulInString(ConstructError):
    """Building: a string holds a NUL, which would end it early on the wire (a caller's error)."""


class _WireString(Adapter):
    """Arbitrary bytes up to a NUL, seen as ``str`` via UTF-8 + surrogateescape (round-trips any bytes)."""

    def _parse(self, stream: Any, context: Any, path: Any) -> str:
        try:
            return super()._parse(stream, context, path)
        except StreamError as exc:
            raise MissingNul("string without NUL terminator", path=path) from exc

    def _decode(self, obj: bytes, context: Any, path: Any) -> str:
        return obj.decode("utf-8", "surrogateescape")

    def _encode(self, obj: str, context: Any, path: Any) -> bytes:
        raw = obj.encode("utf-8", "surrogateescape")  # UnicodeEncodeError for surrogates not from a decode
        if b"\x00" in raw:
            # NullTerminated would write the NUL and the rest, producing a different, valid-looking packet.
            raise NulInString(f"NUL inside string {obj!r}", path=path)
        return raw


# RFC 1350 section 5: "Filename ... terminated by a zero byte", likewise Mode and ErrMsg.
WireString = _WireString(NullTerminated(GreedyBytes))


class _OptionsEnd(Construct):
    """``Terminated`` for an option list: GreedyRange stopped early only if a pair is missing a NUL."""

    def __init__(self) -> None:
        super().__init__()
        self.flagbuildnone = True  # takes no value when building (else Struct looks up obj[None])

    def _parse(self, stream: Any, context: Any, path: Any) -> None:
        if stream.read(1):
            raise MissingNul("option name or value without NUL terminator", path=path)
        return None

    def _build(self, obj: Any, stream: Any, context: Any, path: Any) -> None:
        return None

    def _sizeof(self, context: Any, path: Any) -> int:
        return 0


OptionsEnd = _OptionsEnd()


class _UnknownOpcodeField(Construct):
    """The Switch default: raise :class:`UnknownOpcode` both ways."""

    def _parse(self, stream: Any, context: Any, path: Any) -> None:
        raise UnknownOpcode(f"unknown opcode {context.opcode!r}", path=path)

    def _build(self, obj: Any, stream: Any, context: Any, path: Any) -> None:
        raise UnknownOpcode(f"unknown opcode {context.opcode!r}", path=path)


# RFC 2347 section "Packet Format": opt1 0 value1 0 ... optN 0 valueN 0, appended after the mode.
# Every pair consumes at least two bytes, so GreedyRange cannot loop forever on an empty match.  Note that
# GreedyRange stops on *any* Exception from the pair (not just ConstructError), rewinding to the pair's start.
option = Struct("name" / WireString, "value" / WireString)
options = GreedyRange(option)

# RFC 1350 section 5: | 01/02 | Filename | 0 | Mode | 0 |, then RFC 2347 options.
request_body = Struct("filename" / WireString, "mode" / WireString, "options" / options, OptionsEnd)

# RFC 1350 section 5: | 03 | Block # | Data |; RFC 2348: blocks of at most 65464 octets.
data_body = Struct(
    "block" / Int16ub,
    "data" / GreedyBytes,
    Check(len_(this.data) <= MAX_BLKSIZE),
)

# RFC 1350 section 5: | 04 | Block # |
ack_body = Struct("block" / Int16ub)

# RFC 1350 section 5: | 05 | ErrorCode | ErrMsg | 0 |
error_body = Struct("code" / Int16ub, "message" / WireString)

# RFC 2347 section "Packet Format": | 06 | opt1 | 0 | value1 | 0 | ... (possibly no options at all).
oack_body = Struct("options" / options, OptionsEnd)

# rudp's SACK (spec/protocol.md): | 0x0100 | Block # | bitmap (0..1024 bytes) |
sack_body = Struct(
    "block" / Int16ub,
    "bitmap" / GreedyBytes,
    Check(len_(this.bitmap) <= MAX_SACK_BITMAP),
)

packet = Struct(
    "opcode" / Enum(Int16ub, Opcode),
    "body"
    / Switch(
        this.opcode,
        {
            Opcode.RRQ.name: request_body,
            Opcode.WRQ.name: request_body,
            Opcode.DATA.name: data_body,
            Opcode.ACK.name: ack_body,
            Opcode.ERROR.name: error_body,
            Opcode.OACK.name: oack_body,
            Opcode.SACK.name: sack_body,
        },
        default=_UnknownOpcodeField(),
    ),
    Terminated,
)
