"""Output never blocks a server: rudp-recv's JSON and summary lines go through rudp.cli.lines.LineWriter."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

from peers import rudp_command

import rudp
from rudp.cli.lines import LineWriter


def test_a_full_pipe_costs_lines_not_the_writer_and_the_reader_is_told_how_many() -> None:
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(write_fd, "w")
    writer = LineWriter(stream, as_json=True, queue_lines=5)
    big = "x" * 70_000  # more than a pipe holds: the writer thread blocks on the first line
    start = time.monotonic()
    for n in range(50):
        writer.write(json.dumps({"n": n, "pad": big}))
    assert time.monotonic() - start < 1.0  # never blocked the caller
    assert writer.total_dropped >= 40
    drained = bytearray()

    def drain() -> None:
        while chunk := os.read(read_fd, 1 << 20):
            drained.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while writer._queue.qsize() and time.monotonic() < deadline:  # the reader catches up
        time.sleep(0.01)
    writer.write(json.dumps({"n": "last"}))
    writer.close(timeout=10)
    stream.close()
    reader.join(10)
    os.close(read_fd)
    events = [json.loads(line) for line in drained.decode().splitlines()]
    dropped = [e for e in events if e.get("event") == "dropped"]
    assert dropped and sum(e["lines"] for e in dropped) == writer.total_dropped
    assert events[-1] == {"n": "last"}  # nothing written after close was lost


def test_rudp_recv_keeps_serving_when_nobody_reads_its_json(tmp_path) -> None:
    served = tmp_path / "in"
    served.mkdir()
    src = tmp_path / "small.bin"
    src.write_bytes(b"s" * 100)
    proc = subprocess.Popen(
        [
            rudp_command("rudp-recv"),
            "--json",
            "-q",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--dir",
            served,
            "--overwrite",
            "--max-per-client",
            "0",
            "--max-transfers",
            "0",
            "--rate-limit",
            "0",
            "--timeout",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["port"]  # ...and then stdout is never read again
        config = rudp.client_config(timeout=1.0, retries=2)
        for n in range(120):  # ~1.5 KB of JSON each: far more than the 64 KiB a pipe holds
            result = rudp.send_file(src, "127.0.0.1", port=port, remote_name=f"f{n}", config=config)
            assert result.ok, f"upload {n}: {result.error}"
        assert (served / "f119").read_bytes() == b"s" * 100
    finally:
        proc.terminate()
        proc.wait(15)
