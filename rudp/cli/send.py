"""rudp-send FILE HOST: upload a file to a TFTP server (WRQ)."""

from __future__ import annotations

from collections.abc import Sequence

from rudp.api import client_config, send_file
from rudp.cli.common import Parser, Reporter, add_client_options, entry_point
from rudp.errors import RudpError

__all__ = ["main"]


def run(argv: Sequence[str] | None) -> int:
    parser = Parser(prog="rudp-send", description="Upload FILE to a TFTP server at HOST (RFC 1350 write request).")
    parser.add_argument("file", metavar="FILE", help="the local file to send")
    parser.add_argument("host", metavar="HOST", help="server name or address (IPv4 or IPv6)")
    parser.add_argument("--name", metavar="REMOTE", help="name to store it under (default: FILE's base name)")
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
    reporter = Reporter(quiet=args.quiet, as_json=args.json, label=args.name or args.file)
    try:
        send_file(
            args.file,
            args.host,
            port=args.port,
            remote_name=args.name,
            config=config,
            on_progress=reporter.progress,
            on_complete=reporter.result,
        )
    except RudpError as exc:
        reporter.failure(exc)
        raise
    return 0


main = entry_point(run)
