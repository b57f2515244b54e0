#!/usr/bin/env python3
"""Throw random and mutated datagrams at a live ``rudp-recv`` on loopback, then check it still works.

Theory of operation
-------------------
A temporary directory holds the served directory ``srv/`` (with one file to download) and, beside it, a bait
file.  ``rudp-recv --serve`` runs on it as a child process on a free loopback port.  From a pool of UDP sockets
(many source ports), the fuzzer sends, in bounded time, ``--count`` datagrams: real RRQ/WRQ/DATA/ACK/OACK/ERROR/
SACK packets (names that try to escape: ``..``, absolute paths into the parent, backslashes, long names; modes
and options real, extreme and garbage) and mutations of them (bit flips, truncation, extension, splices, random
bytes of random length).  It aims them at the listening port and at every transfer port the server opens (the
source ports of its answers), and keeps reading the answers so its own buffers never fill.

Afterwards it checks that the server process is still alive, that a normal upload and a normal download
through it succeed byte for byte, that nothing in the temporary directory outside ``srv/`` changed (no file
escaped), and that every file inside ``srv/`` is a regular file.  It prints counts as one JSON object and
exits 0 when every check passed, 1 otherwise.  Everything random comes from ``--seed``.

Usage::

    python tools/fuzz_recv.py                      # 100,000 datagrams, at most 60 s of fuzzing
    python tools/fuzz_recv.py --count 20000 --seed 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rudp.api import get_file, send_file
from rudp.core.config import TransferConfig
from rudp.wire.codec import encode
from rudp.wire.packets import Ack, Data, Error, OptionAck, ReadRequest, SelectiveAck, WriteRequest

__all__ = ["fuzz", "main"]

HOST = "127.0.0.1"
SOCKETS = 32  # source ports the fuzz comes from
MAX_TARGETS = 256  # transfer ports remembered (the newest ones)


def _names(parent: Path) -> list[str]:
    return [
        "hello.bin",
        "up.bin",
        "new.bin",
        "../escape.bin",
        "../../escape.bin",
        "sub/../../escape.bin",
        str(parent / "absolute.bin"),
        "/etc/passwd",
        "..\\escape.bin",
        "sub\\..\\..\\escape.bin",
        "sub/dir/deep.bin",
        ".",
        "..",
        "",
        "srv",
        "x" * 300,
        "\u00e9t\u00e9.bin",
        "dev/null",
        "/dev/zero",
    ]


_MODES = ["octet", "netascii", "OCTET", "mail", "binary", ""]
_OPTIONS = {
    "blksize": ["8", "512", "65464", "7", "65465", "0", "abc"],
    "windowsize": ["1", "16", "65535", "0", "70000"],
    "tsize": ["0", "10", "999999999999999", "-1"],
    "timeout": ["1", "255", "0", "300"],
    "sack": ["1", "0"],
    "sha256": ["0", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "zz"],
}


class Generator:
    def __init__(self, rng: random.Random, parent: Path) -> None:
        self.rng = rng
        self.names = _names(parent)

    def options(self) -> tuple[tuple[str, str], ...]:
        rng = self.rng
        picked = []
        for _ in range(rng.randrange(0, 5)):
            name = rng.choice([*_OPTIONS, "BlkSize", "bogus"])
            picked.append((name, rng.choice(_OPTIONS.get(name.lower(), ["1", ""]))))
        return tuple(picked)

    def real(self) -> bytes:
        rng = self.rng
        kind = rng.choice(["rrq", "wrq", "wrq", "data", "ack", "oack", "error", "sack"])
        if kind in ("rrq", "wrq"):
            cls = ReadRequest if kind == "rrq" else WriteRequest
            return encode(cls(rng.choice(self.names), rng.choice(_MODES), self.options()))
        if kind == "data":
            block = rng.choice([0, 1, 2, rng.randrange(65536)])
            return encode(Data(block, rng.randbytes(rng.choice([0, 1, 511, 512, 513, rng.randrange(1400)]))))
        if kind == "ack":
            return encode(Ack(rng.choice([0, 1, 2, 65535, rng.randrange(65536)])))
        if kind == "oack":
            return encode(OptionAck(self.options()))
        if kind == "error":
            return encode(Error(rng.randrange(10), rng.choice(["", "boom", "x" * 500])))
        return encode(SelectiveAck(rng.randrange(65536), rng.randbytes(rng.randrange(0, 40))))

    def datagram(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.35:
            return self.real()
        if roll < 0.5:
            return rng.randbytes(rng.choice([0, 1, 2, 3, 4, 5, rng.randrange(600), rng.randrange(9000)]))
        data = bytearray(self.real())
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(6)
            at = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
            elif op == 1:
                del data[at:]
            elif op == 2:
                data[at:at] = rng.randbytes(rng.randint(1, 32))
            elif op == 3:
                data[at : at + rng.randint(1, 8)] = b""
            elif op == 4:
                data[:2] = rng.randrange(0, 8).to_bytes(2, "big")
            else:
                data[at:at] = b"\x00"
        return bytes(data)


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` except inside ``skip``: (size, mtime_ns)."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == skip:
            dirnames[:] = []
            seen[str(here)] = (0, 0)  # the directory itself may change inside; its contents are checked apart
            continue
        for name in dirnames + filenames:
            path = here / name
            if path == skip:
                continue
            info = path.lstat()
            seen[str(path)] = (info.st_size, info.st_mtime_ns)
    return seen


def _start_server(served: Path, log: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """Start rudp-recv; its JSON lines go to ``log`` (a file, not a pipe: a pipe nobody reads fills up after
    a few dozen transfers and then blocks the server's one thread in print)."""
    command = [sys.executable, "-c", "from rudp.cli.recv import main; raise SystemExit(main())"]
    command += ["--port", "0", "--bind", HOST, "--dir", str(served), "--serve", "--json", "-q"]
    command += ["--timeout", "1", "--retries", "1", *extra]
    with open(log, "wb") as out, open(log.with_suffix(".err"), "wb") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        first = log.read_text(encoding="utf-8").split("\n", 1)
        if len(first) == 2:
            return proc, int(json.loads(first[0])["port"])
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"rudp-recv did not start: {log.with_suffix('.err').read_text(encoding='utf-8')}")


