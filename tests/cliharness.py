"""Run rudp's installed commands as a user would: real processes, real sockets on loopback, free ports."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

FAST = ["--timeout", "0.5", "--retries", "10"]  # short timers keep the clients' dally (min(timeout, 1 s)) short


def command(name: str) -> str:
    """The command installed beside the interpreter running the tests (not whatever PATH finds first)."""
    path = str(Path(sys.executable).parent / name)
    if not os.path.exists(path):
        path = shutil.which(name) or path
    if not os.path.exists(path):
        raise AssertionError(f"{name} is not installed: run pip install -e '.[test]'")
    return path


def run(name: str, *args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([command(name), *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, fragment: str = "") -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert fragment.lower() in lines[0].lower(), lines[0]


class RecvServer:
    """rudp-recv in a subprocess, port read from its first --json line; stdout lines collected by a thread."""

    def __init__(self, directory: Path, *extra: str, bind: str | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [command("rudp-recv"), "--port", "0", "--json", "-q", "--dir", str(self.dir), *extra]
        if bind:
            args += ["--bind", bind]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        first = self.next_event(timeout=10)
        assert first["event"] == "listening", first
        self.port = first["port"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def next_event(self, timeout: float = 30) -> dict:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"rudp-recv said nothing within {timeout} s; stderr: {self.stderr()}") from None

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read() if self.proc.stderr else ""

    def interrupt(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


def wait_for(predicate, timeout: float = 20, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def temp_files(directory: Path) -> list[str]:
    return [p.name for p in Path(directory).rglob("*") if p.name.endswith(".rudp-part")]
