"""Bounded child processes for the benchmark: every one is registered, timed out, reaped with its rusage.

* ``spawn`` starts a process in its own session (so ``kill_all`` reaches forked children such as in.tftpd's per
  transfer ones by process group) and reads its stdout and stderr on threads (a chatty child never blocks).
* ``Proc.finish`` reaps with ``os.wait4``, which gives that one child's peak RSS (``ru_maxrss``, the kernel's
  high-water mark) without mixing in other children; with ``poll_rss`` it also samples /proc/PID/status
  (VmRSS/VmHWM) while waiting, as a cross-check.  Otherwise it sleeps on a pidfd until the child exits, so the
  benchmark itself takes no CPU from what it measures.
* ``kill_all`` kills whatever is still running, by the process groups we created; it runs in the benchmark's
  ``finally`` (exceptions, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import ipaddress
import os
import queue
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

__all__ = ["status_kib", "Proc", "Finished", "spawn", "kill_all", "check_destination", "ProcTimeout"]

_LIVE: list[Proc] = []
_ALLOWED = [
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("198.18.0.0/15"),
]


class ProcTimeout(Exception):
    pass


def check_destination(addr: str) -> str:
    """Refuse any destination outside loopback and 198.18.0.0/15 (the benchmark never sends elsewhere)."""
    if not any(ipaddress.ip_address(addr) in net for net in _ALLOWED):
        raise ValueError(f"refusing to send to {addr}: only loopback and 198.18.0.0/15 are allowed")
    return addr


@dataclass
class Finished:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall: float
    maxrss_kib: int
    polled_hwm_kib: int = 0
    polled_rss_kib: int = 0
    extra: dict = field(default_factory=dict)


class Proc:
    def __init__(self, argv: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None) -> None:
        self.argv = [str(a) for a in argv]
        self.lines: queue.Queue[str] = queue.Queue()
        self._out: list[str] = []
        self._err: list[str] = []
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
            start_new_session=True,
        )
        _LIVE.append(self)
        self._threads = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, self._out, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stderr, self._err, False), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _pump(self, stream, sink: list[str], to_queue: bool) -> None:
        for line in stream:
            sink.append(line)
            if to_queue:
                self.lines.put(line)
        stream.close()

    def wait_line(self, timeout: float) -> str:
        """The next stdout line; ProcTimeout if none comes in ``timeout`` s or the process ends first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.lines.get(timeout=0.05)
            except queue.Empty:
                if self.popen.poll() is not None and self.lines.empty():
                    time.sleep(0.05)  # let the pump threads catch up with a just-exited process
                    if self.lines.empty():
                        raise ProcTimeout(
                            f"exited ({self.popen.returncode}) without output: {''.join(self._err)[-500:]}"
                        ) from None
                if time.monotonic() > deadline:
                    raise ProcTimeout(f"no output within {timeout:.0f} s") from None

    def finish(self, timeout: float, *, poll_rss: bool = False) -> Finished:
        """Wait up to ``timeout`` s; on timeout kill the group and raise ProcTimeout."""
        deadline = time.monotonic() + timeout
        hwm = rss = 0
        status = None
        rusage = None
        if not poll_rss:
            self._sleep_until_exit(deadline)
        while self.popen.returncode is None:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.popen.returncode = os.waitstatus_to_exitcode(status)
                break
            if poll_rss:
                sample = status_kib(self.pid)
                hwm = max(hwm, sample.get("VmHWM", 0))
                rss = max(rss, sample.get("VmRSS", 0))
            if time.monotonic() > deadline:
                self.kill()
                raise ProcTimeout(f"still running after {timeout:.0f} s (killed): {' '.join(self.argv[:6])}")
            time.sleep(0.01 if poll_rss else 0.002)
        wall = time.monotonic() - self.started
        for t in self._threads:
            t.join(timeout=5)
        if self in _LIVE:
            _LIVE.remove(self)
        maxrss = rusage.ru_maxrss if rusage is not None else 0
        return Finished(
            self.argv, self.popen.returncode, "".join(self._out), "".join(self._err), wall, maxrss, hwm, rss
        )

    def _sleep_until_exit(self, deadline: float) -> None:
        """Block until the process exits or ``deadline`` passes, using no CPU meanwhile: a pidfd (Linux 5.3+)
        becomes readable when its process ends.  The timed transfers use both cores; a parent waking every few
        milliseconds to poll would take CPU from the very processes it measures.  Without pidfds this returns
        at once and ``finish`` polls as before."""
        try:
            fd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            return
        try:
            select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(fd)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process (only while we have not reaped it, so the pid is still ours)."""
        if self.popen.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL our process group (the leader and anything it forked), then reap the leader."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=10)
        except (subprocess.TimeoutExpired, ChildProcessError):
            pass
        if self in _LIVE:
            _LIVE.remove(self)


def status_kib(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return out


def spawn(argv: list, *, cwd: str | None = None, env: dict[str, str] | None = None) -> Proc:
    """Start ``argv``; ``env`` adds to (or overrides) this process's environment."""
    return Proc(argv, cwd=cwd, env=env)


def kill_all() -> None:
    for proc in list(_LIVE):
        proc.kill()