def fuzz(count: int, seed: int, duration: float, extra: list[str] | None = None) -> dict[str, Any]:
    """Run one fuzzing session; the report's ``ok`` says whether every check passed."""
    rng = random.Random(f"fuzz-recv:{seed}")
    report: dict[str, Any] = {"seed": seed, "count": count, "problems": []}
    with tempfile.TemporaryDirectory(prefix="rudp-fuzz-") as tmp, tempfile.TemporaryDirectory() as logs:
        parent = Path(tmp)
        log = Path(logs) / "recv.jsonl"
        served = parent / "srv"
        served.mkdir()
        (parent / "bait.bin").write_bytes(b"must not change")
        hello = rng.randbytes(70_000)
        (served / "hello.bin").write_bytes(hello)
        before = _snapshot(parent, served)
        proc, port = _start_server(served, log, extra or [])
        try:
            report.update(_flood(rng, parent, port, count, duration))
            report["server_alive_after_flood"] = proc.poll() is None
            if proc.poll() is not None:
                report["problems"].append(f"rudp-recv exited with {proc.returncode} during the flood")
            else:
                _check_transfers(report, parent, served, port, hello, rng)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            stderr = log.with_suffix(".err").read_text(encoding="utf-8", errors="replace")
            report["server_transfers_logged"] = log.read_text(encoding="utf-8").count('"event": "transfer"')
            if report.get("server_alive_after_flood") is False:
                report["problems"].append("its stderr: " + stderr[-1500:])
            if "Traceback" in stderr:
                report["problems"].append("rudp-recv printed a traceback: " + stderr[-2000:])
        after = _snapshot(parent, served)
        for path in sorted(set(before) | set(after)):
            if before.get(path) != after.get(path) and not path.startswith(str(parent / "check")):
                report["problems"].append(
                    f"outside the served directory: {path} changed ({before.get(path)} -> {after.get(path)})"
                )
        inside = list(served.rglob("*"))
        report["files_in_served_dir"] = sorted(str(p.relative_to(served)) for p in inside)
        for path in inside:
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                report["problems"].append(f"inside the served directory: {path} is not a regular file")
    report["ok"] = not report["problems"]
    return report


