"""rudp-send FILE HOST: upload a file to a TFTP server (WRQ)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from rudp.api import send_file
from rudp.cli.common import Parser, add_client_options, entry_point, run_reported

__all__ = ["main"]


def run(argv: Sequence[str] | None) -> int:
    parser = Parser(prog="rudp-send", description="Upload FILE to a TFTP server at HOST (RFC 1350 write request).")
    parser.add_argument("file", metavar="FILE", help="the local file to send")
    parser.add_argument("host", metavar="HOST", help="server name or address (IPv4 or IPv6)")
    parser.add_argument("--name", metavar="REMOTE", help="name to store it under (default: FILE's base name)")
    add_client_options(parser)
    args = parser.parse_args(argv)
    upload = partial(send_file, args.file, args.host, port=args.port, remote_name=args.name)
    return run_reported(args, args.name or args.file, upload)


main = entry_point(run)
