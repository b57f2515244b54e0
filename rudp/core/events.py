"""What a session reports to its driver: frozen event records and the mutable statistics counters."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "FailureKind",
    "Digest",
    "Negotiated",
    "DataReceived",
    "TransferComplete",
    "TransferFailed",
    "Event",
    "TransferStats",
]


class FailureKind(enum.Enum):
    PEER_ERROR = "peer-error"  # the peer sent an ERROR packet
    TIMED_OUT = "timed-out"  # the retry budget ran out
    PROTOCOL_ERROR = "protocol-error"  # the peer broke the protocol; we sent it an ERROR
    REFUSED = "refused"  # we refused the transfer (size limit); we sent an ERROR
    UNREACHABLE = "unreachable"  # the driver saw ICMP port unreachable (ECONNREFUSED) from the peer
    ABORTED = "aborted"  # the local side gave up (Ctrl-C, disk full, ...); we sent an ERROR
    DAMAGED = "damaged"  # the file's digest did not match (spec 7.7): not kept; we sent an ERROR


class Digest(NamedTuple):
    """A whole-file digest carried by one of rudp's digest options (spec section 7.7)."""

    algorithm: str  # the option's name: "xxh128" or "sha256"
    value: str  # lower-case hex, as ``hexdigest`` writes it, or ``trailer``: it follows the file's bytes


@dataclass(frozen=True)
class Negotiated:
    """The transfer parameters in force, once the peer has answered the request."""

    blksize: int
    windowsize: int
    timeout: float
    tsize: int | None  # the size the peer announced (RFC 2349), if any
    oack: bool  # whether options were acknowledged at all (False: plain RFC 1350)
    selective: bool = False  # rudp's ``sack`` option: selective repeat with SACKs instead of go-back-N
    digest: Digest | None = None  # rudp's digest option: the whole file's digest, which the receiver verifies


@dataclass(frozen=True)
class DataReceived:
    data: bytes  # file bytes, in order, netascii already translated


@dataclass(frozen=True)
class TransferComplete:
    pass


@dataclass(frozen=True)
class TransferFailed:
    kind: FailureKind
    message: str
    code: int | None = None  # the TFTP error code received or sent, if any


Event = Negotiated | DataReceived | TransferComplete | TransferFailed


@dataclass
class TransferStats:
    datagrams_sent: int = 0
    datagrams_received: int = 0
    wire_bytes_sent: int = 0
    wire_bytes_received: int = 0
    payload_bytes: int = 0  # DATA payload acknowledged (sender) or accepted in order (receiver)
    blocks: int = 0  # DATA blocks acknowledged (sender) or accepted in order (receiver)
    retransmissions: int = 0  # datagrams sent again after a timeout or a go-back
    timeouts: int = 0
    duplicates: int = 0  # duplicate ACKs (sender) or duplicate DATA (receiver) seen
    out_of_order: int = 0  # DATA beyond a gap (receiver)
    wrong_tid: int = 0  # datagrams from a foreign address or port (answered with ERROR 5)
    malformed: Counter[str] = field(default_factory=Counter)  # dropped undecodable datagrams, by reason

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["malformed"] = dict(self.malformed)
        return d
