"""The network lab: namespaces a (sender) and b (receiver) joined by a TUN relay that impairs every IP packet.

Theory of operation
-------------------
* Names carry the owner's pid: namespaces ``rudplab-<pid>-a``/``-b``, TUN devices ``rl<pid>a``/``rl<pid>b``.  A
  lab starting up deletes the ``rudplab-*`` namespaces of pids that no longer run (a crashed or SIGKILLed run's),
  never those of a live pid or another prefix.  One lab per process at a time.
* Build: ``ip netns add`` both namespaces; open one TUN device per side in the root namespace (``tun.open_tun``),
  move each into its namespace with ``ip link set NAME netns NS`` (the fd stays attached to the device), give it
  its address from 198.18.0.0/15 (a = 198.18.1.1/30, b = 198.18.1.2/30), no IPv6 link-local address (no router
  solicitations or DAD in the counters), and bring it and ``lo`` up.  The route between a and b is the /30 on the
  TUN devices, so every packet either side sends the other, of any protocol, crosses the relay.
* The relay (``relay.py``) runs as its own process, in its own session (a terminal's Ctrl-C reaches only this
  process, which then stops the relay in order), holding the only fds on the TUN devices; this process talks to
  it over its stdin/stdout in JSON lines.
* Teardown (``close``, idempotent): tell the relay to quit, wait for it, delete both namespaces.  It runs on
  ``__exit__`` (normal exit, exceptions, Ctrl-C's KeyboardInterrupt), at interpreter exit (``atexit``, for a lab
  left open) and on SIGTERM/SIGHUP: while a lab is open and those signals have no handler of their own, they
  raise ``SystemExit(128 + signal)`` in the main thread, so ``with`` blocks and ``finally`` clauses run.  On
  SIGKILL nothing in this process runs: the relay sees end of file on its control pipe and deletes the
  namespaces itself; should it be killed too, the next lab's stale cleanup removes them.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from rudp.lab.link import LinkSpec
from rudp.lab.relay import PREFIX
from rudp.lab.tun import TUN_PATH, open_tun

__all__ = ["Lab", "LabUnavailable", "remove_stale", "PREFIX", "ADDR_A", "ADDR_B", "PREFIX_LEN"]

ADDR_A = "198.18.1.1"
ADDR_B = "198.18.1.2"
PREFIX_LEN = 30
SIDES = ("a", "b")
_ADDRESSES = {"a": ADDR_A, "b": ADDR_B}
_STARTUP = 15.0  # seconds the relay may take to say it is ready
_REPLY = 10.0  # seconds a control request may take
_RELAY_MAIN = "import sys; from rudp.lab.relay import main; sys.exit(main())"  # -m would import it twice


class LabUnavailable(Exception):
    """The lab cannot be built here (not root, no /dev/net/tun, no ``ip``); the message says why."""


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lab_namespaces() -> list[str]:
    """Every ``rudplab-<pid>-a|b`` namespace on this machine."""
    listing = _run(["ip", "netns", "list"], check=False).stdout
    names = [line.split()[0] for line in listing.splitlines() if line.split()]
    return [name for name in names if re.fullmatch(re.escape(PREFIX) + r"\d+-[ab]", name)]


def remove_stale() -> list[str]:
    """Delete the lab namespaces of pids that no longer run, and this process's own if no lab of it is open."""
    removed = []
    for name in lab_namespaces():
        pid = int(name[len(PREFIX) :].split("-")[0])
        if (pid == os.getpid() and _current is None) or (pid != os.getpid() and not pid_alive(pid)):
            _run(["ip", "netns", "delete", name], check=False)
            removed.append(name)
    return removed


def check_available() -> None:
    """Raise LabUnavailable (one line saying why) unless this process can build a lab."""
    if os.geteuid() != 0:
        raise LabUnavailable("the network lab needs root (network namespaces and TUN devices): run it as root")
    if not os.path.exists(TUN_PATH):
        raise LabUnavailable(f"{TUN_PATH} is missing: load the tun module (modprobe tun)")
    if shutil.which("ip") is None:
        raise LabUnavailable("the 'ip' command is missing: apt-get install iproute2")


# --------------------------------------------------------------------------- process-wide teardown hooks
_current: Lab | None = None
_saved_handlers: dict[int, Any] = {}
_atexit_registered = False
_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _install_hooks() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_close_current)
        _atexit_registered = True
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; atexit and the relay still clean up
    for signum in _SIGNALS:
        if signal.getsignal(signum) == signal.SIG_DFL:
            _saved_handlers[signum] = signal.signal(signum, _on_signal)


def _remove_hooks() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, previous in list(_saved_handlers.items()):
        if signal.getsignal(signum) is _on_signal:
            signal.signal(signum, previous)
        del _saved_handlers[signum]


def _close_current() -> None:
    if _current is not None:
        _current.close()


