#!/usr/bin/env python3
"""Speed benchmark for issue 4: rudp against a TCP baseline and tftpd-hpa, clean and under random loss.

    python tools/bench_speed.py            # the issue's sizes (256 MiB clean, 64 MiB loss, 1 GiB RSS), 3 repeats
    python tools/bench_speed.py --quick    # small sizes, one repeat: well under a minute
    python tools/bench_speed.py --json raw.json

What each row times (the transfer itself, not process start-up):
* TCP baseline: a Python sender (``socket.sendfile``) and receiver (``recv_into`` one reused buffer, written to a
  file), each its own process; from the sender's ``connect`` to the receiver having closed the file
  (CLOCK_MONOTONIC is shared by every process, namespaces included).
* rudp upload rows: ``rudp-send --json``'s own ``seconds`` (request sent to final ACK received); the receiver is
  ``rudp-recv --once --json``.
* rudp 1468-byte block rows (clean group): the same upload with Ethernet-sized blocks, once with UDP GSO/GRO
  batching (rudp.net.batching) and once with RUDP_NO_GSO=1 in both processes; their goodput ratio is printed
  under the targets as INFO (no target).  A note per rudp row says how much was batched, or whether the kernel
  refused GSO (possible on the veth rows, whose offloads are off) and rudp fell back to one datagram per call.
* curl rows (tftpd-hpa and rudp-recv --serve as servers): curl's ``%{time_total}``, the same client both times.
* Loss rows run in two network namespaces joined by a veth pair (see benchlib/netlab.py): nftables drops N % of
  the UDP and TCP packets arriving in each namespace, so both directions lose N %; the measured drop fraction is
  reported.  Root only; without root those rows are skipped with a line saying so.
* Receiver memory: the peak RSS (``ru_maxrss`` from wait4, cross-checked by polling /proc) of ``rudp-recv``
  receiving a ``--size-rss`` upload.

Between runs the copy is deleted and the file system synced, and the generated sources are synced once when
made, so no run pays for writeback or deletions of another (``clear_rcv``, ``make_file``); the benchmark waits
for its children on pidfds, so it takes no CPU from the two that a rudp transfer keeps busy.

Every received file is checked by size and SHA-256; a wrong copy makes its row FAILED (not timed).  Targets are
marked PASS/FAIL, but the exit status is 0 unless the benchmark itself broke: this is evidence, not a test.
MB/s means 10**6 bytes per second, as rudp's own reports; sizes take binary suffixes (16M = 16 MiB).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import netlab, procs  # noqa: E402

from rudp.bench.runner import make_file  # noqa: E402  (the same source files as rudp-bench)

TCP_PEER = ["-m", "rudp.bench.tcp_peer"]  # the same TCP baseline as rudp-bench's
BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"
ROW_GSO_ON = "rudp 1468-byte blocks, GSO/GRO"
ROW_GSO_OFF = "rudp 1468-byte blocks, RUDP_NO_GSO=1"
ROW_TCP = "TCP loopback"
ROW_NO_DIGEST = "rudp --digest none loopback"
TARGETS = {  # issue 4
    "rudp_vs_tcp": 0.80,
    "serve_vs_tftpd": 0.80,
    "loss1_vs_clean": 2.0,
    "loss5_vs_clean": 4.0,
    "rss_mib": 64.0,
}


class Interrupted(BaseException):
    """SIGTERM/SIGHUP: unwind through every ``finally`` like Ctrl-C does."""


# =========================================================================== measurements
@dataclass
class Run:
    row: str
    group: str
    size: int
    repeat: int
    ok: bool = False
    seconds: float | None = None
    error: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def mbps(self) -> float | None:
        return self.size / self.seconds / 1e6 if self.ok and self.seconds else None


def parse_size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1] if text and text[-1] in units else ""
    value = float(text[: len(text) - len(unit)])
    if value <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return int(value * units[unit])


def human(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % (scale // 16) == 0:
            return f"{n / scale:g} {unit}"
    return f"{n} B"


def verify(path: Path, size: int, sha: str) -> str | None:
    """None if ``path`` is an exact copy, else what is wrong with it."""
    if not path.exists():
        return "no file received"
    got = path.stat().st_size
    if got != size:
        return f"received {got} bytes, not {size}"
    with open(path, "rb") as f:
        if hashlib.file_digest(f, "sha256").hexdigest() != sha:
            return "SHA-256 differs"
    return None


def udp_rcvbuf_errors(ns: list) -> int:
    """UDP RcvbufErrors of the namespace (``ns`` is an ``ip netns exec`` prefix, empty for ours): datagrams the
    kernel dropped because a socket's receive buffer was full.  Counts every UDP socket in the namespace."""
    if ns:
        text = subprocess.run([*ns, "cat", "/proc/net/snmp"], capture_output=True, text=True, timeout=10).stdout
    else:
        text = Path("/proc/net/snmp").read_text()
    udp = [line.split() for line in text.splitlines() if line.startswith("Udp:")]
    if len(udp) < 2 or "RcvbufErrors" not in udp[0]:
        return 0
    return int(udp[1][udp[0].index("RcvbufErrors")])


