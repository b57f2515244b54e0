"""UDP sockets the way the drivers need them: resolved, sized, and told to report ICMP errors.

Linux reports an ICMP port unreachable as ECONNREFUSED only on connected UDP sockets, unless IP_RECVERR is set.
A TFTP client cannot connect its socket (the server answers from a new port, RFC 1350 section 4), so rudp sets
IP_RECVERR / IPV6_RECVERR: the next receive fails with ECONNREFUSED and the error queue names the destination
that bounced, so a bounce from a stranger we answered with ERROR 5 is told apart from our peer's.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from rudp.errors import NetworkError

__all__ = [
    "Address",
    "resolve",
    "udp_socket",
    "bounced_destinations",
    "RECV_SIZE",
    "same_host",
    "path_mtu",
    "receive_buffer",
    "blksize_for_mtu",
]

Address = tuple[Any, ...]
RECV_SIZE = 65536 + 64  # the largest UDP payload and then some, so oversized datagrams are seen, not truncated
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_BUFFER = 4 * 1024 * 1024  # ask for 4 MiB socket buffers; the kernel caps this at net.core.[rw]mem_max
_IP_MTU = getattr(socket, "IP_MTU", 14)  # Linux: the path MTU of a connected socket
_IPV6_MTU = getattr(socket, "IPV6_MTU", 24)


def path_mtu(family: int, peer: Address) -> int | None:
    """The MTU of the route to ``peer`` as the kernel knows it (Linux ``IP_MTU`` on a connected socket: 65535 on
    loopback, 1500 on Ethernet), or None where the kernel does not say.  Nothing is sent."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(peer)
            if family == socket.AF_INET6:
                return int(probe.getsockopt(socket.IPPROTO_IPV6, _IPV6_MTU))
            return int(probe.getsockopt(socket.IPPROTO_IP, _IP_MTU))
    except OSError:
        return None


def blksize_for_mtu(mtu: int, family: int) -> int:
    """The largest TFTP block that fits one packet of ``mtu`` bytes: MTU - IP header - UDP (8) - TFTP (4)."""
    header = 40 if family == socket.AF_INET6 else 20
    return max(512, min(65464, mtu - header - 8 - 4))  # RFC 2348's range; 512 is RFC 1350's size


def receive_buffer(sock: socket.socket) -> int:
    """SO_RCVBUF as the kernel reports it (twice what was asked, bookkeeping included)."""
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


def resolve(host: str, port: int) -> tuple[int, Address]:
    """(family, sockaddr) for a host name or literal; NetworkError with a one-line message if unknown."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP)
    except socket.gaierror as exc:
        raise NetworkError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    except UnicodeError:
        raise NetworkError(f"invalid host name {host!r}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def udp_socket(
    family: int, bind: Address | None = None, *, dual_stack: bool = False, report_errors: bool = True
) -> socket.socket:
    """A blocking UDP socket with large buffers, bound to ``bind`` (default: any).

    ``report_errors`` turns on ICMP error reporting; its owner must then drain the error queue
    (``bounced_destinations``), which otherwise fills and eats into the receive buffer."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
            if report_errors:
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
        elif report_errors:
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, _BUFFER)
            except OSError:
                pass
        sock.bind(bind if bind is not None else (("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
    except OSError:
        sock.close()
        raise
    return sock


def bounced_destinations(sock: socket.socket) -> list[Address]:
    """Drain the socket's error queue: the destinations whose datagrams came back as ICMP errors."""
    out = []
    for _ in range(1024):  # bounded: the queue is small, but never loop forever
        try:
            _, _, _, addr = sock.recvmsg(1, 512, _MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.ECONNREFUSED):
                continue
            break
        if addr:
            out.append(addr)
    return out


def same_host(a: Address, b: Address) -> bool:
    """Same IP, whether or not one side is written as an IPv4-mapped IPv6 address."""
    return _plain(a[0]) == _plain(b[0])


def _plain(host: str) -> str:
    return host[7:] if host.startswith("::ffff:") and "." in host else host
