"""UDP segmentation offload: many datagrams per system call, invisible on the wire (Linux 4.18+ GSO, 5.0+ GRO).

Sending (``UDP_SEGMENT``, generic segmentation offload): a run of datagrams to one address, all ``size`` bytes but
perhaps the last, which may be shorter, goes to the kernel in one ``sendmsg`` that says "cut this every ``size``
bytes".  The kernel (or the network card) cuts it, so the wire carries exactly the datagrams a ``sendto`` per
datagram would have sent, and any receiver sees ordinary datagrams.  It pays where blocks are small (an
Ethernet-sized DATA block is 1472 bytes: 44 of them per call); 64 KiB blocks never form a run.

Receiving (``UDP_GRO``, generic receive offload): the kernel may hand a socket that asked for it several
datagrams of one sender in one buffer, with a control message giving the segment size; ``segments`` cuts the
buffer up again.  Only a socket whose reader cuts may ask (``enable_gro``): the driver's transfer sockets do,
the server's listening socket and the shim's relay sockets, which read with ``recvfrom``, do not.

Where the kernel refuses (no support: ``ENOPROTOOPT``, ``EOPNOTSUPP``; a device without checksum offload:
``EIO``; a segment larger than the path MTU: ``EINVAL``) the driver sends that batch again one datagram at a
time and stops batching on that socket (``FALLBACK_ERRNOS``).  ``RUDP_NO_GSO=1`` in the environment turns both
directions off (``ENABLED``), read once at import.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
from typing import Final

__all__ = [
    "ENABLED",
    "SOL_UDP",
    "UDP_SEGMENT",
    "UDP_GRO",
    "MAX_SEGMENTS",
    "MAX_BYTES",
    "FALLBACK_ERRNOS",
    "GRO_CMSG_SPACE",
    "enable_gro",
    "segment_option",
    "segments",
]

ENABLED: Final = os.environ.get("RUDP_NO_GSO", "") in ("", "0")

SOL_UDP: Final = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT: Final = getattr(socket, "UDP_SEGMENT", 103)  # linux/udp.h; Python's socket module lacks both
UDP_GRO: Final = getattr(socket, "UDP_GRO", 104)
MAX_SEGMENTS: Final = 64  # the kernel's UDP_MAX_SEGMENTS: 64 before Linux 5.5, 128 since
MAX_BYTES: Final = 65507  # one IPv4 datagram's largest payload: a GSO send is one datagram to the socket layer
FALLBACK_ERRNOS: Final = frozenset(
    {errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EMSGSIZE}
)  # the kernel will not segment (for this socket, route or device): send one datagram per call instead
GRO_CMSG_SPACE: Final = socket.CMSG_SPACE(4)  # the segment size is a C int

_SEGMENT_OPTIONS: dict[int, list[tuple[int, int, bytes]]] = {}


def enable_gro(sock: socket.socket) -> bool:
    """Ask the kernel to coalesce this socket's incoming datagrams; True if it agreed (and batching is on)."""
    if not ENABLED or not isinstance(sock, socket.socket) or sock.type != socket.SOCK_DGRAM:
        return False
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def segment_option(size: int) -> list[tuple[int, int, bytes]]:
    """The ``sendmsg`` ancillary data that asks for ``size``-byte segments (cached: one per block size)."""
    option = _SEGMENT_OPTIONS.get(size)
    if option is None:
        option = _SEGMENT_OPTIONS[size] = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]
    return option


def segments(data: bytes, ancdata: list[tuple[int, int, bytes]], truncated: bool) -> list[bytes] | None:
    """The datagrams in one ``recvmsg`` buffer of a GRO socket, or None if it holds just the one datagram.

    The kernel cuts a coalesced buffer every ``size`` bytes, the last piece perhaps shorter.  If the buffer
    was truncated (``MSG_TRUNC``), a cut-short last piece is dropped (as a loss) rather than passed on as a
    short, final-looking DATA block."""
    for level, kind, value in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(value) >= 4:
            size = int.from_bytes(value[:4], sys.byteorder)
            break
    else:
        return None
    total = len(data)
    if size <= 0 or total <= size:
        return None
    if truncated:
        total -= total % size
    return [data[start : start + size] for start in range(0, total, size)]
