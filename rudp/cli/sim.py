"""rudp-sim: one transfer in virtual time over a seeded lossy path, with rudp's real protocol sessions."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from rudp.cli.common import Parser, entry_point, parse_size
from rudp.core.config import TransferConfig
from rudp.errors import LocalFileError, UsageError
from rudp.impair.spec import add_impairment_arguments, describe, impairment_from_args
from rudp.sim.engine import SimConfig, SimResult, simulate

__all__ = ["main", "report"]


def run(argv: Sequence[str] | None) -> int:
    parser = Parser(prog="rudp-sim", description=__doc__)
    parser.add_argument("--size", type=parse_size, default=parse_size("1M"), help="file size (default 1M)")
    parser.add_argument("--direction", choices=("upload", "download"), default="upload")
    parser.add_argument("--blksize", type=int, default=1468, help="block size the client asks for (default 1468)")
    parser.add_argument("--windowsize", type=int, default=8, help="window the client asks for (default 8)")
    parser.add_argument("--timeout", type=float, default=1.0, help="retransmission timeout, seconds (default 1)")
    parser.add_argument("--retries", type=int, default=20, help="retries before giving up (default 20)")
    parser.add_argument("--trace", metavar="FILE", help="write every datagram event as JSON lines")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_impairment_arguments(parser)
    args = parser.parse_args(argv)
    config = config_from_args(args)
    started = time.perf_counter()
    if args.trace:
        try:
            with open(args.trace, "w") as trace:
                result = simulate(config, trace=trace)
        except OSError as exc:
            raise LocalFileError(f"cannot write {args.trace}: {exc.strerror}") from None
    else:
        result = simulate(config)
    wall = time.perf_counter() - started
    if args.json:
        print(json.dumps({**result.as_dict(), "wall_seconds": round(wall, 3)}, sort_keys=True))
    else:
        print(report(config, result, wall))
    return 0 if result.ok else 1


def config_from_args(args) -> SimConfig:
    impairment = impairment_from_args(args)
    try:
        client = TransferConfig(
            blksize=args.blksize, windowsize=args.windowsize, timeout=args.timeout, retries=args.retries
        )
        server = TransferConfig(blksize=65464, windowsize=65535, timeout=args.timeout, retries=args.retries)
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
        f"network c>s: {_counters(result.up)}",
        f"network s>c: {_counters(result.down)}",
    ]
    if wall is not None and wall > 0:
        lines.append(f"ran {result.sim_time / wall:.0f}x faster than real time ({wall:.2f} s of wall time)")
    return "\n".join(lines)


def _counters(c: dict[str, int]) -> str:
    lost = c.get("lost_random", 0) + c.get("lost_burst", 0) + c.get("lost_queue", 0)
    return (
        f"offered {c.get('offered', 0)}, lost {lost}, duplicated {c.get('duplicated', 0)}, "
        f"reordered {c.get('reordered', 0)}, corrupted {c.get('corrupted', 0)}"
    )


main = entry_point(run)
