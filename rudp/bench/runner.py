"""Run one transfer (or one fairness pair) through the network lab and measure it.

Theory of operation.  The lab (``rudp.lab``) joins namespace a (the sender, ADDR_A) and namespace b (the receiver,
ADDR_B) by a relay that applies rudp's impairment model to every IP packet.  For each run:

1. the link is set for the scenario (``set_link``: rate, one-way delay = RTT / 2, random loss, seed);
2. the receiver starts in b (rudp-recv, the TCP peer, or curl as a TFTP client of in.tftpd running in a) and the
   counters are reset just before the sender starts, so they hold this run's packets only;
3. the run ends when the transfer does, or at the cap (``Plan.timeout_for``): then the receive directory's size
   is what arrived (every receiver here writes in order), the run is "capped" and its goodput is those bytes over
   the time since the sender was launched (start-up included: a capped run slightly understates its rate);
4. a finished copy is checked by size and SHA-256; wire bytes are the IP bytes offered to the link, both ways.

Completion time is each tool's own measure of the transfer: the TCP peer's connect -> receiver closed the file
(CLOCK_MONOTONIC is one clock across namespaces), rudp-send's ``seconds`` (request -> final ACK) and curl's
``time_total``.  TCP retransmissions are ns a's ``TcpRetransSegs`` before and after (``nstat``); rudp's come
from ``rudp-send --json``; tftpd-hpa does not report its own.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rudp.bench.children import Child, ChildTimeout, last_json
from rudp.bench.matrix import TCP_CC, Fairness, Job
from rudp.bench.results import CAPPED, FAILED, OK, FairnessResult, Measurement

__all__ = ["LabRunner", "dir_bytes", "sha256_file", "make_file", "TFTPD_SEARCH"]

TFTPD_SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/local/sbin"])
TFTP_BLKSIZE = 1468  # one Ethernet-sized datagram: 1468 + 4 (TFTP) + 8 (UDP) + 20 (IPv4) = 1500
SAMPLE = 0.1  # seconds between checks of a running transfer


def make_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path`` and return their SHA-256.  The file is synced before this returns:
    otherwise the kernel writes it back ~30 s later (``vm.dirty_expire_centisecs``), in the middle of whatever
    is being measured then, on CPUs the measured transfers need."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
        f.flush()
        os.fsync(f.fileno())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def dir_bytes(directory: Path) -> int:
    """Bytes in the regular files of ``directory`` (rudp-recv's hidden temporary file included)."""
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue  # renamed or removed under us
    except OSError:
        pass
    return total


class LabRunner:
    """Measures jobs through ``lab``; source files live in ``workdir`` (made once per size, SHA-256 kept)."""

    def __init__(self, lab: Any, workdir: Path, *, seed: int = 1, log: Any = None) -> None:
        from rudp.lab import ADDR_A, ADDR_B, LinkSpec  # the lab is only needed when runs are real

        self.lab, self.workdir, self.seed = lab, Path(workdir), seed
        self.addr_a, self.addr_b, self._link_spec = ADDR_A, ADDR_B, LinkSpec
        self.bin = Path(sys.executable).parent
        self.sources: dict[int, tuple[Path, str]] = {}
        self.log = log or (lambda text: None)
        self.tftpd = shutil.which("in.tftpd", path=TFTPD_SEARCH)
        self.curl = shutil.which("curl")
        self._runs = 0
        (self.workdir / "src").mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ helpers
    def source(self, size: int) -> tuple[Path, str]:
        if size not in self.sources:
            path = self.workdir / "src" / f"file-{size}.bin"
            self.sources[size] = (path, make_file(path, size))
        return self.sources[size]

    def _fresh_dir(self) -> Path:
        self._runs += 1
        path = self.workdir / f"rcv-{self._runs}"
        path.mkdir()
        os.chmod(path, 0o777)
        return path

    def set_link(self, rate: float | None, rtt: float, loss: float) -> None:
        self.lab.set_link(self._link_spec(rate=rate, delay=rtt / 2, loss=loss, seed=self.seed))

    def _child(self, side: str, name: str, argv: list[Any]) -> Child:
        return Child(name, functools.partial(self.lab.popen, side, [str(a) for a in argv]))

    def _tcp_retrans(self) -> int | None:
        argv = self.lab.command("a", ["nstat", "-asz", "TcpRetransSegs"])
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        for line in out.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "TcpRetransSegs":
                return int(fields[1])
        return None

    def skip_reason(self, protocol: str) -> str | None:
        if protocol == "tftp-hpa":
            if self.tftpd is None:
                return "in.tftpd is not installed (apt-get install tftpd-hpa)"
            if self.curl is None:
                return "curl is not installed (apt-get install curl)"
        return None

    # ------------------------------------------------------------------ one job
    def run(self, job: Job, timeout: float) -> Measurement:
        m = Measurement(job.protocol, job.scenario, job.repeat)
        path, sha = self.source(job.scenario.size)
        rcv = self._fresh_dir()
        try:
            if job.protocol in TCP_CC:
                self._tcp(m, path, rcv, TCP_CC[job.protocol], timeout)
            elif job.protocol in ("rudp", "rudp-lockstep"):
                self._rudp(m, path, rcv, job.protocol == "rudp-lockstep", timeout)
            elif job.protocol == "tftp-hpa":
                self._tftp(m, path, rcv, timeout)
            else:
                raise ValueError(f"unknown protocol {job.protocol}")
            if m.status == OK:
                self._verify(m, rcv / path.name, job.scenario.size, sha)
        except ChildTimeout as exc:
            m.status, m.error = FAILED, str(exc)
        finally:
            shutil.rmtree(rcv, ignore_errors=True)
        return m

    def _verify(self, m: Measurement, copy: Path, size: int, sha: str) -> None:
        if not copy.exists():
            m.status, m.error = FAILED, "no file received"
        elif copy.stat().st_size != size:
            m.status, m.error = FAILED, f"received {copy.stat().st_size} bytes, not {size}"
        elif sha256_file(copy) != sha:
            m.status, m.error = FAILED, "SHA-256 of the copy does not match"
        else:
            m.bytes = size

    def _finish_counters(self, m: Measurement) -> None:
        counters = self.lab.counters()
        m.counters = counters
        m.wire_bytes = sum(c.get("bytes_offered", 0) for c in counters.values())

    def _cap(self, m: Measurement, rcv: Path, t0: float) -> None:
        m.bytes = dir_bytes(rcv)
        m.seconds = time.monotonic() - t0
        m.status = CAPPED

    def _tcp(self, m: Measurement, path: Path, rcv: Path, cc: str, timeout: float) -> None:
        receiver = sender = None
        try:
            receiver = self._child(
                "b",
                "TCP receiver",
                [sys.executable, "-m", "rudp.bench.tcp_peer", "recv", self.addr_b, rcv, path.name],
            )
            port = int(_json_line(receiver.wait_line(15))["port"])
            before = self._tcp_retrans()
            self.lab.reset_counters()
            t0 = time.monotonic()
            sender = self._child(
                "a",
                "TCP sender",
                [sys.executable, "-m", "rudp.bench.tcp_peer", "send", path, self.addr_b, port, cc],
            )
            code = receiver.wait(timeout)
            if code is None:
                self._cap(m, rcv, t0)
            elif code != 0:
                m.error = f"TCP receiver exit code {code}: {receiver.stderr_tail()}"
            else:
                done = last_json(receiver.out) or {}
                sender.wait(5)
                start = last_json(sender.out) or {}
                m.info["cc"] = start.get("cc")
                if "t_connect" in start and "t_closed" in done:
                    m.status, m.seconds = OK, float(done["t_closed"]) - float(start["t_connect"])
                else:
                    m.error = f"TCP sender reported nothing: {sender.stderr_tail()}"
            sender.kill()
            receiver.kill()
            self._finish_counters(m)
            after = self._tcp_retrans()
            if before is not None and after is not None:
                m.retransmissions = after - before
        finally:
            for child in (sender, receiver):
                if child is not None:
                    child.kill()

    def _rudp(self, m: Measurement, path: Path, rcv: Path, lockstep: bool, timeout: float) -> None:
        receiver = sender = None
        try:
            receiver = self._child(
                "b",
                "rudp-recv",
                [
                    self.bin / "rudp-recv",
                    "--once",
                    "--json",
                    "-q",
                    "--dir",
                    rcv,
                    "--port",
                    "0",
                    "--bind",
                    self.addr_b,
                ],
            )
            port = int(_json_line(receiver.wait_line(15))["port"])
            argv: list[Any] = [self.bin / "rudp-send", path, self.addr_b, "--port", port, "--json", "-q"]
            if lockstep:
                argv += ["--windowsize", "1", "--blksize", "512"]
            self.lab.reset_counters()
            t0 = time.monotonic()
            sender = self._child("a", "rudp-send", argv)
            code = sender.wait(timeout)
            if code is None:
                self._cap(m, rcv, t0)
                sender.signal(signal.SIGTERM)  # rudp-send still prints its JSON record (retransmissions so far)
                sender.wait(3)
            report = last_json(sender.out) or {}
            if m.status == CAPPED and isinstance(report.get("bytes"), int):
                # rudp-recv buffers its writes (1 MiB), so the directory lags; rudp-send's record counts the
                # bytes the receiver acknowledged, i.e. had received in order, by the cap.
                m.bytes = max(m.bytes, report["bytes"])
            m.retransmissions = report.get("retransmissions")
            m.info.update({k: report.get(k) for k in ("blksize", "windowsize") if k in report})
            if code == 0 and report.get("ok", True) and "seconds" in report:
                receiver.wait(10)  # the file is under its final name once rudp-recv has committed it
                m.status, m.seconds = OK, float(report["seconds"])
            elif code is not None:
                m.error = report.get("error") or f"rudp-send exit code {code}: {sender.stderr_tail()}"
            self._finish_counters(m)
        finally:
            for child in (sender, receiver):
                if child is not None:
                    child.kill()

    def _tftp(self, m: Measurement, path: Path, rcv: Path, timeout: float) -> None:
        server = client = None
        try:
            server = self._child(
                "a",
                "in.tftpd",
                [self.tftpd, "-L", "-a", f"{self.addr_a}:69", "-s", "-p", "-u", "root", path.parent],
            )
            self._wait_udp_bound("a", 69, server)
            copy = rcv / path.name
            self.lab.reset_counters()
            t0 = time.monotonic()
            client = self._child(
                "b",
                "curl",
                [
                    self.curl, "-sS", "--max-time", int(timeout) + 60, "--tftp-blksize", TFTP_BLKSIZE,
                    "-o", copy, "-w", "%{time_total}\\n", f"tftp://{self.addr_a}:69/{path.name}",
                ],
            )  # fmt: skip
            code = client.wait(timeout)
            if code is None:
                self._cap(m, rcv, t0)
            elif code != 0:
                m.error = f"curl exit code {code}: {client.stderr_tail()}"
            else:
                try:
                    m.status, m.seconds = OK, float("".join(client.out).split()[-1])
                except (ValueError, IndexError):
                    m.error = f"curl printed no time: {''.join(client.out)[-200:]!r}"
            client.kill()
            self._finish_counters(m)
        finally:
            for child in (client, server):
                if child is not None:
                    child.kill()

    def _wait_udp_bound(self, side: str, port: int, server: Child, timeout: float = 5) -> None:
        argv = self.lab.command(side, ["ss", "-Hlun", f"sport = :{port}"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.popen.poll() is not None:
                raise ChildTimeout(f"in.tftpd exited ({server.popen.returncode}): {server.stderr_tail()}")
            if subprocess.run(argv, capture_output=True, text=True, timeout=5).stdout.strip():
                return
            time.sleep(0.02)
        raise ChildTimeout(f"in.tftpd did not bind UDP port {port} within {timeout:g} s")

    # ------------------------------------------------------------------ fairness
    def fairness(self, spec: Fairness, tcp: str) -> FairnessResult:
        """One rudp upload and one TCP upload started together; shares over the interval both were moving data."""
        result = FairnessResult(tcp, spec.rate, spec.rtt, spec.loss)
        self.set_link(spec.rate, spec.rtt, spec.loss)
        size = int(spec.rate / 8 * spec.duration * 1.25) + (1 << 20)  # more than either can move in the time
        path, _ = self.source(size)
        dirs = {"rudp": self._fresh_dir(), "tcp": self._fresh_dir()}
        children: list[Child] = []
        try:
            tcp_recv = self._child(
                "b", "TCP receiver",
                [sys.executable, "-m", "rudp.bench.tcp_peer", "recv", self.addr_b, dirs["tcp"], path.name],
            )  # fmt: skip
            children.append(tcp_recv)
            rudp_recv = self._child(
                "b", "rudp-recv",
                [self.bin / "rudp-recv", "--once", "--json", "-q", "--dir", dirs["rudp"], "--port", "0",
                 "--bind", self.addr_b],
            )  # fmt: skip
            children.append(rudp_recv)
            tcp_port = int(_json_line(tcp_recv.wait_line(15))["port"])
            rudp_port = int(_json_line(rudp_recv.wait_line(15))["port"])
            self.lab.reset_counters()
            tcp_argv = [
                sys.executable,
                "-m",
                "rudp.bench.tcp_peer",
                "send",
                path,
                self.addr_b,
                tcp_port,
                TCP_CC[tcp],
            ]
            rudp_argv = [self.bin / "rudp-send", path, self.addr_b, "--port", rudp_port, "--json", "-q"]
            senders = {
                "tcp": self._child("a", "TCP sender", tcp_argv),
                "rudp": self._child("a", "rudp-send", rudp_argv),
            }
            children += senders.values()
            start: tuple[float, dict[str, int]] | None = None
            hard_stop = time.monotonic() + spec.duration + 15  # start-up allowance
            while True:
                time.sleep(SAMPLE)
                now = time.monotonic()
                sizes = {flow: dir_bytes(d) for flow, d in dirs.items()}
                ended = [flow for flow, s in senders.items() if s.popen.poll() is not None]
                if start is None:
                    if all(sizes.values()):
                        start = (now, sizes)  # both are moving data: the overlap begins
                    elif ended or now > hard_stop:
                        result.error = f"the flows never overlapped ({', '.join(ended) or 'no data'})"
                        break
                    continue
                if ended or now - start[0] >= spec.duration:
                    result.interval = now - start[0]
                    result.bytes = {flow: sizes[flow] - start[1][flow] for flow in dirs}
                    break
        except ChildTimeout as exc:
            result.error = str(exc)
        finally:
            for child in children:
                child.kill()
            for d in dirs.values():
                shutil.rmtree(d, ignore_errors=True)
        return result


def _json_line(line: str) -> dict[str, Any]:
    import json

    try:
        value = json.loads(line)
    except ValueError:
        raise ChildTimeout(f"expected a JSON line, got {line.strip()[:200]!r}") from None
    if not isinstance(value, dict):
        raise ChildTimeout(f"expected a JSON object, got {line.strip()[:200]!r}")
    return value
