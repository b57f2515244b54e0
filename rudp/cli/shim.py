"""rudp-shim: a lossy UDP relay between real TFTP peers, applying the impairment model in each direction.

  rudp-shim --listen 127.0.0.1:7000 --to 127.0.0.1:6969 --loss 5% --delay 20ms
  curl tftp://127.0.0.1:7000/file -o file        # any TFTP client, pointed at the listen address

Clients talk to --listen as if it were the server; the relay keeps TFTP's transfer IDs consistent on both sides
(the server answers from a new port, and so does the relay).  client -> server ("up") and server -> client
("down") each get their own channel and random generator, seeded from --seed.  It runs until Ctrl-C (exit 130),
SIGTERM (exit 0) or --duration seconds (exit 0), then prints per-direction counters (stderr; --json: stdout).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
from collections.abc import Sequence
from typing import Any

from rudp.cli.common import Parser, entry_point
from rudp.errors import NetworkError, UsageError
from rudp.impair.model import Channel
from rudp.impair.spec import add_impairment_arguments, describe, impairment_from_args
from rudp.net.sockets import Address, resolve
from rudp.shim.relay import DOWN, UP, Relay, RelayConfig, Shim

__all__ = ["main", "parse_endpoint", "format_counters"]

EXIT_HELP = """exit codes:
    0  stopped by SIGTERM or --duration     8  network error (unknown host, cannot bind)
    2  bad usage                          130  interrupted (Ctrl-C)"""


def parse_endpoint(text: str, *, allow_zero: bool = False) -> tuple[str, int]:
    """HOST:PORT or [IPV6]:PORT -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"write IPv6 addresses in brackets, like [::1]:7000, not {text!r}")
    if not sep or not host or not port_text.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (or [IPV6]:PORT), not {text!r}")
    port = int(port_text)
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between {0 if allow_zero else 1} and 65535 in {text!r}")
    return host, port


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value


def _where(address: Address) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


_SHOWN = ("received", "forwarded", "offered", "lost", "lost_random", "delivered")


def format_counters(counters: dict[str, dict[str, int]]) -> list[str]:
    """One line per direction, then one for the mapping table."""
    lines = []
    for direction, label in ((UP, "client->server"), (DOWN, "server->client")):
        c = counters[direction]
        offered = c.get("offered", 0)
        lost = c.get("lost", 0)
        rate = f" ({100 * lost / offered:.2f}%)" if offered else ""
        extras = ", ".join(
            f"{name} {value}"
            for name, value in c.items()
            if value and name not in _SHOWN and not name.startswith("bytes_")
        )
        lines.append(
            f"{label}: {c.get('received', 0)} datagrams in, {c.get('forwarded', 0)} out; "
            f"lost {lost} of {offered}{rate}" + (f"; {extras}" if extras else "")
        )
    r = counters["relay"]
    lines.append(
        f"relay: {r['clients']} clients, {r['tids']} server TIDs mapped ({r['expired']} expired, "
        f"{r['evicted']} evicted), {r['pending']} datagrams still delayed at exit"
    )
    return lines


def run(argv: Sequence[str] | None) -> int:
    parser = Parser(
        prog="rudp-shim",
        description=__doc__,
        epilog=EXIT_HELP,
    )
    parser.add_argument("--listen", required=True, metavar="HOST:PORT",
                        type=lambda t: parse_endpoint(t, allow_zero=True),
                        help="where clients send their requests (port 0 picks a free one)")
    parser.add_argument("--to", required=True, metavar="HOST:PORT", type=parse_endpoint,
                        help="the server's well-known address")
    parser.add_argument("--duration", type=_positive, metavar="S", help="stop by itself after S seconds")
    parser.add_argument("--idle", type=_positive, default=30.0, metavar="S",
                        help="forget a client or server TID after S seconds without datagrams (default 30)")
    parser.add_argument("--json", action="store_true",
                        help='print {"event": "listening", ...} at start and the counters at exit on stdout')
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on stderr but errors")
    add_impairment_arguments(parser)
    args = parser.parse_args(argv)

    try:
        impairment = impairment_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    seed = args.seed if getattr(args, "seed", None) is not None else random.SystemRandom().randrange(2**32)
    listen_family, listen = resolve(*args.listen)
    server_family, server = resolve(*args.to)
    relay = Relay(
        RelayConfig(server=server, idle_timeout=args.idle),
        up=Channel(impairment, random.Random(f"{seed}:{UP}")),
        down=Channel(impairment, random.Random(f"{seed}:{DOWN}")),
    )
    try:
        shim = Shim(relay, listen=listen, listen_family=listen_family, server_family=server_family)
    except OSError as exc:
        raise NetworkError(f"cannot listen on {_where(listen)}: {exc.strerror}") from None

    with shim:
        if args.json:
            print(json.dumps({"event": "listening", "host": shim.address[0], "port": shim.port}), flush=True)
        if not args.quiet:
            _say(f"relaying {_where(shim.address)} -> {_where(server)} ({describe(impairment)}; seed {seed})")
        previous = {
            signal.SIGINT: signal.signal(signal.SIGINT, lambda *_: shim.stop(130)),
            signal.SIGTERM: signal.signal(signal.SIGTERM, lambda *_: shim.stop(0)),
        }
        try:
            code = shim.run(duration=args.duration)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        counters = relay.counters()
        for line in shim.socket_errors:
            _say(line)
        if not args.quiet:
            for line in format_counters(counters):
                _say(line)
        if args.json:
            record: dict[str, Any] = {"event": "counters", "seed": seed, "seconds": round(shim.elapsed, 3),
                                      **counters}
            print(json.dumps(record, sort_keys=True), flush=True)
    return code


def _say(line: str) -> None:
    sys.stderr.write(f"rudp-shim: {line}\n")
    sys.stderr.flush()


main = entry_point(run)
