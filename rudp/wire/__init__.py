"""rudp.wire: TFTP packets (RFC 1350, options per RFC 2347/2348/2349/7440) and their byte encoding.

Everything above this layer sees only the frozen dataclasses of :mod:`rudp.wire.packets`.
:func:`decode` turns any datagram into one of them or raises :class:`MalformedPacket` (peer's fault: drop and
count ``exc.reason``); :func:`encode` goes back and raises ``ValueError`` on local misuse.  The byte layouts are
declared once, in :mod:`rudp.wire.schema`; :mod:`rudp.wire.codec` adds a struct fast path for DATA and ACK.
"""

from __future__ import annotations

from .codec import (
    MAX_DATAGRAM,
    REASONS,
    MalformedPacket,
    decode,
    describe,
    encode,
    encode_ack,
    encode_data,
    encode_sack,
)
from .packets import (
    DEFAULT_BLKSIZE,
    MAX_BLKSIZE,
    MIN_BLKSIZE,
    Ack,
    Data,
    Error,
    ErrorCode,
    Opcode,
    OptionAck,
    Options,
    Packet,
    ReadRequest,
    Request,
    SelectiveAck,
    WriteRequest,
)

__all__ = [
    "MAX_DATAGRAM",
    "REASONS",
    "MalformedPacket",
    "decode",
    "describe",
    "encode",
    "encode_ack",
    "encode_sack",
    "encode_data",
    "DEFAULT_BLKSIZE",
    "MAX_BLKSIZE",
    "MIN_BLKSIZE",
    "Ack",
    "Data",
    "Error",
    "ErrorCode",
    "Opcode",
    "OptionAck",
    "SelectiveAck",
    "Options",
    "Packet",
    "ReadRequest",
    "Request",
    "WriteRequest",
]
