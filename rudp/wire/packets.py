"""Typed TFTP packets: what the codec produces and consumes.

These frozen dataclasses are the only packet representation the rest of rudp sees.  The byte layout of each
lives in :mod:`rudp.wire.schema` (construct), the one source of truth for the wire.

Strings (filename, mode, option names and values, error messages) are ``str`` decoded from the wire as UTF-8
with ``surrogateescape``, so any byte sequence survives a decode/encode round trip unchanged and a filename can be
handed to ``os`` functions as it is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "MAX_BLKSIZE",
    "MIN_BLKSIZE",
    "DEFAULT_BLKSIZE",
    "Opcode",
    "ErrorCode",
    "Options",
    "ReadRequest",
    "WriteRequest",
    "Request",
    "Data",
    "Ack",
    "Error",
    "OptionAck",
    "SelectiveAck",
    "MAX_SACK_BITMAP",
    "Packet",
]

DEFAULT_BLKSIZE = 512  # RFC 1350 section 2: "data ... 512 bytes long"
MIN_BLKSIZE = 8  # RFC 2348: "Valid values range between 8 and 65464 octets, inclusive."
MAX_BLKSIZE = 65464

# Options exactly as on the wire: ordered (name, value) pairs; names are compared case-insensitively
# (RFC 2347: "Options are ... case insensitive") by rudp.core.options, never here.
Options = tuple[tuple[str, str], ...]


class Opcode(enum.IntEnum):
    """RFC 1350 section 5, plus OACK from RFC 2347, plus rudp's SACK (only after both ends negotiated the
    ``sack`` option; see spec/protocol.md).  IANA has assigned 1-6; SACK sits far above them."""

    RRQ = 1
    WRQ = 2
    DATA = 3
    ACK = 4
    ERROR = 5
    OACK = 6
    SACK = 0x0100


class ErrorCode(enum.IntEnum):
    """RFC 1350 appendix "Error Codes", plus 8 from RFC 2347."""

    NOT_DEFINED = 0
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3
    ILLEGAL_OPERATION = 4
    UNKNOWN_TID = 5
    FILE_EXISTS = 6
    NO_SUCH_USER = 7
    OPTION_REFUSED = 8


@dataclass(frozen=True)
class ReadRequest:
    filename: str
    mode: str
    options: Options = ()


@dataclass(frozen=True)
class WriteRequest:
    filename: str
    mode: str
    options: Options = ()


Request = ReadRequest | WriteRequest


@dataclass(frozen=True)
class Data:
    block: int  # 0..65535 on the wire; rollover is the session's business
    data: bytes


@dataclass(frozen=True)
class Ack:
    block: int


@dataclass(frozen=True)
class Error:
    code: int  # usually an ErrorCode; peers may send codes we do not know
    message: str


@dataclass(frozen=True)
class OptionAck:
    options: Options


# The most a SACK's bitmap may hold: 1024 bytes report 8192 blocks beyond the first missing one.
MAX_SACK_BITMAP = 1024


@dataclass(frozen=True)
class SelectiveAck:
    """rudp's selective acknowledgment: every block up to ``block`` arrived (as an ACK says), block + 1 did not,
    and bit i of ``bitmap`` (most significant bit of byte 0 first) says whether block + 2 + i arrived."""

    block: int
    bitmap: bytes = b""


Packet = ReadRequest | WriteRequest | Data | Ack | Error | OptionAck | SelectiveAck
