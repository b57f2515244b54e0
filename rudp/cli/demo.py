"""rudp-demo: why datagrams need a reliability layer, shown with real sockets on this machine.

The same seeded file crosses the same seeded lossy path twice, through the loss shim (``rudp-shim``'s relay) on
loopback: first the naive way (every chunk sent once, no ACKs), then with rudp to a rudp server.  Each run gets
its own relay with identically seeded impairment, so both meet the same kind of network.  The verdict compares
what arrived (bytes missing, duplicated, out of order; SHA-256) and what reliability cost (datagrams, time).
Both send the file in datagrams of 1468 bytes (what one Ethernet frame carries), as over a real network
path; loopback's own MTU would let rudp use 64 KiB blocks and make the comparison meaningless.
Exit status 0 when rudp delivered an identical copy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rudp.api import DEFAULT_BLKSIZE, client_config, send_file
from rudp.cli.common import Parser, Reporter, entry_point, parse_size
from rudp.core.config import DEFAULT_TIMEOUT, TransferConfig
from rudp.errors import UsageError
from rudp.impair.model import Channel, Impairment
from rudp.impair.spec import add_impairment_arguments, describe, impairment_from_args, parse_duration
from rudp.naive import NaiveReport, analyse
from rudp.net.naive import receive_naive, send_naive
from rudp.net.server import Server, ServerConfig
from rudp.net.sockets import Address, udp_socket
from rudp.result import TransferResult
from rudp.shim.relay import DOWN, UP, Relay, RelayConfig, Shim

__all__ = ["main", "DEFAULT_PATH"]

LOOPBACK = "127.0.0.1"
# The default lossy path, each direction: what a poor Wi-Fi or mobile link does to datagrams.  No jitter: the
# model's per-datagram jitter reorders nearly every back-to-back datagram, more than real FIFO queues do.
DEFAULT_PATH = Impairment(loss=0.05, dup=0.01, reorder=0.02, delay=0.005)
NAIVE_RATE = 50e6  # bits/s the naive sender paces itself at, so its own socket buffers lose nothing
NAIVE_IDLE = 0.5  # seconds of silence after which the naive receiver decides the file is over


@dataclass
class NaiveRun:
    report: NaiveReport
    seconds: float  # from the first datagram sent to the last one received
    path: dict[str, dict[str, int]]


@dataclass
class RudpRun:
    intact: bool
    received: int
    sha256: str
    seconds: float
    datagrams: int  # sent by the rudp client (request and DATA, retransmissions included)
    retransmissions: int
    timeouts: int
    duplicates_discarded: int  # duplicate DATA the receiver saw and dropped
    reordered_repaired: int  # DATA that arrived beyond a gap (held until the gap was filled)
    path: dict[str, dict[str, int]]
    error: str | None = None


def run(argv: Sequence[str] | None) -> int:
    parser = Parser(prog="rudp-demo", description=__doc__)
    parser.add_argument("--size", type=parse_size, default=parse_size("2M"), help="file size (default 2M)")
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="T",
        help="rudp's longest retransmission wait; below it the wait adapts to the measured round trip "
        f"(default {DEFAULT_TIMEOUT:g}s, as rudp-send)",
    )
    parser.add_argument("--json", action="store_true", help="print both runs' numbers as one JSON line")
    add_impairment_arguments(parser)
    parser.set_defaults(**{name: getattr(DEFAULT_PATH, name) for name in ("loss", "dup", "reorder", "delay")})
    args = parser.parse_args(argv)
    try:
        path = impairment_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    data = random.Random(f"rudp-demo:{args.seed}").randbytes(args.size)
    say = _stderr if args.json else print
    say(f"rudp-demo: {args.size} bytes of seeded data through the loss shim on {LOOPBACK}")
    say(f"  path, each direction: {describe(path)}; seed {args.seed}")
    naive = _naive(data, path, args.seed)
    say(f"  naive UDP: {naive.report.summary()}")
    rudp = _rudp(data, path, args.seed, args.timeout)
    say(f"  rudp:      {'intact' if rudp.intact else 'FAILED: ' + (rudp.error or 'the copy differs')}")
    if args.json:
        print(
            json.dumps(
                {
                    "path": describe(path),
                    "seed": args.seed,
                    "size": args.size,
                    "naive": {**naive.__dict__, "report": naive.report.as_dict()},
                    "rudp": rudp.__dict__,
                },
                sort_keys=True,
            )
        )
    else:
        print()
        print(verdict(naive, rudp, len(data)))
    return 0 if rudp.intact else 1


def _seconds(text: str) -> float:
    try:
        value = parse_duration(text if text[-1:].isalpha() else text + "s")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


# ---------------------------------------------------------------------- the two runs
@contextmanager
def _shim(to: Address, path: Impairment, seed: int) -> Iterator[Shim]:
    """A relay on loopback in a thread, with the path seeded afresh: each run meets the same network."""
    relay = Relay(
        RelayConfig(server=to, idle_timeout=30.0),
        up=Channel(path, random.Random(f"{seed}:{UP}")),
        down=Channel(path, random.Random(f"{seed}:{DOWN}")),
    )
    shim = Shim(relay, listen=(LOOPBACK, 0), listen_family=socket.AF_INET, server_family=socket.AF_INET)
    thread = threading.Thread(target=shim.run, name="rudp-demo-shim", daemon=True)
    thread.start()
    try:
        yield shim
    finally:
        shim.stop()
        thread.join(timeout=10)
        shim.close()


def _naive(data: bytes, path: Impairment, seed: int) -> NaiveRun:
    with udp_socket(socket.AF_INET, (LOOPBACK, 0), report_errors=False) as receiver:
        with _shim(receiver.getsockname(), path, seed) as shim, udp_socket(socket.AF_INET) as sender:
            bar = Reporter(quiet=False, as_json=False, label="naive UDP")
            started = time.monotonic()
            thread = threading.Thread(
                target=send_naive,
                args=(sender, data, shim.address),
                kwargs={"chunk": DEFAULT_BLKSIZE, "rate": NAIVE_RATE, "on_progress": _counting(bar, len(data))},
                daemon=True,
            )
            thread.start()
            arrivals = receive_naive(receiver, first=5.0, idle=NAIVE_IDLE, max_bytes=2 * len(data) + 65536)
            last = time.monotonic() - NAIVE_IDLE
            thread.join(timeout=10)
            bar.close_bar()
            counters = shim.relay.counters()
    return NaiveRun(analyse(data, arrivals, DEFAULT_BLKSIZE), max(0.0, last - started), counters)


def _rudp(data: bytes, path: Impairment, seed: int, timeout: float) -> RudpRun:
    with tempfile.TemporaryDirectory(prefix="rudp-demo-") as tmp:
        work = Path(tmp)
        served = work / "server"
        served.mkdir()
        source = work / "demo.bin"
        source.write_bytes(data)
        server_transfer = TransferConfig(blksize=65464, windowsize=64, timeout=timeout, retries=20)
        server_config = ServerConfig(directory=str(served), host=LOOPBACK, port=0, transfer=server_transfer)
        finished: list[TransferResult] = []
        with (
            Server(server_config, on_result=finished.append) as server,
            _serving(server),
            _shim((LOOPBACK, server.port), path, seed) as shim,
        ):
            bar = Reporter(quiet=False, as_json=False, label="rudp     ")
            error = None
            result: TransferResult | None = None
            try:
                result = send_file(
                    source,
                    LOOPBACK,
                    port=shim.port,
                    config=client_config(blksize=DEFAULT_BLKSIZE, timeout=timeout, retries=20),
                    on_progress=bar.progress,
                )
            except Exception as exc:  # a failed transfer is part of the verdict, not a crash
                result = getattr(exc, "result", None)
                error = str(exc)
            finally:
                bar.close_bar()
            counters = shim.relay.counters()
            deadline = time.monotonic() + 5.0
            while not finished and time.monotonic() < deadline:  # the server's side ends a moment later
                time.sleep(0.01)
        copy = served / "demo.bin"
        received = copy.read_bytes() if copy.exists() else b""
    stats: dict[str, Any] = result.stats if result is not None else {}
    server_stats = finished[-1].stats if finished else {}
    return RudpRun(
        intact=received == data and error is None,
        received=len(received),
        sha256=hashlib.sha256(received).hexdigest(),
        seconds=result.seconds if result is not None else 0.0,
        datagrams=stats.get("datagrams_sent", 0),
        retransmissions=stats.get("retransmissions", 0),
        timeouts=stats.get("timeouts", 0),
        duplicates_discarded=server_stats.get("duplicates", 0),
        reordered_repaired=server_stats.get("out_of_order", 0),
        path=counters,
        error=error,
    )


@contextmanager
def _serving(server: Server) -> Iterator[None]:
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            server.step(timeout=0.02)

    thread = threading.Thread(target=loop, name="rudp-demo-server", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def _counting(bar: Reporter, total: int) -> Callable[[int], None]:
    return lambda n: bar.progress(n, total)


# ---------------------------------------------------------------------- the verdict
def verdict(naive: NaiveRun, rudp: RudpRun, size: int) -> str:
    n = naive.report
    rows = [
        ("", "naive UDP", "rudp"),
        ("file", "DAMAGED" if not n.intact else "intact", "INTACT" if rudp.intact else "FAILED"),
        ("bytes received", f"{n.received_bytes:,} of {size:,}", f"{rudp.received:,} of {size:,}"),
        (
            "chunks missing",
            f"{n.missing} ({n.missing_bytes:,} bytes)",
            "0 (lost ones were sent again)" if rudp.intact else "-",
        ),
        ("chunks duplicated", f"{n.duplicated}", f"0 ({rudp.duplicates_discarded} duplicate DATA dropped)"),
        ("out of order", f"{n.out_of_order}", f"0 ({rudp.reordered_repaired} arrived early, put in order)"),
        ("corrupted", f"{n.corrupted}", "0"),
        (
            "sha256 matches",
            "yes" if n.sha256_received == n.sha256_original else "NO",
            "yes" if rudp.intact else "NO",
        ),
        ("datagrams sent", f"{n.sent:,}", f"{rudp.datagrams:,} ({_extra(rudp.datagrams, n.sent)})"),
        ("retransmissions", "none (it cannot)", f"{rudp.retransmissions:,} ({rudp.timeouts} timeouts)"),
        ("time", f"{naive.seconds:.2f} s (+{NAIVE_IDLE:g} s waiting for more)", f"{rudp.seconds:.2f} s"),
        ("path: lost", _path(naive.path, "lost"), _path(rudp.path, "lost")),
        ("path: duplicated", _path(naive.path, "duplicated"), _path(rudp.path, "duplicated")),
        ("path: reordered", _path(naive.path, "reordered"), _path(rudp.path, "reordered")),
    ]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in width))
    if rudp.intact and not n.intact:
        lines.append("")
        lines.append(
            f"Naive UDP lost or mangled data on this path; rudp delivered an identical file for "
            f"{_extra(rudp.datagrams, n.sent)} datagrams and {rudp.seconds - naive.seconds:+.2f} s."
        )
    elif rudp.intact:
        lines.append("")
        lines.append("The path did no damage this time: try a higher --loss or another --seed.")
    return "\n".join(lines)


def _extra(ours: int, theirs: int) -> str:
    return f"{(ours - theirs) / theirs * 100:+.1f} %" if theirs else "n/a"


def _path(counters: dict[str, dict[str, int]], name: str) -> str:
    up, down = counters[UP].get(name, 0), counters[DOWN].get(name, 0)
    return f"{up} up, {down} down"


main = entry_point(run)