# --------------------------------------------------------------------------- the lab
class Lab:
    """Namespaces a and b joined by the impaired link ``link``; build with ``with Lab(link) as lab:``."""

    def __init__(self, link: LinkSpec) -> None:
        self.link = link
        pid = os.getpid()
        self.names: dict[str, str] = {side: f"{PREFIX}{pid}-{side}" for side in SIDES}
        self.devices: dict[str, str] = {side: f"rl{pid}{side}" for side in SIDES}
        self._created: list[str] = []
        self._fds: list[int] = []
        self._relay: subprocess.Popen | None = None
        self._pending = b""
        self._lock = threading.Lock()
        self._open = False

    # ------------------------------------------------------------------ build / tear down
    def __enter__(self) -> Lab:
        global _current
        check_available()
        if _current is not None:
            raise RuntimeError("a Lab is already open in this process (one at a time: names carry the pid)")
        remove_stale()
        _current = self
        self._open = True
        _install_hooks()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        for side in SIDES:
            ns = self.names[side]
            _run(["ip", "netns", "add", ns])
            self._created.append(ns)
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        fds = {}
        for side in SIDES:
            ns, dev = self.names[side], self.devices[side]
            fds[side] = open_tun(dev)
            self._fds.append(fds[side])
            _run(["ip", "link", "set", dev, "netns", ns])
            _run(["ip", "-n", ns, "link", "set", dev, "addrgenmode", "none"])
            _run(["ip", "-n", ns, "addr", "add", f"{_ADDRESSES[side]}/{PREFIX_LEN}", "dev", dev])
            _run(["ip", "-n", ns, "link", "set", dev, "up"])
        argv = [sys.executable, "-c", _RELAY_MAIN, "--fds", str(fds["a"]), str(fds["b"])]
        argv += ["--link", json.dumps(self.link.to_json()), "--cleanup", *self._created]
        self._relay = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=self._fds, start_new_session=True
        )
        self._close_fds()  # the relay holds the only fds now: if it dies, the devices go with it
        ready = self._read_reply(_STARTUP)
        if ready.get("event") != "ready":
            raise RuntimeError(f"the lab's relay did not start: {ready}")

    def _close_fds(self) -> None:
        while self._fds:
            os.close(self._fds.pop())

    def close(self) -> None:
        """Stop the relay and delete both namespaces; safe to call more than once."""
        global _current
        if not self._open:
            return
        self._open = False
        try:
            self._close_fds()
            relay, self._relay = self._relay, None
            if relay is not None:
                self._stop_relay(relay)
            while self._created:
                _run(["ip", "netns", "delete", self._created.pop()], check=False)
        finally:
            if _current is self:
                _current = None
                _remove_hooks()

    def _stop_relay(self, relay: subprocess.Popen) -> None:
        if relay.poll() is None:
            try:
                self._send(relay, {"cmd": "quit"})
                self._read_reply(2.0, relay)
            except (OSError, RuntimeError):
                pass
        for stream in (relay.stdin, relay.stdout):
            if stream is not None:
                stream.close()
        try:
            relay.wait(timeout=5)
        except subprocess.TimeoutExpired:
            relay.kill()
            relay.wait()

    # ------------------------------------------------------------------ the control pipe
    @staticmethod
    def _send(relay: subprocess.Popen, request: dict) -> None:
        assert relay.stdin is not None
        relay.stdin.write(json.dumps(request).encode() + b"\n")
        relay.stdin.flush()

    def _read_reply(self, timeout: float, relay: subprocess.Popen | None = None) -> dict:
        relay = relay or self._relay
        if relay is None or relay.stdout is None:
            raise RuntimeError("the lab is closed")
        fd = relay.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError(f"the lab's relay did not answer within {timeout} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the lab's relay exited (exit code {relay.wait()})")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def _call(self, request: dict) -> dict:
        with self._lock:
            if self._relay is None:
                raise RuntimeError("the lab is not open")
            try:
                self._send(self._relay, request)
            except OSError as exc:
                raise RuntimeError(f"the lab's relay is gone: {exc}") from None
            reply = self._read_reply(_REPLY)
        if not reply.get("ok"):
            raise RuntimeError(f"the lab's relay refused {request}: {reply}")
        return reply

    # ------------------------------------------------------------------ use
    def command(self, side: str, argv: list[str]) -> list[str]:
        """``argv`` run inside side ``side``'s namespace (``ip netns exec`` execs: same pid, same signals)."""
        return ["ip", "netns", "exec", self.names[side], *argv]

    def popen(self, side: str, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        return subprocess.Popen(self.command(side, argv), **kwargs)

    def set_link(self, link: LinkSpec) -> None:
        """A new impairment for the next run: new channels in both directions, counters zeroed."""
        self._call({"cmd": "set", "link": link.to_json()})
        self.link = link

    def counters(self) -> dict[str, dict[str, int]]:
        """Each direction's counters since the last reset or ``set_link``: ``{"a>b": {...}, "b>a": {...}}``."""
        return self._call({"cmd": "counters"})["counters"]

    def reset_counters(self) -> None:
        self._call({"cmd": "reset"})
