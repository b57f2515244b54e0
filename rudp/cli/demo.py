"""rudp-demo: a real transfer on this machine, with nothing to set up.

It starts a rudp server on loopback in a temporary directory, uploads a generated file to it, downloads it
back, and checks both copies byte for byte (SHA-256).
"""

from __future__ import annotations

import hashlib
import random
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from rudp.api import client_config, get_file, send_file
from rudp.cli.common import Parser, Reporter, entry_point, parse_size
from rudp.net.server import Server, ServerConfig

__all__ = ["main"]


def run(argv: Sequence[str] | None) -> int:
    parser = Parser(prog="rudp-demo", description=__doc__)
    parser.add_argument("--size", type=parse_size, default=parse_size("32M"), help="file size (default 32M)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated file's content (default 1)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rudp-demo-") as tmp:
        work = Path(tmp)
        served = work / "server"
        served.mkdir()
        source = work / "demo.bin"
        source.write_bytes(random.Random(args.seed).randbytes(args.size))
        print(f"rudp-demo: {args.size} bytes of seeded data (seed {args.seed}), server directory {served}")
        with Server(ServerConfig(directory=str(served), host="127.0.0.1", port=0, serve=True)) as server:
            stop = threading.Event()
            thread = threading.Thread(target=_serve, args=(server, stop), daemon=True)
            thread.start()
            try:
                config = client_config()
                up = Reporter(quiet=False, as_json=False, label="upload  ")
                send_file(
                    source,
                    "127.0.0.1",
                    port=server.port,
                    config=config,
                    on_progress=up.progress,
                    on_complete=up.result,
                )
                back = work / "demo.back"
                down = Reporter(quiet=False, as_json=False, label="download")
                get_file(
                    "127.0.0.1",
                    "demo.bin",
                    back,
                    port=server.port,
                    config=config,
                    on_progress=down.progress,
                    on_complete=down.result,
                )
            finally:
                stop.set()
                thread.join(timeout=10)
        copies = {"original": source, "uploaded": served / "demo.bin", "downloaded": back}
        digests = {label: hashlib.sha256(path.read_bytes()).hexdigest() for label, path in copies.items()}
        for label, digest in digests.items():
            print(f"  sha256 {digest}  {label}")
        if len(set(digests.values())) != 1:
            print("rudp-demo: MISMATCH: the copies differ", file=sys.stderr)
            return 1
        print("rudp-demo: all three copies are identical")
    return 0


def _serve(server: Server, stop: threading.Event) -> None:
    while not stop.is_set():
        server.step(timeout=0.05)


main = entry_point(run)
