"""rudp-recv: a TFTP server that receives uploads into a directory and, with --serve, serves downloads."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from rudp.cli.common import Parser, add_transfer_options, entry_point, parse_size
from rudp.cli.lines import LineWriter
from rudp.core.config import TransferConfig
from rudp.errors import ExitCode, LocalFileError, UsageError
from rudp.net.server import Server, ServerConfig
from rudp.result import TransferResult

__all__ = ["main"]


def run(argv: Sequence[str] | None) -> int:
    parser = Parser(
        prog="rudp-recv", description="Receive files over TFTP into a directory (and serve them with --serve)."
    )
    parser.add_argument(
        "--port", type=int, default=69, help="UDP port to listen on (default 69; 0 picks a free one)"
    )
    parser.add_argument("--bind", metavar="ADDR", help="listen on this address only (default: all IPv4 and IPv6)")
    parser.add_argument("--dir", default=".", help="directory to receive into and serve from (default: .)")
    parser.add_argument("--once", action="store_true", help="exit after one transfer, with its exit code")
    parser.add_argument("--overwrite", action="store_true", help="let uploads replace existing files")
    parser.add_argument(
        "--mkdirs", action="store_true", help="let uploads create missing directories inside --dir (mode 0755)"
    )
    parser.add_argument("--serve", action="store_true", help="also answer downloads (read requests) from --dir")
    parser.add_argument(
        "--max-size", type=parse_size, metavar="BYTES", help="refuse uploads larger than this (e.g. 100M)"
    )
    limits = parser.add_argument_group("limits (README: Security)")
    limits.add_argument(
        "--max-transfers",
        type=_limit,
        default=64,
        metavar="N",
        help="unfinished transfers at once, in total (default 64; 0: no limit)",
    )
    limits.add_argument(
        "--max-per-client",
        type=_limit,
        default=8,
        metavar="N",
        help="unfinished transfers at once from one address (default 8; 0: no limit)",
    )
    limits.add_argument(
        "--rate-limit",
        type=_rate,
        default=20.0,
        metavar="N/s",
        help="requests per second from one address; more are dropped unanswered (default 20/s; 0: no limit)",
    )
    limits.add_argument(
        "--rate-burst",
        type=_positive_int,
        default=40,
        metavar="N",
        help="requests one address may send at once before --rate-limit applies (default 40)",
    )
    limits.add_argument(
        "--idle-timeout",
        type=_rate,
        default=120.0,
        metavar="S",
        help="end a transfer whose peer sent nothing for S seconds (default 120; 0: only the retry budget)",
    )
    add_transfer_options(parser, server=True)
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"port must be between 0 and 65535, not {args.port}")
    if not os.path.isdir(args.dir):
        raise LocalFileError(f"--dir {args.dir}: not a directory")
    transfer = TransferConfig(
        blksize=args.blksize,
        windowsize=args.windowsize,
        timeout=args.timeout,
        fixed_timeout=args.fixed_timeout,
        retries=args.retries,
        max_size=args.max_size,
    )
    config = ServerConfig(
        directory=args.dir,
        host=args.bind,
        port=args.port,
        serve=args.serve,
        overwrite=args.overwrite,
        mkdirs=args.mkdirs,
        transfer=transfer,
        max_transfers=args.max_transfers,
        max_per_client=args.max_per_client,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        idle_timeout=args.idle_timeout,
    )

    # Output never blocks the server: a reader that stops reading costs lines, not the transfers (rudp.cli.lines).
    out = LineWriter(sys.stdout, as_json=True) if args.json else None
    err = LineWriter(sys.stderr, as_json=False) if not args.quiet else None

    def report(result: TransferResult) -> None:
        if out is not None:
            out.write(json.dumps({"event": "transfer", **result.as_dict()}, sort_keys=True))
        if err is not None:
            err.write(result.summary())

    try:
        with Server(config, on_result=report) as server:
            if out is not None:
                out.write(json.dumps({"event": "listening", "host": server.address[0], "port": server.port}))
            if err is not None:
                err.write(f"rudp-recv: {server.describe()}")
            result = server.serve_forever(once=args.once)
    finally:
        for writer in (out, err):
            if writer is not None:
                writer.close()
    return result.exit_code if result is not None else ExitCode.OK


def _limit(text: str) -> int | None:
    """A count limit: a positive integer, or 0 for none."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value or None


def _positive_int(text: str) -> int:
    value = _limit(text)
    if value is None:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _rate(text: str) -> float | None:
    """A rate ("20", "20/s") or a duration in seconds: a positive number, or 0 for none."""
    number = text[:-2] if text.endswith("/s") else text
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 20 or 20/s, not {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text!r}")
    return value or None


main = entry_point(run)
