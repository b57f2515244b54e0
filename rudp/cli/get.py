"""rudp-get HOST REMOTE [-o LOCAL]: download a file from a TFTP server (RRQ)."""

from __future__ import annotations

from collections.abc import Sequence

from rudp.api import client_config, get_file
from rudp.cli.common import Parser, Reporter, add_client_options, entry_point
from rudp.errors import RudpError

__all__ = ["main"]


def run(argv: Sequence[str] | None) -> int:
    parser = Parser(
        prog="rudp-get", description="Download REMOTE from a TFTP server at HOST (RFC 1350 read request)."
    )
    parser.add_argument("host", metavar="HOST", help="server name or address (IPv4 or IPv6)")
    parser.add_argument("remote", metavar="REMOTE", help="the file's name on the server")
    parser.add_argument("-o", "--output", metavar="LOCAL", help="where to save it (default: REMOTE's base name)")
    parser.add_argument("--overwrite", action="store_true", help="replace LOCAL if it exists")
    add_client_options(parser)
    args = parser.parse_args(argv)
    config = client_config(
        blksize=args.blksize,
        windowsize=args.windowsize,
        timeout=args.timeout,
        retries=args.retries,
        mode=args.mode,
        options=not args.no_options,
    )
    reporter = Reporter(quiet=args.quiet, as_json=args.json, label=args.remote)
    try:
        get_file(
            args.host,
            args.remote,
            args.output,
            port=args.port,
            overwrite=args.overwrite,
            config=config,
            on_progress=reporter.progress,
            on_complete=reporter.result,
        )
    except RudpError as exc:
        reporter.failure(exc)
        raise
    return 0


main = entry_point(run)