def last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {}


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.src = work / "src"
        self.rcv = work / "rcv"
        self.src.mkdir()
        self.rcv.mkdir()
        self.files: dict[int, tuple[Path, str]] = {}
        self.runs: list[Run] = []
        self.skipped: dict[str, str] = {}
        self.notes: list[str] = []
        self.lab: netlab.Lab | None = None

    # ------------------------------------------------------------------ helpers
    def source(self, size: int) -> tuple[Path, str]:
        if size not in self.files:
            path = self.src / f"bench-{size}.bin"
            self.files[size] = (path, make_file(path, size))
        return self.files[size]

    def timeout_for(self, size: int) -> float:
        if self.args.transfer_timeout:
            return self.args.transfer_timeout
        return 20 + size / 2e6  # nothing here should be slower than 2 MB/s; slower rows end as FAILED

    def clear_rcv(self) -> None:
        """Delete the received copies, then sync: the file system's deferred work for a deleted 256 MiB file (its
        journal commit, and the discards of a ``discard`` mount) otherwise lands in the next timed run.  After
        the delete, the sync has no data to write, only that bookkeeping."""
        for p in self.rcv.iterdir():
            p.unlink()
        os.sync()

    def record(self, run: Run) -> Run:
        self.runs.append(run)
        self.clear_rcv()
        mark = f"{run.mbps:8.1f} MB/s" if run.ok else f"FAILED: {run.error}"
        extra = "".join(
            f" {k}={v}" for k, v in run.info.items() if k in ("retransmissions", "rcvbuf_drops", "drop_percent")
        )
        print(f"  [{run.repeat + 1}] {run.row:<34} {mark}{extra}", flush=True)
        return run

    def end_receiver(
        self, receiver: procs.Proc, timeout: float, *, poll_rss: bool = False
    ) -> tuple[dict, procs.Finished]:
        """rudp-recv's transfer report, then its end: it prints the report when the transfer is done and exits
        only after dallying (up to twice its timeout) for a lost final ACK; the sender already has that ACK,
        so the benchmark cuts the dally short with SIGINT instead of waiting."""
        report: dict = {}
        deadline = time.monotonic() + timeout
        while not report:
            line = receiver.wait_line(max(0.1, deadline - time.monotonic()))
            parsed = last_json(line)
            if parsed.get("event") == "transfer":
                report = parsed
        grace = time.monotonic() + 0.2
        while receiver.popen.poll() is None and time.monotonic() < grace:
            time.sleep(0.01)
        hwm = procs.status_kib(receiver.pid).get("VmHWM", 0) if poll_rss else 0  # a high-water mark: read once
        receiver.signal(signal.SIGINT)
        done = receiver.finish(10, poll_rss=poll_rss)
        done.polled_hwm_kib = max(done.polled_hwm_kib, hwm)
        return report, done

    def note_batching(self, run: Run) -> None:
        """A note (once per row) on what UDP GSO/GRO did: batched, off, or refused by the kernel.  The veth rows
        turn every offload off: older kernels then refuse a GSO send (EIO) and rudp sends one datagram at a time;
        newer ones (seen on 6.18) accept it and segment in software before the veth, so the loss rule still sees
        single datagrams (``netlab.Lab.check_segmentation``)."""
        sender = run.info.get("sender", {}).get("stats", {})
        receiver = run.info.get("receiver", {}).get("stats", {})
        if not run.ok or "gso_sends" not in sender or any(n.startswith(f"{run.row}: ") for n in self.notes):
            return
        blocks = sender.get("blocks") or 0
        if sender.get("gso_refused"):
            how = f"GSO refused by the kernel ({sender['gso_refused']}): sent one datagram per call"
        elif sender["gso_sends"]:
            how = (
                f"GSO sent {sender['gso_datagrams']} of {blocks} DATA in {sender['gso_sends']} calls"
                f" (~{sender['gso_datagrams'] / sender['gso_sends']:.1f} each)"
            )
        else:
            how = "no GSO sends"
        if receiver.get("gro_reads"):
            how += f"; GRO read {receiver['gro_datagrams']} in {receiver['gro_reads']} coalesced buffers"
        else:
            how += "; no GRO-coalesced reads"
        self.notes.append(f"{run.row}: {how}")

    def _finish_copy(self, run: Run, got: Path, sha: str) -> None:
        problem = verify(got, run.size, sha)
        if problem:
            run.ok, run.seconds, run.error = False, None, f"bad copy: {problem}"

    # ------------------------------------------------------------------ TCP
    def tcp(
        self, row: str, group: str, size: int, repeat: int, ns: tuple[list, list] = ([], []), addr: str = LOOPBACK
    ) -> Run:
        run = Run(row, group, size, repeat)
        path, sha = self.source(size)
        send_ns, recv_ns = ns
        timeout = self.timeout_for(size)
        receiver = sender = None
        try:
            receiver = procs.spawn([*recv_ns, sys.executable, *TCP_PEER, "recv", addr, self.rcv, "copy"])
            port = json.loads(receiver.wait_line(15))["port"]
            argv = [*send_ns, sys.executable, *TCP_PEER, "send", path, procs.check_destination(addr), port]
            if self.args.tcp_cc:
                argv.append(self.args.tcp_cc)
            sender = procs.spawn(argv)
            s = sender.finish(timeout)
            r = receiver.finish(15)
            if s.returncode or r.returncode:
                run.error = (
                    f"exit codes sender {s.returncode}, receiver {r.returncode}: {(s.stderr + r.stderr)[-300:]}"
                )
            else:
                sj, rj = last_json(s.stdout), last_json(r.stdout)
                run.ok, run.seconds = True, rj["t_closed"] - sj["t_connect"]
                run.info = {"cc": sj.get("cc"), "sender_seconds": sj["t_sent"] - sj["t_connect"]}
                self._finish_copy(run, self.rcv / "copy", sha)
        except (procs.ProcTimeout, ValueError, KeyError) as exc:
            run.error = str(exc)
        finally:
            for p in (sender, receiver):
                if p is not None:
                    p.kill()
        return run

    # ------------------------------------------------------------------ rudp upload
    def rudp(
        self,
        row: str,
        group: str,
        size: int,
        repeat: int,
        *,
        send_opts: tuple[str, ...] = (),
        ns: tuple[list, list] = ([], []),
        addr: str = LOOPBACK,
        poll_rss: bool = False,
        env: dict[str, str] | None = None,
    ) -> Run:
        run = Run(row, group, size, repeat)
        path, sha = self.source(size)
        send_ns, recv_ns = ns
        timeout = self.timeout_for(size)
        receiver = sender = None
        overflow_before = udp_rcvbuf_errors(recv_ns)
        try:
            receiver = procs.spawn(
                [
                    *recv_ns,
                    BIN / "rudp-recv",
                    "--port",
                    "0",
                    "--bind",
                    addr,
                    "--dir",
                    self.rcv,
                    "--once",
                    "--json",
                    "-q",
                ],
                env=env,
            )
            port = json.loads(receiver.wait_line(15))["port"]
            sender = procs.spawn(
                [
                    *send_ns,
                    BIN / "rudp-send",
                    path,
                    procs.check_destination(addr),
                    "--port",
                    port,
                    "--name",
                    "copy",
                    "--json",
                    "-q",
                    *send_opts,
                ],
                env=env,
            )
            s = sender.finish(timeout)
            rj, r = self.end_receiver(receiver, 15, poll_rss=poll_rss)
            sj = last_json(s.stdout)
            run.info = {
                "retransmissions": sj.get("retransmissions"),
                "rcvbuf_drops": udp_rcvbuf_errors(recv_ns) - overflow_before,
                "sender": sj,
                "receiver": rj,
                "sender_wall": round(s.wall, 4),
                "sender_maxrss_kib": s.maxrss_kib,
                "receiver_maxrss_kib": r.maxrss_kib,
                "receiver_polled_hwm_kib": r.polled_hwm_kib,
            }
            if s.returncode or rj.get("exit_code") or not sj.get("ok", False):
                run.error = (
                    f"exit codes sender {s.returncode}, receiver {rj.get('exit_code')}: "
                    f"{sj.get('error') or (s.stderr + r.stderr)[-300:].strip()}"
                )
            else:
                run.ok, run.seconds = True, float(sj["seconds"])
                self._finish_copy(run, self.rcv / "copy", sha)
        except (procs.ProcTimeout, ValueError, KeyError) as exc:
            run.error = str(exc)
        finally:
            for p in (sender, receiver):
                if p is not None:
                    p.kill()
        return run

    # ------------------------------------------------------------------ curl downloads
    def curl(self, row: str, group: str, size: int, repeat: int, server: str) -> Run:
        run = Run(row, group, size, repeat)
        path, sha = self.source(size)
        serve_dir = self.work / "serve"
        serve_dir.mkdir(exist_ok=True)
        name = "served.bin"
        if not (serve_dir / name).exists():
            os.link(path, serve_dir / name) if path.stat().st_dev == serve_dir.stat().st_dev else shutil.copyfile(
                path, serve_dir / name
            )
        timeout = self.timeout_for(size)
        srv = client = None
        try:
            if server == "tftpd":
                port = _free_udp_port()
                srv = procs.spawn(
                    [
                        shutil.which("in.tftpd", path=_SBIN),
                        "-L",
                        "-a",
                        f"{LOOPBACK}:{port}",
                        "-s",
                        "-p",
                        "-u",
                        "root",
                        serve_dir,
                    ]
                )
                _wait_udp_bound(port, srv)
            else:
                srv = procs.spawn(
                    [
                        BIN / "rudp-recv",
                        "--serve",
                        "--once",
                        "--port",
                        "0",
                        "--bind",
                        LOOPBACK,
                        "--dir",
                        serve_dir,
                        "--json",
                        "-q",
                    ]
                )
                port = json.loads(srv.wait_line(15))["port"]
            client = procs.spawn(
                [
                    shutil.which("curl"),
                    "-sS",
                    "--max-time",
                    str(int(timeout)),
                    "--tftp-blksize",
                    "512",
                    "-o",
                    self.rcv / "copy",
                    "-w",
                    "%{time_total}\\n",
                    f"tftp://{procs.check_destination(LOOPBACK)}:{port}/{name}",
                ]
            )
            c = client.finish(timeout + 5)
            if c.returncode:
                run.error = f"curl exit code {c.returncode}: {c.stderr.strip()[-300:]}"
            else:
                run.ok, run.seconds = True, float(c.stdout.strip().splitlines()[-1])
                if server != "tftpd":
                    rj, _ = self.end_receiver(srv, 15)
                    run.info = {"server": rj, "retransmissions": rj.get("retransmissions")}
                self._finish_copy(run, self.rcv / "copy", sha)
        except (procs.ProcTimeout, ValueError, KeyError, IndexError) as exc:
            run.error = str(exc)
        finally:
            for p in (client, srv):
                if p is not None:
                    p.kill()
        return run

    # ------------------------------------------------------------------ groups
    def clean(self) -> None:
        size = self.args.size
        print(f"\n== clean loopback ({LOOPBACK}), {human(size)}", flush=True)
        for i in range(self.args.repeat):
            self.record(self.tcp(ROW_TCP, "clean", size, i))
            self.record(self.rudp("rudp defaults loopback", "clean", size, i))
            # What the end-to-end check costs (Security): the same upload with no digest.
            self.record(self.rudp(ROW_NO_DIGEST, "clean", size, i, send_opts=("--digest", "none")))
            # Ethernet-sized blocks, where UDP GSO/GRO batching (rudp.net.batching) pays; RUDP_NO_GSO=1 turns it
            # off in both rudp processes, so the two rows differ only in the system calls.
            for row, switch in ((ROW_GSO_ON, "0"), (ROW_GSO_OFF, "1")):
                run = self.rudp(
                    row, "clean", size, i, send_opts=("--blksize", "1468"), env={"RUDP_NO_GSO": switch}
                )
                self.record(run)
                self.note_batching(run)

    def lockstep(self) -> None:
        size = self.args.lockstep_size
        print(f"\n== lockstep (windowsize 1, blksize 512) on loopback, {human(size)}", flush=True)
        have_tftpd = shutil.which("in.tftpd", path=_SBIN) is not None and os.geteuid() == 0
        have_curl = shutil.which("curl") is not None
        if not have_curl:
            self.skipped["curl rows"] = "curl is not installed (apt-get install curl)"
        elif not have_tftpd:
            self.skipped["tftpd-hpa + curl"] = (
                "in.tftpd is not installed (apt-get install tftpd-hpa)"
                if os.geteuid() == 0
                else "in.tftpd needs root (it chroots)"
            )
        for i in range(self.args.repeat):
            self.record(
                self.rudp(
                    "rudp lockstep upload",
                    "lockstep",
                    size,
                    i,
                    send_opts=("--windowsize", "1", "--blksize", "512"),
                )
            )
            if have_curl and have_tftpd:
                self.record(self.curl("tftpd-hpa + curl get", "lockstep", size, i, "tftpd"))
            if have_curl:
                self.record(self.curl("rudp-recv --serve + curl get", "lockstep", size, i, "rudp"))

    def loss(self) -> None:
        size = self.args.loss_size
        print(f"\n== veth between two namespaces, random loss both directions, {human(size)}", flush=True)
        netlab.remove_stale()
        self.lab = lab = netlab.Lab()
        try:
            lab.up()
        except netlab.LabUnavailable as exc:
            self.skipped["loss rows"] = str(exc)
            print(f"  SKIPPED loss rows: {exc}", flush=True)
            return
        ok, how = lab.check_segmentation()
        self.notes.append(
            f"loss lab: {how} ({'per-datagram loss' if ok else 'GSO NOT segmented: loss per burst'})"
        )
        self.notes.extend(f"loss lab: {n}" for n in lab.notes)
        ns = (lab.prefix(lab.ns_a), lab.prefix(lab.ns_b))
        for percent in self.args.loss:
            lab.set_loss(percent)
            for i in range(self.args.repeat):
                for kind in ("TCP", "rudp defaults"):
                    lab.reset_counters()
                    row = f"{kind} veth {percent}% loss"
                    if kind == "TCP":
                        run = self.tcp(row, "loss", size, i, ns=ns, addr=netlab.ADDR_B)
                    else:
                        run = self.rudp(row, "loss", size, i, ns=ns, addr=netlab.ADDR_B)
                    c = lab.counters()
                    run.info["loss_percent"] = percent
                    run.info["packets_seen"] = c["seen"]
                    run.info["packets_dropped"] = c["dropped"]
                    run.info["drop_percent"] = round(100 * c["dropped"] / c["seen"], 2) if c["seen"] else None
                    self.record(run)
                    if kind != "TCP":
                        self.note_batching(run)
        lab.down()

    def rss(self) -> None:
        size = self.args.size_rss
        print(f"\n== receiver memory: rudp-recv receiving {human(size)} on loopback", flush=True)
        self.record(self.rudp(f"rudp-recv peak RSS ({human(size)})", "rss", size, 0, poll_rss=True))


_SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/local/sbin"])


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _wait_udp_bound(port: int, proc: procs.Proc, timeout: float = 5) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise procs.ProcTimeout(f"in.tftpd exited with {proc.popen.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                return  # taken: tftpd is listening
        time.sleep(0.01)
    raise procs.ProcTimeout(f"in.tftpd did not bind port {port}")


# =========================================================================== report
@dataclass
class Summary:
    row: str
    group: str
    size: int
    runs: list[Run]

    @property
    def good(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    def median(self, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self.good]
        return statistics.median(values) if values else None


def summarise(runs: list[Run]) -> dict[str, Summary]:
    out: dict[str, Summary] = {}
    for run in runs:
        out.setdefault(run.row, Summary(run.row, run.group, run.size, [])).runs.append(run)
    return out


def table(summaries: dict[str, Summary]) -> list[str]:
    lines = [f"{'row':<36} {'size':>9} {'MB/s median (min-max)':>27} {'seconds':>9} {'ok':>5}  notes", "-" * 110]
    for s in summaries.values():
        n_ok, n = len(s.good), len(s.runs)
        if s.group == "rss":
            run = s.runs[0]
            if run.ok:
                mib = run.info["receiver_maxrss_kib"] / 1024
                polled = run.info.get("receiver_polled_hwm_kib", 0) / 1024
                lines.append(
                    f"{s.row:<36} {human(s.size):>9} {'peak RSS ' + format(mib, '.1f') + ' MiB':>27} "
                    f"{run.seconds:9.3f} {n_ok:>2}/{n:<2}  VmHWM polled {polled:.1f} MiB, "
                    f"{run.mbps:.1f} MB/s"
                )
            else:
                lines.append(
                    f"{s.row:<36} {human(s.size):>9} {'FAILED':>27} {'':>9} {n_ok:>2}/{n:<2}  {run.error}"
                )
            continue
        if not s.good:
            lines.append(
                f"{s.row:<36} {human(s.size):>9} {'FAILED':>27} {'':>9} {n_ok:>2}/{n:<2}  {s.runs[0].error}"
            )
            continue
        speeds = [r.mbps for r in s.good if r.mbps is not None]
        cell = f"{statistics.median(speeds):.1f} ({min(speeds):.1f}-{max(speeds):.1f})"
        notes = []
        retrans: list[int] = [
            r.info["retransmissions"] for r in s.good if r.info.get("retransmissions") is not None
        ]
        if retrans:
            notes.append(f"retransmissions {int(statistics.median(retrans))}")
        overflow = [r.info["rcvbuf_drops"] for r in s.good if r.info.get("rcvbuf_drops") is not None]
        if overflow:
            notes.append(f"rcvbuf drops {int(statistics.median(overflow))}")
        drops = [r.info["drop_percent"] for r in s.good if r.info.get("drop_percent") is not None]
        if drops:
            notes.append(f"measured drop {statistics.median(drops):.2f}%")
        ccs: set[str] = {r.info["cc"] for r in s.good if r.info.get("cc")}
        if ccs:
            notes.append("cc " + ",".join(sorted(ccs)))
        if n_ok < n:
            notes.append(f"{n - n_ok} FAILED: {next(r.error for r in s.runs if not r.ok)}")
        lines.append(
            f"{s.row:<36} {human(s.size):>9} {cell:>27} {s.median('seconds'):9.3f} {n_ok:>2}/{n:<2}  "
            + "; ".join(notes)
        )
    return lines


def verdicts(summaries: dict[str, Summary], args: argparse.Namespace, skipped: dict[str, str]) -> list[dict]:
    def speed(row: str) -> float | None:
        s = summaries.get(row)
        return s.median("mbps") if s else None

    def secs(row: str) -> float | None:
        s = summaries.get(row)
        return s.median("seconds") if s else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    out = []

    def add(name: str, value: float | None, target: float, higher_is_better: bool, why_missing: str) -> None:
        if value is None:
            verdict = "N/A"
        elif higher_is_better:
            verdict = "PASS" if value >= target else "FAIL"
        else:
            verdict = "PASS" if value <= target else "FAIL"
        out.append(
            {
                "target": name,
                "value": value,
                "limit": target,
                "verdict": verdict,
                "why_missing": why_missing if value is None else None,
            }
        )

    add(
        "rudp defaults / TCP goodput, clean loopback",
        ratio(speed("rudp defaults loopback"), speed(ROW_TCP)),
        TARGETS["rudp_vs_tcp"],
        True,
        "a row FAILED or was not run",
    )
    add(
        "rudp-recv --serve + curl / tftpd-hpa + curl goodput, lockstep",
        ratio(speed("rudp-recv --serve + curl get"), speed("tftpd-hpa + curl get")),
        TARGETS["serve_vs_tftpd"],
        True,
        skipped.get("tftpd-hpa + curl") or skipped.get("curl rows") or "a row FAILED or was not run",
    )
    clean_loss = secs("rudp defaults veth 0% loss")
    for percent, key in ((1, "loss1_vs_clean"), (5, "loss5_vs_clean")):
        add(
            f"rudp time at {percent}% loss / at 0% loss (veth)",
            ratio(secs(f"rudp defaults veth {percent}% loss"), clean_loss),
            TARGETS[key],
            False,
            skipped.get("loss rows") or "a row FAILED or was not run",
        )
    rss = [s for s in summaries.values() if s.group == "rss" and s.good]
    add(
        f"rudp-recv peak RSS MiB receiving {human(args.size_rss)}",
        rss[0].good[0].info["receiver_maxrss_kib"] / 1024 if rss else None,
        TARGETS["rss_mib"],
        False,
        "the row FAILED or was not run",
    )
    return out


def information(summaries: dict[str, Summary]) -> list[dict]:
    """Ratios shown for information, with no target: what UDP GSO/GRO batching buys (issue 4's hot path), and
    how rudp without its end-to-end digest compares with TCP (what the check costs)."""

    def ratio(a: str, b: str) -> float | None:
        x, y = summaries.get(a), summaries.get(b)
        top, bottom = (x.median("mbps") if x else None), (y.median("mbps") if y else None)
        return top / bottom if top is not None and bottom else None

    return [
        {
            "info": "rudp 1468-byte blocks goodput: GSO/GRO on / off, clean loopback",
            "value": ratio(ROW_GSO_ON, ROW_GSO_OFF),
        },
        {"info": "rudp --digest none / TCP goodput, clean loopback", "value": ratio(ROW_NO_DIGEST, ROW_TCP)},
    ]


def info_lines(items: list[dict]) -> list[str]:
    return [
        f"{'INFO':<5} {v['info']:<62} {'n/a' if v['value'] is None else format(v['value'], '.2f'):>7}"
        for v in items
    ]


def verdict_lines(items: list[dict]) -> list[str]:
    lines = []
    for v in items:
        op = (
            ">=" if v["target"].endswith("goodput, clean loopback") or "goodput, lockstep" in v["target"] else "<="
        )
        value = "n/a" if v["value"] is None else f"{v['value']:.2f}"
        tail = f"  ({v['why_missing']})" if v["why_missing"] else ""
        lines.append(f"{v['verdict']:<5} {v['target']:<62} {value:>7}  (target {op} {v['limit']:g}){tail}")
    return lines


# =========================================================================== main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat (well under a minute)")
    p.add_argument("--repeat", type=int, help="runs per row; the table shows medians (default 3, --quick 1)")
    p.add_argument("--size", type=parse_size, help="clean loopback file size (default 256M, --quick 16M)")
    p.add_argument("--loss-size", type=parse_size, help="file size under loss (default 64M, --quick 4M)")
    p.add_argument("--lockstep-size", type=parse_size, help="lockstep and curl rows (default 8M, --quick 1M)")
    p.add_argument("--size-rss", type=parse_size, help="upload size for the RSS row (default 1G, --quick 64M)")
    p.add_argument("--loss", default="0,1,5", help="loss percentages, both directions (default 0,1,5)")
    p.add_argument("--skip", default="", help="comma list of groups to skip: clean,lockstep,loss,rss")
    p.add_argument("--tcp-cc", help="TCP congestion control for the baseline (default: the kernel's)")
    p.add_argument(
        "--transfer-timeout", type=float, help="seconds before a transfer is killed (default 20 + size at 2 MB/s)"
    )
    p.add_argument("--tmpdir", help="where to put the files (default /var/tmp, else the system temp dir)")
    p.add_argument("--json", metavar="FILE", help="write every raw measurement here")
    args = p.parse_args(argv)
    q = args.quick
    args.repeat = args.repeat or (1 if q else 3)
    args.size = args.size or parse_size("16M" if q else "256M")
    args.loss_size = args.loss_size or parse_size("4M" if q else "64M")
    args.lockstep_size = args.lockstep_size or parse_size("1M" if q else "8M")
    args.size_rss = args.size_rss or parse_size("64M" if q else "1G")
    args.loss = [int(x) for x in args.loss.split(",") if x.strip()]
    args.skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    unknown = args.skip - {"clean", "lockstep", "loss", "rss"}
    if unknown:
        p.error(f"unknown --skip groups: {', '.join(sorted(unknown))}")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name in ("rudp-send", "rudp-recv"):
        if not (BIN / name).exists():
            print(f"bench_speed: {BIN / name} is missing: pip install -e '.[test]' in this venv", file=sys.stderr)
            return 2
    base = args.tmpdir or ("/var/tmp" if os.path.isdir("/var/tmp") else tempfile.gettempdir())
    groups = [g for g in ("clean", "lockstep", "loss", "rss") if g not in args.skip]
    sizes = {"clean": args.size, "lockstep": args.lockstep_size, "loss": args.loss_size, "rss": args.size_rss}
    wanted = [sizes[g] for g in groups]
    need = sum(set(wanted)) * 2 + max(wanted, default=0) + (64 << 20)  # sources, serve links/copies, one copy
    free = shutil.disk_usage(base).free
    if free < need:
        print(
            f"bench_speed: {base} has {human(free)} free, the chosen sizes need about {human(need)}: "
            f"use --tmpdir or smaller sizes",
            file=sys.stderr,
        )
        return 2
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)

    work = Path(tempfile.mkdtemp(prefix="rudpbench-", dir=base))
    bench = Bench(args, work)
    started = time.monotonic()
    crashed = interrupted = False
    print(
        f"rudp speed benchmark: {platform.node()}, kernel {platform.release()}, {os.cpu_count()} cpus, "
        f"python {platform.python_version()}; files in {work}",
        flush=True,
    )
    print(
        f"repeat {args.repeat}; MB/s = 10^6 bytes/s; rudp rows time rudp-send's own 'seconds', TCP connect to "
        f"file closed, curl rows curl's time_total",
        flush=True,
    )
    try:
        if os.geteuid() != 0 and "loss" in groups:
            bench.skipped["loss rows"] = "not root: the loss rows need network namespaces"
            print(
                "NOTE: not running as root: the loss rows (veth + nftables in namespaces) are skipped", flush=True
            )
            groups.remove("loss")
        for group in groups:
            getattr(bench, group)()
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: cleaning up, results so far follow", flush=True)
    except Interrupted as exc:
        interrupted = True
        print(f"\ninterrupted ({exc}): cleaning up, results so far follow", flush=True)
    except Exception:
        crashed = True
        import traceback

        traceback.print_exc()
    finally:
        procs.kill_all()
        if bench.lab is not None:
            bench.lab.down()
        shutil.rmtree(work, ignore_errors=True)

    summaries = summarise(bench.runs)
    items = verdicts(summaries, args, bench.skipped)
    print(f"\n== results (medians of {args.repeat}; {time.monotonic() - started:.0f} s in all)")
    for line in table(summaries):
        print(line)
    for name, why in bench.skipped.items():
        print(f"SKIPPED {name}: {why}")
    for note in bench.notes:
        print(f"note: {note}")
    print("\n== issue 4 targets")
    for line in verdict_lines(items):
        print(line)
    info = information(summaries)
    for line in info_lines(info):
        print(line)
    if args.json:
        payload = {
            "host": platform.node(),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "args": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()},
            "runs": [asdict(r) | {"mbps": r.mbps} for r in bench.runs],
            "targets": items,
            "info": info,
            "skipped": bench.skipped,
            "notes": bench.notes,
            "interrupted": interrupted,
            "crashed": crashed,
        }
        Path(args.json).write_text(json.dumps(payload, indent=1, default=str) + "\n")
    if interrupted:
        return 130
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
