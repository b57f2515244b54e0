"""What the three commands share: options, the error boundary, progress bars and reporting.

Every failure a user can cause or meet becomes one line on stderr and a documented exit code
(``rudp.errors.ExitCode``); a traceback only appears for a bug, and only with RUDP_DEBUG=1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from rudp.api import DEFAULT_BLKSIZE, MAX_FITTED_WINDOW, client_config
from rudp.core.config import DEFAULT_RETRIES, DEFAULT_TIMEOUT, MAX_WINDOWSIZE, TransferConfig
from rudp.core.digests import DIGESTS
from rudp.errors import ExitCode, RudpError
from rudp.net.driver import freeze_imports
from rudp.result import TransferResult
from rudp.wire.packets import MAX_BLKSIZE, MIN_BLKSIZE

__all__ = [
    "Parser",
    "add_transfer_options",
    "add_client_options",
    "client_config_from",
    "run_reported",
    "entry_point",
    "Reporter",
    "parse_size",
    "EXIT_CODES_HELP",
]

EXIT_CODES_HELP = """exit codes:
  0  success                     5  timed out (retry budget exhausted)
  2  bad usage                   6  nothing listening (ICMP port unreachable)
  3  local file error            7  the peer broke the protocol
  4  the peer sent a TFTP ERROR  8  network error (unknown host, cannot bind)
  1  internal error (a bug)    130  interrupted (Ctrl-C)"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus a hint), exit code 2."""

    def __init__(self, **kw: Any) -> None:
        kw.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        kw.setdefault("epilog", EXIT_CODES_HELP)
        super().__init__(**kw)

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(ExitCode.USAGE)


def _ranged(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be between {low} and {high}, not {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"timeout must be a number of seconds, not {text!r}") from None
    if not 0.01 <= value <= 255:
        raise argparse.ArgumentTypeError(f"timeout must be between 0.01 and 255 seconds, not {text}")
    return value


_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from "1000", "64K", "10MiB", "2G" (binary multiples)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"size must look like 1000, 64K, 10M or 2G, not {text!r}")
    number, unit = int(match.group(1)), match.group(2).lower()
    return number * 1024 ** "_kmgt".index(unit) if unit else number


def add_transfer_options(parser: argparse.ArgumentParser, *, server: bool = False) -> None:
    if server:
        blk_help = f"largest block size granted, {MIN_BLKSIZE}..{MAX_BLKSIZE} (RFC 2348; default {MAX_BLKSIZE})"
        win_help = (
            f"largest window granted, 1..{MAX_WINDOWSIZE} (RFC 7440; default {MAX_FITTED_WINDOW}; an upload's "
            "window is also kept within what the socket's receive buffer holds)"
        )
    else:
        blk_help = (
            f"block size in bytes, {MIN_BLKSIZE}..{MAX_BLKSIZE} (RFC 2348; default: the largest one packet to the "
            f"server carries, by its route's MTU: {MAX_BLKSIZE} on loopback, {DEFAULT_BLKSIZE} on Ethernet)"
        )
        win_help = (
            f"blocks per window, 1..{MAX_WINDOWSIZE} (RFC 7440; default: what the receive buffer holds, "
            f"at most {MAX_FITTED_WINDOW})"
        )
    parser.add_argument(
        "--blksize",
        type=_ranged(MIN_BLKSIZE, MAX_BLKSIZE, "blksize"),
        default=MAX_BLKSIZE if server else None,
        help=blk_help,
    )
    parser.add_argument(
        "--windowsize",
        type=_ranged(1, MAX_WINDOWSIZE, "windowsize"),
        default=MAX_FITTED_WINDOW if server else None,
        help=win_help,
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"longest wait before a retransmission, seconds (default {DEFAULT_TIMEOUT:g}); below it the wait "
        "adapts to the measured round-trip time (RFC 6298)",
    )
    parser.add_argument(
        "--fixed-timeout",
        action="store_true",
        help="always wait the whole --timeout before a retransmission, like classic TFTP",
    )
    parser.add_argument(
        "--retries",
        type=_ranged(0, 1000, "retries"),
        default=DEFAULT_RETRIES,
        help=f"retransmissions before giving up (default {DEFAULT_RETRIES})",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable results on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=_ranged(1, 65535, "port"), default=69, help="server port (default 69)")
    parser.add_argument(
        "--mode",
        choices=("octet", "netascii"),
        default="octet",
        help="transfer mode (default octet: bytes as they are)",
    )
    parser.add_argument(
        "--no-options",
        action="store_true",
        help="send a plain RFC 1350 request without options (blksize 512, windowsize 1)",
    )
    parser.add_argument(
        "--digest",
        choices=(*DIGESTS, "none"),
        default="xxh128",
        help="end-to-end check of the whole file, with a rudp server: xxh128 (default, XXH3-128), sha256, or "
        "none; the receiving side keeps the file only if its digest matches (spec 7.7)",
    )
    add_transfer_options(parser)


