"""Helpers for interoperability tests against real TFTP peers: tftp-hpa (client), in.tftpd (server), curl.

Policy for missing peers (one place, used by every test):

* ``require_binary(name)``: a peer program that is not installed skips the test with a visible reason, unless
  ``RUDP_REQUIRE_PEERS=1``, which turns that skip into a failure (CI images that must have the peers).
* ``require_root()``: in.tftpd needs root (it chroots and setuids); not being root skips, unless
  ``RUDP_REQUIRE_ROOT=1``, which turns that skip into a failure.

Every process is started with a timeout and is killed in teardown; ports are always picked free (port 0), never
fixed; everything is on loopback (127.0.0.1 or ::1).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

__all__ = [
    "require_binary",
    "require_root",
    "rudp_command",
    "run",
    "spawn",
    "collect",
    "explain",
    "free_port",
    "sha256",
    "random_bytes",
    "netascii_encode",
    "netascii_text",
    "last_json",
    "RudpRecv",
    "Tftpd",
    "TftpHpa",
    "Curl",
    "FAST",
]

# Short client timers: retransmit after 0.5 s (not a whole second, so no timeout option is sent) and keep the
# client's dally after its last ACK (min(timeout, 1 s)) short.  Used wherever the test is not about defaults.
FAST = ["--timeout", "0.5", "--retries", "10"]

PEER_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/local/sbin"])


# --------------------------------------------------------------------------- skip-or-fail policy
def unavailable(reason: str, env: str) -> None:
    """Skip with ``reason``, or fail when the environment variable ``env`` is 1."""
    if os.environ.get(env) == "1":
        pytest.fail(f"{reason} ({env}=1 makes a missing peer a failure, not a skip)", pytrace=False)
    pytest.skip(f"{reason} (set {env}=1 to make this a failure)")


def require_binary(name: str) -> str:
    """The full path of peer program ``name``; skips (or, with RUDP_REQUIRE_PEERS=1, fails) if missing."""
    path = shutil.which(name, path=PEER_SEARCH_PATH)
    if path is None:
        unavailable(f"peer program {name!r} is not installed", "RUDP_REQUIRE_PEERS")
    return path  # type: ignore[return-value]


def require_root() -> None:
    """Skips (or, with RUDP_REQUIRE_ROOT=1, fails) unless running as root."""
    if os.geteuid() != 0:
        unavailable("in.tftpd must be started as root (it chroots and changes user)", "RUDP_REQUIRE_ROOT")


# --------------------------------------------------------------------------- processes
def rudp_command(name: str) -> str:
    """rudp's installed command beside the running interpreter (not whatever PATH finds first)."""
    path = Path(sys.executable).parent / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} is not installed: run pip install -e '.[test]'")
    return found


