"""rudp-get HOST REMOTE [-o LOCAL]: download a file from a TFTP server (RRQ)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from rudp.api import get_file
from rudp.cli.common import Parser, add_client_options, entry_point, run_reported

__all__ = ["main"]


def run(argv: Sequence[str] | None) -> int:
    parser = Parser(
        prog="rudp-get", description="Download REMOTE from a TFTP server at HOST (RFC 1350 read request)"
    )
    parser.add_argument("host", metavar="HOST", help="server name or address (IPv4 or IPv6)")
    parser.add_argument("remote", metavar="REMOTE", help="the file's name on the server")
    parser.add_argument("-o", "--output", metavar="LOCAL", help="where to save it (default: REMOTE's base name)")
    parser.add_argument("--overwrite", action="store_true", help="replace LOCAL if it exists")
    add_client_options(parser)
    args = parser.parse_args(argv)
    download = partial(get_file, args.host, args.remote, args.output, port=args.port, overwrite=args.overwrite)
    return run_reported(args, args.remote, download)


main = entry_point(run)
