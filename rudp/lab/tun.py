"""Opening a TUN device: one ``ioctl`` on ``/dev/net/tun``.

``IFF_TUN | IFF_NO_PI`` and no virtio-net header: each ``read`` is one IP packet and each ``write`` injects one.
Without a vnet header the device offers no segmentation offload, so the kernel segments TCP and UDP_SEGMENT sends
in software before they reach the device: the relay sees wire-sized packets and loses them one by one.  The
device is not persistent: it disappears when the last fd on it is closed.  It may be moved to another namespace
(``ip link set NAME netns NS``) and the fd stays attached to it, which is how the lab builds both ends from the
root namespace without ``setns``.
"""

from __future__ import annotations

import fcntl
import os
import struct

__all__ = ["open_tun", "TUN_PATH"]

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    """Create TUN device ``name`` (at most 15 bytes) in the caller's namespace; return its fd (close-on-exec)."""
    if not 0 < len(name.encode()) <= 15:
        raise ValueError(f"an interface name has 1 to 15 bytes, not {name!r}")
    fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    except BaseException:
        os.close(fd)
        raise
    return fd
