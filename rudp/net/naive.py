"""Naive UDP over real sockets: the home-made "just send the chunks" transfer that rudp exists to replace.

The sender cuts the data into ``chunk`` -byte datagrams and sends each once (no header, no ACK, no
retransmission), paced at ``rate`` bits per second so that the only damage is the path's, not its own socket
buffers'.  The receiver appends whatever arrives, in arrival order, and stops when nothing has arrived for
``idle`` seconds: a naive receiver cannot know it has everything, so it waits, like the scripts it stands for.
``rudp.naive.analyse`` then measures the damage.  Used by ``rudp-demo``.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable

from rudp.naive import chunks
from rudp.net.sockets import Address

__all__ = ["send_naive", "receive_naive"]

_BURST = 16  # datagrams sent between two looks at the clock


def send_naive(
    sock: socket.socket,
    data: bytes,
    to: Address,
    *,
    chunk: int,
    rate: float,
    on_progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Send every chunk once, paced at ``rate`` bits/s (payload plus 28 bytes of IP/UDP header); return the
    number of datagrams sent.  A send the kernel refuses (buffer full) is a datagram lost, as naive code does."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    started = clock()
    sent_bits = 0.0
    count = 0
    for index, piece in enumerate(chunks(data, chunk)):
        try:
            sock.sendto(piece, to)
        except OSError:
            pass
        count += 1
        sent_bits += (len(piece) + 28) * 8
        if on_progress is not None:
            on_progress(len(piece))
        if index % _BURST == _BURST - 1:
            ahead = started + sent_bits / rate - clock()
            if ahead > 0:
                sleep(ahead)
    return count


def receive_naive(
    sock: socket.socket,
    *,
    first: float,
    idle: float,
    max_bytes: int,
    clock: Callable[[], float] = time.monotonic,
) -> list[bytes]:
    """Collect datagrams until ``idle`` seconds pass without one (``first`` seconds for the first one), or until
    ``max_bytes`` have arrived (a bound, not a signal the sender gives).  Returns them in arrival order."""
    arrivals: list[bytes] = []
    total = 0
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        deadline = clock() + first
        while total < max_bytes:
            wait = deadline - clock()
            if wait <= 0 or not selector.select(wait):
                break
            try:
                datagram = sock.recv(65535, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            arrivals.append(datagram)
            total += len(datagram)
            deadline = clock() + idle
    return arrivals
