"""rudp-sim: one transfer in virtual time over a seeded lossy path, with rudp's real protocol sessions.

One run prints a report (result, time, goodput, datagrams, RTT samples, what the network did); --ladder draws
the run as a time-sequence diagram first, --trace FILE writes every datagram event as JSON lines.
--sweep PARAM=V1,V2,... runs the same transfer once per value (and per seed, with --seeds N) and prints a
table of medians; --csv, --json-out and --plot save it.  Sweepable: loss, burst, dup, reorder, delay, jitter,
corrupt, rate, queue (both directions), size, blksize, windowsize, timeout, seed; a unit on the last value
applies to all values without one (loss=0,1,2,5%; delay=10,20,50ms).  A sweep exits 0 even when some runs
failed: the table says which.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from typing import Any

from rudp.cli.common import Parser, entry_point, parse_size
from rudp.core.config import TransferConfig
from rudp.errors import LocalFileError, UsageError
from rudp.impair.spec import add_impairment_arguments, describe, impairment_from_args
from rudp.sim.engine import SimConfig, SimResult, simulate
from rudp.sim.ladder import LIMIT, ladder
from rudp.sim.sweep import as_json, format_table, parse_sweep, run_sweep, sweep_configs, write_csv

__all__ = ["main", "run", "report", "build_parser", "config_from_args", "rtt_line"]

_SWEEP_ONLY = ("seeds", "csv", "json_out", "plot")


def build_parser() -> Parser:
    parser = Parser(prog="rudp-sim", description=__doc__)
    parser.add_argument("--size", type=parse_size, default=parse_size("1M"), help="file size (default 1M)")
    parser.add_argument("--direction", choices=("upload", "download"), default="upload")
    parser.add_argument("--blksize", type=int, default=1468, help="block size the client asks for (default 1468)")
    parser.add_argument("--windowsize", type=int, default=8, help="window the client asks for (default 8)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=1.0,
        help="longest wait before a retransmission, seconds; the RTO adapts below it (default 1)",
    )
    parser.add_argument(
        "--fixed-timeout", action="store_true", help="always wait --timeout (classic TFTP) instead of the RTO"
    )
    parser.add_argument(
        "--congestion",
        choices=("delay", "none"),
        default="delay",
        help="the sender's congestion control: delay (default; loss counts as congestion only with a queue) "
        "or none (the whole window in flight)",
    )
    parser.add_argument(
        "--go-back-n", action="store_true", help="no selective repeat: both ends as standard RFC 7440 peers"
    )
    parser.add_argument("--retries", type=int, default=20, help="retries before giving up (default 20)")
    parser.add_argument("--json", action="store_true", help="print the result (or the sweep) as JSON")
    one = parser.add_argument_group("one run")
    one.add_argument("--trace", metavar="FILE", help="write every datagram event as JSON lines")
    one.add_argument(
        "--ladder",
        action="store_true",
        help=f"draw the run as a sender | network | receiver diagram before the report (first {LIMIT} events)",
    )
    sweep = parser.add_argument_group("sweep")
    sweep.add_argument(
        "--sweep",
        metavar="PARAM=V1,V2,...",
        help="run once per value of one parameter, e.g. loss=0,1,2,5,10,20%% or delay=10,20,50ms",
    )
    sweep.add_argument("--seeds", type=int, metavar="N", help="runs per value, seeds S, S+1, ... (default 1)")
    sweep.add_argument("--csv", metavar="FILE", help="also write the sweep table as CSV")
    sweep.add_argument("--json-out", metavar="FILE", help="also write the sweep as JSON")
    sweep.add_argument(
        "--plot", metavar="FILE.png", help="also draw goodput and intact runs against the value (needs matplotlib)"
    )
    add_impairment_arguments(parser)
    return parser


def run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    if args.sweep is not None:
        return _sweep(args, config)
    given = [name for name in _SWEEP_ONLY if getattr(args, name) is not None]
    if given:
        raise UsageError(f"--{given[0].replace('_', '-')} goes with --sweep")
    if args.ladder and args.json:
        raise UsageError("--ladder draws text: leave out --json (or use --trace FILE for machine-readable events)")
    started = time.perf_counter()
    drawn: list[dict[str, Any]] = []
    events = 0

    def keep(record: dict[str, Any]) -> None:
        nonlocal events
        events += 1
        if len(drawn) < LIMIT:
            drawn.append(record)

    if args.trace:
        try:
            with open(args.trace, "w") as stream:

                def write(record: dict[str, Any]) -> None:
                    stream.write(json.dumps(record, sort_keys=True) + "\n")
                    if args.ladder:
                        keep(record)

                result = simulate(config, trace=write)
        except OSError as exc:
            raise LocalFileError(f"cannot write {args.trace}: {exc.strerror}") from None
    else:
        result = simulate(config, trace=keep if args.ladder else None)
    wall = time.perf_counter() - started
    if args.json:
        print(json.dumps({**result.as_dict(), "wall_seconds": round(wall, 3)}, sort_keys=True))
        return 0 if result.ok else 1
    if args.ladder:
        print(ladder(drawn, config, total=events))
        print()
    print(report(config, result, wall))
    return 0 if result.ok else 1


def config_from_args(args: argparse.Namespace) -> SimConfig:
    impairment = impairment_from_args(args)
    try:
        timers = {
            "timeout": args.timeout,
            "retries": args.retries,
            "fixed_timeout": args.fixed_timeout,
            "congestion": args.congestion,
            "selective": not args.go_back_n,
        }
        client = TransferConfig(blksize=args.blksize, windowsize=args.windowsize, **timers)
        server = TransferConfig(blksize=65464, windowsize=65535, **timers)
        return SimConfig(
            size=args.size,
            direction=args.direction,
            client=client,
            server=server,
            up=impairment,
            down=impairment,
            seed=args.seed,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def report(config: SimConfig, result: SimResult, wall: float | None = None) -> str:
    sender, receiver = (
        (result.client, result.server) if config.direction == "upload" else (result.server, result.client)
    )
    lines = [
        f"path: {describe(config.up)} (both directions), seed {config.seed}",
        f"{config.direction} of {config.size} bytes, "
        f"blksize {config.client.blksize}, windowsize {config.client.windowsize}",
        f"result: {'INTACT' if result.ok else 'FAILED'} ({result.outcome}); "
        f"{result.received} of {result.size} bytes",
        f"time: {result.transfer_time:.3f} s simulated, goodput {result.goodput_bps / 1e6:.3f} Mbit/s",
        f"datagrams: sent {sender.get('datagrams_sent', 0)} + {receiver.get('datagrams_sent', 0)} ACK side, "
        f"retransmitted {sender.get('retransmissions', 0)}, timeouts {sender.get('timeouts', 0)}",
        rtt_line(config, result),
        f"network c>s: {_counters(result.up)}",
        f"network s>c: {_counters(result.down)}",
    ]
    if wall is not None and wall > 0:
        lines.append(f"ran {result.sim_time / wall:.0f}x faster than real time ({wall:.2f} s of wall time)")
    return "\n".join(lines)


def rtt_line(config: SimConfig, result: SimResult) -> str:
    """``rtt: 715 samples, min 20.0 ms, median 20.0 ms, max 20.0 ms; rto 1.000 s (fixed), timeouts 0 + 0 ACK side``

    The samples are the simulator's own Karn's-rule measurement at the sending side (mean in ``--json``)."""
    rtt, rto = result.rtt, result.rto
    if rtt.get("samples"):
        measured = (
            f"rtt: {rtt['samples']} samples, min {rtt['min'] * 1e3:.1f} ms, median {rtt['median'] * 1e3:.1f} ms, "
            f"max {rtt['max'] * 1e3:.1f} ms"
        )
    else:
        measured = "rtt: no samples (no DATA block was sent once and acknowledged)"
    sender, receiver = ("client", "server") if config.direction == "upload" else ("server", "client")
    timeouts = rto.get("timeouts", {})
    return (
        f"{measured}; rto {rto.get('seconds', 0.0):.3f} s ({rto.get('kind', 'fixed')}), "
        f"timeouts {timeouts.get(sender, 0)} + {timeouts.get(receiver, 0)} ACK side"
    )


def _counters(c: dict[str, int]) -> str:
    lost = c.get("lost_random", 0) + c.get("lost_burst", 0) + c.get("lost_queue", 0)
    return (
        f"offered {c.get('offered', 0)}, lost {lost}, duplicated {c.get('duplicated', 0)}, "
        f"reordered {c.get('reordered', 0)}, corrupted {c.get('corrupted', 0)}"
    )


# --------------------------------------------------------------------------------------------------- sweeps
def _sweep(args: argparse.Namespace, base: SimConfig) -> int:
    for name in ("trace", "ladder"):
        if getattr(args, name):
            raise UsageError(f"--{name} describes one run: leave it out of a --sweep")
    seeds = 1 if args.seeds is None else args.seeds
    if not 1 <= seeds <= 1000:
        raise UsageError(f"--seeds must be between 1 and 1000, not {seeds}")
    try:
        sweep = parse_sweep(args.sweep)
        sweep_configs(base, sweep)  # refuse a bad value before running any
    except ValueError as exc:
        raise UsageError(f"--sweep {exc}") from None
    if args.plot is not None:
        from rudp.sim.plot import need_matplotlib

        try:
            need_matplotlib()
        except ImportError as exc:
            raise UsageError(str(exc)) from None
    outputs = [path for path in (args.csv, args.json_out, args.plot) if path is not None]
    for path in outputs:  # fail before a long sweep, not after it
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            raise LocalFileError(f"cannot write {path}: no such directory {folder}")
    started = time.perf_counter()
    rows = run_sweep(base, sweep, seeds=seeds)
    wall = time.perf_counter() - started
    record = as_json(base, sweep, rows, seeds)
    _write(args.csv, lambda stream: write_csv(rows, stream))
    _write(args.json_out, lambda stream: stream.write(json.dumps(record, indent=2, sort_keys=True) + "\n"))
    if args.plot is not None:
        from rudp.sim.plot import plot_sweep

        try:
            plot_sweep(rows, args.plot, title=_sweep_title(base, sweep.name))
        except OSError as exc:
            raise LocalFileError(f"cannot write {args.plot}: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps(record, sort_keys=True))
        return 0
    first, last = base.seed, base.seed + seeds - 1
    seed_text = f"seed {first}" if seeds == 1 else f"{seeds} seeds per value ({first}..{last})"
    if sweep.name == "seed":
        seed_text = f"{seeds} seed(s) per value, from the value"
    print(_sweep_title(base, sweep.name))
    print(f"path: {describe(base.up)} (both directions), {sweep.name} swept; {seed_text}; medians per value")
    print(format_table(rows))
    runs = len(rows) * seeds
    print(f"ran {runs} simulation{'s' if runs != 1 else ''} in {wall:.2f} s of wall time")
    return 0


def _sweep_title(base: SimConfig, name: str) -> str:
    return (
        f"sweep of {name}: {base.direction} of {base.size} bytes, blksize {base.client.blksize}, "
        f"windowsize {base.client.windowsize}, timeout {base.client.timeout:g} s"
    )


def _write(path: str | None, write: Any) -> None:
    if path is None:
        return
    try:
        with open(path, "w", newline="") as stream:
            write(stream)
    except OSError as exc:
        raise LocalFileError(f"cannot write {path}: {exc.strerror}") from None


main = entry_point(run)
