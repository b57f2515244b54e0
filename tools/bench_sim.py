"""How fast does the simulator run?  The reference scenario of issue 3, timed in wall-clock seconds.

The reference: a 10 MiB upload over a 10 Mbit/s bottleneck (queue 64), 25 ms one-way delay (50 ms RTT) and 2 %
random loss in both directions, with rudp-sim's default blksize, windowsize, timeout and retries.  The script
runs it ``--repeats`` times (same seed: the same run each time), takes the median wall time and prints the
simulated seconds, the wall seconds and their ratio.  The acceptance target is 50x faster than real time;
``--check`` makes missing it exit 1.

    python tools/bench_sim.py                     # the reference scenario, median of 3
    python tools/bench_sim.py --size 200K --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

try:
    import rudp  # noqa: F401 - installed (pip install -e .) or not
except ImportError:  # run from a checkout without installing: use the package beside this script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rudp.cli.common import parse_size
from rudp.cli.sim import build_parser, config_from_args
from rudp.impair.spec import describe, parse_duration, parse_percent, parse_rate
from rudp.sim.engine import simulate

TARGET = 50.0  # times faster than real time


def _spec(parse):  # argparse type: a one-line message for a bad value
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench_sim.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=parse_size, default=parse_size("10M"), help="file size (default 10M)")
    parser.add_argument("--loss", type=_spec(parse_percent), default=0.02, help="loss each way (default 2%%)")
    parser.add_argument("--delay", type=_spec(parse_duration), default=0.025, help="one-way delay (default 25ms)")
    parser.add_argument("--rate", type=_spec(parse_rate), default=10e6, help="bottleneck (default 10mbit)")
    parser.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs; the median wall time counts (default 3)")
    parser.add_argument("--check", action="store_true", help=f"exit 1 below {TARGET:g}x faster than real time")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    sim_args = build_parser().parse_args(["--size", str(args.size), "--seed", str(args.seed), "--queue", "64"])
    sim_args.loss, sim_args.delay, sim_args.rate = args.loss, args.delay, args.rate
    config = config_from_args(sim_args)
    print(
        f"scenario: {config.direction} of {config.size} bytes, blksize {config.client.blksize}, "
        f"windowsize {config.client.windowsize}, seed {config.seed}"
    )
    print(f"path: {describe(config.up)} (both directions)")
    walls = []
    result = None
    for _ in range(args.repeats):
        started = time.perf_counter()
        result = simulate(config)
        walls.append(time.perf_counter() - started)
    assert result is not None
    wall = statistics.median(walls)
    ratio = result.sim_time / wall if wall > 0 else float("inf")
    print(
        f"result: {'INTACT' if result.ok else 'FAILED'} ({result.outcome}), "
        f"goodput {result.goodput_bps / 1e6:.3f} Mbit/s, {result.steps} steps"
    )
    print(f"simulated: {result.sim_time:.3f} s (the file arrived at {result.transfer_time:.3f} s; then the dally)")
    print(f"wall: {wall:.3f} s (median of {args.repeats}: {' '.join(f'{w:.3f}' for w in walls)})")
    verdict = "met" if ratio >= TARGET else "MISSED"
    print(f"{ratio:.0f}x faster than real time (target >= {TARGET:g}x: {verdict})")
    return 1 if args.check and ratio < TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