def explain(proc: subprocess.CompletedProcess) -> str:
    """A diagnostic block for an assertion message: the command, its exit code and its output."""
    argv = proc.args if isinstance(proc.args, str) else " ".join(map(str, proc.args))
    return f"\n$ {argv}\nexit code {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def spawn(argv: list, *, cwd: Path | None = None) -> subprocess.Popen:
    """Start a process in the background; finish it with ``collect`` (which always reaps it)."""
    return subprocess.Popen(
        [str(a) for a in argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        cwd=cwd,
    )


def collect(proc: subprocess.Popen, *, timeout: float = 30) -> subprocess.CompletedProcess:
    """Wait for a spawned process (killed at ``timeout``: the test then fails with the output so far)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"timed out after {timeout} s: {' '.join(proc.args)}\n--- stdout\n{out}\n--- stderr\n{err}"
        ) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run(argv: list, *, timeout: float = 30, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run to completion (killed at ``timeout``: the test then fails with the output so far)."""
    return collect(spawn(argv, cwd=cwd), timeout=timeout)


def last_json(proc: subprocess.CompletedProcess) -> dict:
    """The last JSON line a rudp client printed with --json."""
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, "no JSON on stdout" + explain(proc)
    return json.loads(lines[-1])


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _udp_port_bound(port: int) -> bool:
    """Is some socket bound to UDP ``port`` (any address)? Read from /proc, so nothing is disturbed."""
    suffix = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if len(fields) > 1 and fields[1].upper().endswith(suffix):
                        return True
        except FileNotFoundError:
            continue
    return False


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, group: bool = False, grace: float = 10) -> None:
    """Stop a process we started (and, with ``group``, the process group it leads), by id."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    if group:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # forked children of the leader (in.tftpd's per-transfer ones)
        except (ProcessLookupError, PermissionError):
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- data
def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def random_bytes(seed: int, size: int, label: str = "") -> bytes:
    print(f"data {label or ''} {size} bytes from random.Random({seed})")
    return random.Random(seed).randbytes(size)


def netascii_encode(local: bytes) -> bytes:
    """RFC 764 netascii from a Unix file: CR -> CR NUL, LF -> CR LF (reference encoder for expectations)."""
    return local.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


def netascii_text(seed: int, blksize: int = 512) -> bytes:
    """A Unix text file (LF line ends) with bare CRs, CR LF and CR NUL pairs and a NUL, built so that on the wire
    (netascii) one CR NUL pair and one CR LF pair straddle DATA block boundaries of ``blksize``."""
    rng = random.Random(seed)
    print(f"netascii text from random.Random({seed})")
    head = b"a" * (blksize - 1) + b"\r"  # wire: CR at offset blksize-1, its NUL opens the next block
    head += b"b" * (blksize - 2) + b"\n"  # wire: CR LF at offsets 2*blksize-1 / 2*blksize
    words = [b"alpha", b"beta", b"gamma", b"tftp", b"netascii", b"rudp", b"x"]
    body = bytearray()
    while len(body) < 3 * blksize:
        line = b" ".join(rng.choice(words) for _ in range(rng.randint(0, 9)))
        if rng.random() < 0.3:
            line += b"\rover"  # a bare CR inside a line
        body += line + b"\n"
    # CR LF and CR NUL in the local file: peers decode leniently (a lone CR stays a CR), so these are the
    # sequences that tell a correct encoder (CR -> CR NUL) from one that sends CRs raw.
    return bytes(head + body + b"crlf line\r\n" + b"cr nul\r\0" + b"nul\0byte\n" + b"bare CR at the end\r")


# --------------------------------------------------------------------------- rudp-recv
class RudpRecv:
    """``rudp-recv --port 0 --json`` in a subprocess; its port comes from the first JSON line."""

    def __init__(self, directory: Path, *extra: str, startup: float = 15) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._log = tempfile.TemporaryFile(mode="w+", prefix="rudp-recv-stderr-")
        self.argv = [rudp_command("rudp-recv"), "--port", "0", "--json", "--dir", str(self.dir), *extra]
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, text=True
        )
        self.events: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            first = self.next_event(timeout=startup)
            assert first["event"] == "listening", first
            self.port: int = first["port"]
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.events.put({"event": "unparsable", "line": line})

    def next_event(self, timeout: float = 20) -> dict:
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"rudp-recv said nothing within {timeout} s{self.diagnostics()}") from None
        self.seen.append(event)
        return event

    def transfer(self, timeout: float = 20) -> dict:
        """The next transfer report (skipping nothing else: rudp-recv prints nothing but these)."""
        event = self.next_event(timeout)
        assert event.get("event") == "transfer", event
        return event

    def no_more_transfers(self, wait: float = 0.3) -> None:
        time.sleep(wait)
        extra = []
        while not self.events.empty():
            extra.append(self.events.get_nowait())
        assert not extra, f"unexpected rudp-recv reports: {extra}"

    def stderr(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def diagnostics(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        head = f"\nrudp-recv ({state}): {' '.join(self.argv)}"
        return f"{head}\n--- its stderr\n{self.stderr()}\n--- reports {self.seen}"

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT, grace=15)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._reader.join(timeout=5)

    def close(self) -> None:
        self.stop()
        self._log.close()


# --------------------------------------------------------------------------- in.tftpd
class Tftpd:
    """tftpd-hpa in the foreground (-L) on a free loopback port, serving (chrooted to) ``directory``.

    ``-c`` lets uploads create files, ``-p`` skips tftpd's "world readable/writable" checks, ``-u root`` keeps
    the files ours.  ``extra`` adds options such as ``-B 1024`` or ``-r blksize``."""

    def __init__(self, directory: Path, *extra: str, host: str = "127.0.0.1") -> None:
        self.binary = require_binary("in.tftpd")
        require_root()
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self._log = tempfile.TemporaryFile(mode="w+", prefix="tftpd-stderr-")
        self.proc: subprocess.Popen | None = None
        failures = []
        for _attempt in range(5):  # a free port can be taken between our probe and tftpd's bind: try another
            self.port = free_port(host)
            where = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
            self.argv = [self.binary, "-L", "-a", where, "-s", "-c", "-p", "-u", "root", *extra, str(self.dir)]
            self.proc = subprocess.Popen(
                self.argv,
                stdout=self._log,
                stderr=self._log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, so teardown reaches its forked children
            )
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.proc.poll() is None and not _udp_port_bound(self.port):
                time.sleep(0.01)
            if self.proc.poll() is None and _udp_port_bound(self.port):
                return
            _stop(self.proc, group=True)
            failures.append(f"port {self.port}: exit code {self.proc.returncode}")
        raise AssertionError(f"in.tftpd did not start: {failures}{self.diagnostics()}")

    def stderr(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def diagnostics(self) -> str:
        if self.proc is None:
            state = "not started"
        else:
            state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"\nin.tftpd ({state}): {' '.join(self.argv)}\n--- its output\n{self.stderr()}"

    def close(self) -> None:
        if self.proc is not None:
            _stop(self.proc, group=True)
        self._log.close()


# --------------------------------------------------------------------------- clients
class TftpHpa:
    """The tftp-hpa client.  It exits 0 even when the transfer failed: judge by the files, not the exit code.

    tftp-hpa 5.2's client sends plain RFC 1350 requests: it has no blksize/tsize/timeout options at all."""

    def __init__(self) -> None:
        self.binary = require_binary("tftp")

    def argv(self, host: str, port: int, *command: str, mode: str = "binary") -> list[str]:
        family = ["-6"] if ":" in host else ["-4"]
        return [self.binary, *family, "-v", "-m", mode, host, str(port), "-c", *command]

    def __call__(self, cwd: Path, host: str, port: int, *command: str, mode: str = "binary", timeout: float = 20):
        return run(self.argv(host, port, *command, mode=mode), cwd=cwd, timeout=timeout)


class Curl:
    """curl's TFTP client (libcurl): asks blksize 512 and tsize by default; --tftp-blksize, --tftp-no-options."""

    def __init__(self) -> None:
        self.binary = require_binary("curl")

    @staticmethod
    def url(host: str, port: int, name: str) -> str:
        where = f"[{host}]" if ":" in host else host
        return f"tftp://{where}:{port}/{name}"

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "-sS", "--max-time", "20", *args]

    def __call__(self, cwd: Path, *args: str, timeout: float = 25):
        return run(self.argv(*args), cwd=cwd, timeout=timeout)
