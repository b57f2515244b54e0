"""The lab's link: a relay moving IP packets between the two TUN devices through the impairment model.

Theory of operation
-------------------
``Relay`` is the whole packet path and holds no file descriptor and reads no clock: ``receive(packet, direction,
now=...)`` offers a packet read from one side to that direction's ``Channel`` (loss, duplication, reordering,
delay and jitter, rate + drop-tail queue), which schedules zero, one or two deliveries on a heap;
``next_deadline()`` is when the earliest is due and ``due(now=...)`` pops every delivery due by ``now``, in
order of arrival time (ties in the order they were scheduled).  Directions are ``"a>b"`` (read from a's TUN,
written to b's) and ``"b>a"``.  Each direction has its own ``Channel`` seeded from ``LinkSpec.seed`` and the
direction's name, with ``header_bytes=0`` because a TUN packet already carries its IP header.

``serve`` is the thin driver, run as its own process (``main``, started by the lab) so it has a core of its own:
one ``select`` on both TUN fds and the control pipe, with the heap's next deadline as the timeout; readable fds
are drained (up to ``BATCH`` packets each) into the relay, then every due packet is written out.  The control
pipe carries JSON lines, one reply per request: ``{"cmd": "set", "link": {...}}`` (new channels, counters
zeroed; packets already in flight still arrive), ``{"cmd": "counters"}``, ``{"cmd": "reset"}`` and ``{"cmd":
"quit"}``.  End of file on the control pipe means the parent died without saying quit (SIGKILL, a crash): the
relay then deletes the namespaces named by ``--cleanup`` itself and exits, so not even a killed lab leaves
anything behind for long.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import heapq
import json
import os
import random
import select
import signal
import subprocess
import sys
import time

from rudp.impair.model import Channel, Counters
from rudp.lab.link import LinkSpec

PREFIX = "rudplab-"  # every lab namespace's name starts with this (rudp.lab.PREFIX)

__all__ = ["Relay", "DIRECTIONS", "PREFIX", "serve", "main"]

DIRECTIONS = ("a>b", "b>a")
BATCH = 64  # packets read from one fd before the other fd and the heap get their turn
READ_SIZE = 65536  # larger than any MTU a TUN device can have


class Relay:
    """Both directions of the link, in memory: packets in with ``receive``, out with ``due``."""

    def __init__(self, link: LinkSpec) -> None:
        self._heap: list[tuple[float, int, str, bytes]] = []
        self._seq = 0
        self.write_errors = 0
        self.set_link(link)

    def set_link(self, link: LinkSpec) -> None:
        """New channels (so new counters and an empty bottleneck); packets already scheduled still arrive."""
        self.link = link
        impairment = link.impairment()
        self.channels = {
            direction: Channel(impairment, random.Random(f"rudp-lab:{link.seed}:{direction}"), header_bytes=0)
            for direction in DIRECTIONS
        }

    def receive(self, packet: bytes, direction: str, *, now: float) -> None:
        """Offer one packet read from the sending side of ``direction`` at ``now``."""
        for delivery in self.channels[direction].send(packet, now):
            self._seq += 1
            heapq.heappush(self._heap, (delivery.at, self._seq, direction, delivery.data))

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def due(self, *, now: float) -> list[tuple[str, bytes]]:
        """Pop every packet due by ``now``: (direction, packet), to be written to the receiving side."""
        heap = self._heap
        out = []
        while heap and heap[0][0] <= now:
            _, _, direction, packet = heapq.heappop(heap)
            out.append((direction, packet))
        return out

    @property
    def in_flight(self) -> int:
        return len(self._heap)

    def counters(self) -> dict[str, dict[str, int]]:
        return {direction: channel.counters.as_dict() for direction, channel in self.channels.items()}

    def reset_counters(self) -> None:
        for channel in self.channels.values():
            channel.counters = Counters()

    def control(self, request: dict) -> tuple[dict, bool]:
        """Answer one control request; the bool is True when the relay should stop."""
        cmd = request.get("cmd")
        if cmd == "set":
            self.set_link(LinkSpec.from_json(request["link"]))
            return {"ok": True}, False
        if cmd == "counters":
            return {"ok": True, "counters": self.counters(), "write_errors": self.write_errors}, False
        if cmd == "reset":
            self.reset_counters()
            return {"ok": True}, False
        if cmd == "quit":
            return {"ok": True}, True
        return {"ok": False, "error": f"unknown command {cmd!r}"}, False


def _precise_timers() -> None:
    """Ask for 1 us timer slack instead of 50 us, so a packet is written close to when it is due."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK


def serve(relay: Relay, fd_a: int, fd_b: int, control_in: int, control_out: int) -> bool:
    """Run until quit (returns True) or end of file on ``control_in`` (returns False)."""
    for fd in (fd_a, fd_b, control_in):
        os.set_blocking(fd, False)
    source = {fd_a: "a>b", fd_b: "b>a"}
    target = {"a>b": fd_b, "b>a": fd_a}
    readers = [fd_a, fd_b, control_in]
    pending = b""
    clock = time.monotonic
    receive = relay.receive
    write = os.write
    read = os.read
    while True:
        deadline = relay.next_deadline()
        timeout = None if deadline is None else max(0.0, deadline - clock())
        ready, _, _ = select.select(readers, [], [], timeout)
        for fd in ready:
            if fd == control_in:
                chunk = read(fd, 65536)
                if not chunk:
                    return False
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    reply, stop = relay.control(json.loads(line))
                    write(control_out, json.dumps(reply).encode() + b"\n")
                    if stop:
                        return True
                continue
            direction = source[fd]
            now = clock()
            for _ in range(BATCH):
                try:
                    packet = read(fd, READ_SIZE)
                except BlockingIOError:
                    break
                if not packet:
                    break
                receive(packet, direction, now=now)
        for direction, packet in relay.due(now=clock()):
            try:
                write(target[direction], packet)
            except OSError:
                relay.write_errors += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rudp-lab-relay", description=__doc__.splitlines()[0])
    parser.add_argument("--fds", nargs=2, type=int, required=True, metavar=("A", "B"), help="side a's and b's fds")
    parser.add_argument("--link", default="{}", help="the initial LinkSpec as JSON")
    parser.add_argument("--cleanup", nargs="*", default=[], metavar="NS", help="namespaces to delete if orphaned")
    args = parser.parse_args(argv)
    # The parent handles Ctrl-C and SIGTERM and then says quit; a signal meant for it must not kill the link first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _precise_timers()
    relay = Relay(LinkSpec.from_json(json.loads(args.link)))
    control_in, control_out = sys.stdin.fileno(), sys.stdout.fileno()
    os.write(control_out, json.dumps({"ok": True, "event": "ready", "pid": os.getpid()}).encode() + b"\n")
    if serve(relay, args.fds[0], args.fds[1], control_in, control_out):
        return 0
    for ns in args.cleanup:  # orphaned: the parent can no longer delete its namespaces, so do it here
        if not ns.startswith(PREFIX):
            continue  # only ever a lab's own namespaces
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, stdin=subprocess.DEVNULL, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
