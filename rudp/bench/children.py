"""Child processes of a bench run: stdout read line by line on a thread, every one killed by process group.

Children are started through the lab (``Lab.popen``, i.e. ``ip netns exec NS ...``, which execs the command, so
the pid is the command's) in a session of their own: ``kill`` reaches anything they fork (in.tftpd's per-transfer
children).  ``kill_all`` runs in the bench's ``finally`` so nothing outlives a failed or interrupted run.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Child", "ChildTimeout", "kill_all", "last_json"]

_LIVE: list[Child] = []


class ChildTimeout(Exception):
    pass


class Child:
    def __init__(self, name: str, start: Callable[..., subprocess.Popen]) -> None:
        """``start(**popen_kwargs)`` launches the process (e.g. ``functools.partial(lab.popen, "a", argv)``)."""
        self.name = name
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self.popen = start(
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        _LIVE.append(self)
        self._threads = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, self.out, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stderr, self.err, False), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump(self, stream: Any, sink: list[str], to_queue: bool) -> None:
        for line in stream:
            sink.append(line)
            if to_queue:
                self.lines.put(line)
        stream.close()

    def stderr_tail(self, n: int = 300) -> str:
        return " ".join("".join(self.err).split())[-n:]

    def wait_line(self, timeout: float) -> str:
        """The next stdout line; ChildTimeout if none comes within ``timeout`` s or the process ends first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.lines.get(timeout=0.02)
            except queue.Empty:
                if self.popen.poll() is not None:
                    for t in self._threads:
                        t.join(timeout=1)
                    if self.lines.empty():
                        raise ChildTimeout(
                            f"{self.name} exited ({self.popen.returncode}) early: {self.stderr_tail()}"
                        ) from None
                elif time.monotonic() > deadline:
                    raise ChildTimeout(f"{self.name}: no output within {timeout:g} s") from None

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after ``timeout`` s (the process is left running)."""
        try:
            code = self.popen.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None
        for t in self._threads:
            t.join(timeout=2)
        if self in _LIVE:
            _LIVE.remove(self)
        return code

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process group (the child and whatever it forked), then reap the child."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
            self.popen.wait(timeout=10)
        for t in self._threads:
            t.join(timeout=2)
        if self in _LIVE:
            _LIVE.remove(self)


def kill_all() -> None:
    for child in list(_LIVE):
        child.kill()


def last_json(lines: list[str]) -> dict[str, Any] | None:
    """The last line of ``lines`` that parses as a JSON object, or None."""
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None
