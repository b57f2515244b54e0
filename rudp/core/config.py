"""Every knob a transfer session has, in one frozen dataclass (STYLE.md section 8).

For a client, ``blksize``, ``windowsize`` and ``timeout_option`` are what it asks for; for a server they are the
largest values it grants.  Nothing here reads the clock or the environment.
"""

from __future__ import annotations

from dataclasses import dataclass

from rudp.core.digests import DIGESTS
from rudp.core.rtt import MIN_RTO
from rudp.wire.packets import DEFAULT_BLKSIZE, MAX_BLKSIZE, MIN_BLKSIZE

__all__ = [
    "TransferConfig",
    "MODES",
    "MAX_WINDOWSIZE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_RETRIES",
    "DATAGRAM_OVERHEAD",
    "window_for_buffer",
]

MODES = ("octet", "netascii")  # RFC 1350 section 1: "mail" is obsolete and refused
MAX_WINDOWSIZE = 65535  # RFC 7440 section 3: "between 1 and 65535 blocks, inclusive"
DEFAULT_TIMEOUT = 5.0  # the classic TFTP retransmission timeout
DEFAULT_RETRIES = 5
# What one received datagram costs a Linux socket's receive buffer beyond its payload: TFTP, UDP and IP headers
# and the kernel's own bookkeeping (sk_buff), which is charged against SO_RCVBUF too.
DATAGRAM_OVERHEAD = 4 + 8 + 20 + 800


def window_for_buffer(receive_buffer: int, blksize: int) -> int:
    """The most blocks of ``blksize`` a receive buffer of ``receive_buffer`` bytes (as getsockopt reports it)
    holds with room to spare: half of it, so ACK bursts, a second transfer or a slow reader never overflow it."""
    return max(1, min(MAX_WINDOWSIZE, receive_buffer // 2 // (blksize + DATAGRAM_OVERHEAD)))


@dataclass(frozen=True)
class TransferConfig:
    blksize: int = DEFAULT_BLKSIZE
    windowsize: int = 1
    timeout: float = DEFAULT_TIMEOUT  # the longest wait before a retransmission, seconds (local)
    fixed_timeout: bool = False  # True: always wait ``timeout`` (classic TFTP); False: RFC 6298 RTO <= timeout
    min_rto: float = MIN_RTO  # the adaptive timer's floor, seconds
    retries: int = DEFAULT_RETRIES  # retransmissions of one thing before giving up
    mode: str = "octet"
    options: bool = True  # client: send RFC 2347 options at all
    timeout_option: int | None = None  # client: ask the peer for this RFC 2349 timeout (1..255)
    dally: float | None = None  # seconds to keep answering a repeated final DATA; None: 2 x timeout
    max_size: int | None = None  # receiving side: largest file accepted, from tsize and while receiving
    selective: bool = True  # offer (client) / grant (server) rudp's ``sack`` option when windowsize > 1
    digest: bool = True  # offer (client) / grant (server) rudp's digest option in octet mode (spec 7.7)
    digest_algorithm: str = "xxh128"  # client: the digest option offered, "xxh128" or "sha256" (spec 7.7)
    digest_trailer: bool = True  # client: the digest follows the data (True) or travels in the request (spec 7.7)
    receive_buffer: int | None = None  # bytes the receiving socket holds (driver-measured); caps the window
    fit_blksize: bool = False  # client: the driver replaces blksize by what the path's MTU carries in one packet
    fit_windowsize: bool = False  # client: the driver replaces windowsize by what the receive buffer holds
    congestion: str = "delay"  # sender policy: "delay" (SR: DelayGatedAimd, go-back-N: WindowPacing) or "none"
    max_window_bytes: int = 8 * 1024 * 1024  # server: a granted window holds at most this many block bytes

    def __post_init__(self) -> None:
        if not MIN_BLKSIZE <= self.blksize <= MAX_BLKSIZE:
            raise ValueError(f"blksize must be {MIN_BLKSIZE}..{MAX_BLKSIZE}, not {self.blksize}")
        if not 1 <= self.windowsize <= MAX_WINDOWSIZE:
            raise ValueError(f"windowsize must be 1..{MAX_WINDOWSIZE}, not {self.windowsize}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, not {self.timeout}")
        if not self.min_rto > 0:
            raise ValueError(f"min_rto must be positive, not {self.min_rto}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, not {self.retries}")
        if self.digest_algorithm not in DIGESTS:
            known = ", ".join(DIGESTS)
            raise ValueError(f"digest_algorithm must be one of {known}, not {self.digest_algorithm!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.timeout_option is not None and not 1 <= self.timeout_option <= 255:
            raise ValueError(f"timeout option must be 1..255 seconds, not {self.timeout_option}")
        if self.dally is not None and self.dally < 0:
            raise ValueError(f"dally must be >= 0, not {self.dally}")
        if self.congestion not in ("delay", "none"):
            raise ValueError(f"congestion must be delay or none, not {self.congestion!r}")
        if self.max_window_bytes < 1:
            raise ValueError(f"max_window_bytes must be positive, not {self.max_window_bytes}")
        if self.receive_buffer is not None and self.receive_buffer < 1:
            raise ValueError(f"receive_buffer must be positive, not {self.receive_buffer}")
        if self.max_size is not None and self.max_size < 0:
            raise ValueError(f"max_size must be >= 0, not {self.max_size}")