def _flood(rng: random.Random, parent: Path, port: int, count: int, duration: float) -> dict[str, Any]:
    generator = Generator(rng, parent)
    socks = []
    for _ in range(SOCKETS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOST, 0))
        sock.setblocking(False)
        socks.append(sock)
    targets: list[int] = []  # transfer ports seen in the server's answers
    sent = to_listener = to_transfers = answers = send_errors = 0
    started = time.monotonic()
    try:
        while sent < count and time.monotonic() - started < duration:
            for _ in range(64):
                sock = rng.choice(socks)
                if targets and rng.random() < 0.5:
                    target = rng.choice(targets)
                    to_transfers += 1
                else:
                    target = port
                    to_listener += 1
                try:
                    sock.sendto(generator.datagram(), (HOST, target))
                except OSError:  # ECONNREFUSED from an earlier datagram to a closed transfer port, ENOBUFS ...
                    send_errors += 1
                sent += 1
            readable, _, _ = select.select(socks, [], [], 0)
            for sock in readable:
                for _ in range(64):
                    try:
                        _, source = sock.recvfrom(70_000)
                    except BlockingIOError:
                        break
                    except OSError:
                        continue  # an ICMP error reported on this socket
                    answers += 1
                    if source[1] != port and source[1] not in targets:
                        targets.append(source[1])
                        del targets[:-MAX_TARGETS]
    finally:
        for sock in socks:
            sock.close()
    seconds = time.monotonic() - started
    return {
        "sent": sent,
        "to_listener": to_listener,
        "to_transfer_ports": to_transfers,
        "transfer_ports_seen": len(set(targets)),
        "answers": answers,
        "send_errors": send_errors,
        "flood_seconds": round(seconds, 2),
    }


def _check_transfers(
    report: dict[str, Any], parent: Path, served: Path, port: int, hello: bytes, rng: random.Random
) -> None:
    """A normal upload and download must succeed; the fuzz transfers may still hold the per-client caps for a
    few seconds (their timeout is 1 s, 1 retry), so each is tried for up to 20 s."""
    work = parent / "check"
    work.mkdir()
    upload = rng.randbytes(150_000)
    (work / "upload.bin").write_bytes(upload)
    config = TransferConfig(blksize=1428, windowsize=16, timeout=1.0, retries=3)
    for what in ("upload", "download"):
        deadline = time.monotonic() + 20
        while True:
            try:
                if what == "upload":
                    send_file(
                        work / "upload.bin", HOST, port=port, remote_name="checked-upload.bin", config=config
                    )
                    good = (served / "checked-upload.bin").read_bytes() == upload
                else:
                    get_file(HOST, "hello.bin", work / "hello.bin", port=port, config=config)
                    good = (work / "hello.bin").read_bytes() == hello
                report[f"{what}_ok"] = good
                if not good:
                    report["problems"].append(f"the normal {what} completed with the wrong bytes")
                break
            except Exception as exc:  # noqa: BLE001 - retried, then reported
                if time.monotonic() > deadline:
                    report[f"{what}_ok"] = False
                    report["problems"].append(f"the normal {what} failed: {type(exc).__name__}: {exc}")
                    break
                time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="datagrams to send (default 100000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60.0, help="most seconds of fuzzing (default 60)")
    parser.add_argument("server_args", nargs="*", help="more rudp-recv options, after --")
    args = parser.parse_args(argv)
    report = fuzz(args.count, args.seed, args.duration, args.server_args)
    print(json.dumps(report, indent=1))
    if report["problems"]:
        print(
            f"FAIL (seed {args.seed}): reproduce with python tools/fuzz_recv.py --count {args.count} "
            f"--seed {args.seed}",
            file=sys.stderr,
        )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