def client_config_from(args: argparse.Namespace) -> TransferConfig:
    return client_config(
        blksize=args.blksize,
        windowsize=args.windowsize,
        timeout=args.timeout,
        retries=args.retries,
        mode=args.mode,
        options=not args.no_options,
        fixed_timeout=args.fixed_timeout,
        digest=None if args.digest == "none" else args.digest,
    )


def run_reported(args: argparse.Namespace, label: str, transfer: Callable[..., TransferResult]) -> int:
    """Run one client transfer with a progress bar, a summary and (with --json) a JSON record, also on failure."""
    reporter = Reporter(quiet=args.quiet, as_json=args.json, label=label)
    try:
        transfer(config=client_config_from(args), on_progress=reporter.progress, on_complete=reporter.result)
    except RudpError as exc:
        reporter.failure(exc)
        raise
    return 0


def entry_point(run: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], NoReturn]:
    """Wrap a command: one error boundary, documented exit codes, SIGTERM treated like Ctrl-C."""

    def main(argv: Sequence[str] | None = None) -> NoReturn:
        prog = os.path.basename(sys.argv[0]) if argv is None else "rudp"
        signal.signal(signal.SIGTERM, _raise_interrupt)
        if argv is None:  # the command owns its process (not a caller's: their objects stay collectable)
            freeze_imports()
        try:
            code = run(argv)
        except RudpError as exc:
            sys.stderr.write(f"{prog}: error: {exc.message}\n")
            code = exc.exit_code
        except KeyboardInterrupt:
            sys.stderr.write(f"{prog}: interrupted\n")
            code = ExitCode.INTERRUPTED
        except BrokenPipeError:
            # The reader went away (`rudp-sim ... | head`): stop quietly, as Unix tools do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = ExitCode.OK
        except Exception as exc:  # a bug: say so in one line, the traceback only on request
            if os.environ.get("RUDP_DEBUG"):
                raise
            sys.stderr.write(f"{prog}: internal error: {type(exc).__name__}: {exc} (RUDP_DEBUG=1 shows more)\n")
            code = ExitCode.INTERNAL
        sys.stdout.flush()
        raise SystemExit(int(code))

    return main


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Reporter:
    """Progress bar (stderr, when it is a terminal), one-line summary (stderr), JSON (stdout)."""

    def __init__(self, *, quiet: bool, as_json: bool, label: str, bar: bool | None = None) -> None:
        self.quiet, self.as_json, self.label = quiet, as_json, label
        self.show_bar = (not quiet and sys.stderr.isatty()) if bar is None else bar
        self._bar: Any = None

    def progress(self, n: int, total: int | None) -> None:
        if not self.show_bar:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=self.label,
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
            )
        elif total is not None and self._bar.total != total:
            self._bar.total = total
        self._bar.update(n)

    def close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def result(self, result: TransferResult) -> None:
        self.close_bar()
        if self.as_json:
            print(json.dumps(result.as_dict(), sort_keys=True), flush=True)
        if not self.quiet:
            sys.stderr.write(result.summary() + "\n")
            sys.stderr.flush()

    def failure(self, exc: RudpError) -> None:
        """A failed transfer: JSON gets a record too, so scripts always have one line to parse."""
        self.close_bar()
        result = getattr(exc, "result", None)
        if self.as_json:
            record: dict[str, object] = result.as_dict() if isinstance(result, TransferResult) else {}
            record.update(ok=False, error=exc.message, exit_code=int(exc.exit_code))
            print(json.dumps(record, sort_keys=True), flush=True)
