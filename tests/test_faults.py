"""Faults with real processes on loopback: disk full, permission denied, a peer killed or restarted mid-transfer.

Each test checks the three promises of the hardening issue (6): the peer hears the right TFTP ERROR or the client
fails with one line and its documented exit code (never a hang, never a traceback), nothing appears under a final
name unless complete, and rudp-recv keeps serving.  Timers are short (``--timeout 0.3``) so a test that waits for
a retry budget waits about a second.

A transfer is caught "mid-transfer" by waiting until its temporary file (``.rudp-part``) exists: the writer
creates it when the request is accepted, and a lockstep transfer of a few MiB in 512-byte blocks takes far longer
than the 20 ms poll.  Every kill test then checks that the transfer did fail, so a transfer that somehow finished
first fails the test instead of passing it.

Root-only cases (a tmpfs mount; dropping CAP_DAC_OVERRIDE so that root obeys file modes) skip with the reason, or
fail when ``RUDP_REQUIRE_ROOT=1``.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cliharness import RecvServer, assert_one_line_error, command, run, sha256, temp_files, wait_for
from peers import unavailable

from rudp.core.config import TransferConfig
from rudp.core.events import FailureKind, TransferFailed
from rudp.core.server import ReadServer
from rudp.net.driver import Transfer
from rudp.net.sockets import udp_socket
from rudp.wire.codec import encode
from rudp.wire.packets import Ack, Error, ErrorCode, ReadRequest

SEED = int(os.environ.get("RUDP_TEST_SEED", "20261129"))
SERVER_TIMERS = ["--timeout", "0.3", "--fixed-timeout", "--retries", "2"]  # gives up ~1 s after the peer dies
CLIENT_TIMERS = ["--timeout", "0.3", "--fixed-timeout", "--retries", "3"]
SLOW = ["--blksize", "512", "--windowsize", "1", "--no-options"]  # lockstep, so a few MiB take a while


def make_file(path: Path, size: int) -> Path:
    print(f"seed {SEED}: {path.name} of {size} bytes")
    path.write_bytes(random.Random(SEED + size).randbytes(size))
    return path


def require_root(reason: str) -> None:
    if os.geteuid() != 0:
        unavailable(reason, "RUDP_REQUIRE_ROOT")


@pytest.fixture
def servers() -> Iterator[list[RecvServer]]:
    started: list[RecvServer] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                s.proc.send_signal(signal.SIGCONT)
        s.stop()


def recv(servers: list[RecvServer], directory: Path, *extra: str) -> RecvServer:
    s = RecvServer(directory, *SERVER_TIMERS, *extra)
    servers.append(s)
    return s


def spawn(name: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [command(name), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen, timeout: float = 15) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args[0]} hung: still running after {timeout} s; stderr: {err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def started(directory: Path, proc: subprocess.Popen) -> None:
    """Wait until a transfer into ``directory`` is under way: its temporary file holds bytes.  (The file alone is
    not enough: a client creates it before its request has even reached the server.)"""

    def receiving() -> bool:
        sizes = []
        for name in temp_files(directory):
            try:
                sizes.append((directory / name).stat().st_size)
            except FileNotFoundError:
                pass
        return any(sizes)

    wait_for(lambda: receiving() or proc.poll() is not None, timeout=10, what="a temporary file with bytes")
    assert proc.poll() is None, f"the transfer ended before it could be interrupted: {proc.stderr.read()}"


def upload_ok(srv: RecvServer, src: Path, name: str) -> None:
    proc = run("rudp-send", src, "127.0.0.1", "--port", srv.port, "--name", name, *CLIENT_TIMERS)
    assert proc.returncode == 0, proc.stderr
    assert sha256(srv.dir / name) == sha256(src)


# ---------------------------------------------------------------------------------------------- disk full


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    require_root("mounting a small tmpfs needs root")
    mountpoint.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        unavailable(f"cannot mount tmpfs: {proc.stderr.strip()}", "RUDP_REQUIRE_ROOT")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=True)  # lazy: a stuck process cannot pin it


def test_disk_full_upload_is_error_3_and_the_server_keeps_serving(tmp_path: Path, servers) -> None:
    big = make_file(tmp_path / "big.bin", 2 * 1024 * 1024)
    small = make_file(tmp_path / "small.bin", 3000)
    with tmpfs(tmp_path / "mnt", "1m") as mnt:
        srv = recv(servers, mnt)
        for opts in ([], ["--no-options"]):  # with tsize and without
            proc = run("rudp-send", big, "127.0.0.1", "--port", srv.port, *opts, *CLIENT_TIMERS)
            assert_one_line_error(proc, 4, "ERROR 3")
            assert "disk full" in proc.stderr
            event = srv.next_event()
            assert not event["ok"] and event["exit_code"] == 3, event
            assert os.listdir(mnt) == []  # no temp file, no partial file: the space is free again
        upload_ok(srv, small, "small.bin")
        srv.stop()


def test_disk_full_download_is_exit_3_and_leaves_nothing(tmp_path: Path, servers) -> None:
    served = tmp_path / "served"
    served.mkdir()
    make_file(served / "big.bin", 2 * 1024 * 1024)
    srv = recv(servers, served, "--serve")
    with tmpfs(tmp_path / "mnt", "1m") as mnt:
        proc = run("rudp-get", "127.0.0.1", "big.bin", "-o", mnt / "big.bin", "--port", srv.port, *CLIENT_TIMERS)
        assert_one_line_error(proc, 3, "disk full")
        assert os.listdir(mnt) == []
        assert not srv.next_event()["ok"]


# ---------------------------------------------------------------------------------------------- permission denied


def test_permission_denied_is_error_2(tmp_path: Path, servers) -> None:
    served = tmp_path / "served"
    (served / "locked").mkdir(parents=True)
    (served / "private").write_bytes(b"private\n")
    (served / "private").chmod(0o000)
    (served / "locked").chmod(0o555)
    extra: list[str] = []
    if os.geteuid() == 0:
        # Root ignores file modes; without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH it obeys them like anyone.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            unavailable("setpriv (util-linux) is needed to make root obey file modes", "RUDP_REQUIRE_ROOT")
        extra = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
    srv = _recv_wrapped(servers, served, extra, "--serve")
    src = make_file(tmp_path / "up.bin", 3000)
    try:
        proc = run("rudp-get", "127.0.0.1", "private", "-o", tmp_path / "got", "--port", srv.port, *CLIENT_TIMERS)
        assert_one_line_error(proc, 4, "ERROR 2")
        assert "permission denied" in proc.stderr
        assert not (tmp_path / "got").exists()
        proc = run("rudp-send", src, "127.0.0.1", "--port", srv.port, "--name", "locked/up.bin", *CLIENT_TIMERS)
        assert_one_line_error(proc, 4, "ERROR 2")
        assert os.listdir(served / "locked") == []
        upload_ok(srv, src, "up.bin")  # and it keeps serving
    finally:
        (served / "locked").chmod(0o755)


def _recv_wrapped(servers: list[RecvServer], directory: Path, wrapper: list[str], *extra: str) -> RecvServer:
    """RecvServer, but run under ``wrapper`` (e.g. setpriv): RecvServer starts ``command("rudp-recv")``."""
    if not wrapper:
        return recv(servers, directory, *extra)
    real = subprocess.Popen

    def popen(args, *a, **kw):
        return real([*wrapper, *args], *a, **kw)

    subprocess.Popen = popen  # type: ignore[misc]
    try:
        return recv(servers, directory, *extra)
    finally:
        subprocess.Popen = real  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------- a peer dies


def test_sender_killed_mid_upload_server_times_out_cleans_up_and_keeps_serving(tmp_path: Path, servers) -> None:
    src = make_file(tmp_path / "big.bin", 6 * 1024 * 1024)
    srv = recv(servers, tmp_path / "served")
    sender = spawn("rudp-send", src, "127.0.0.1", "--port", srv.port, *SLOW, *CLIENT_TIMERS)
    started(srv.dir, sender)
    sender.kill()
    finish(sender)
    killed = time.monotonic()
    event = srv.next_event(timeout=10)
    waited = time.monotonic() - killed
    assert not event["ok"] and event["exit_code"] == 5, event  # it timed out after its retry budget
    assert waited < 2.5, f"2 retries 0.3 s apart, yet the server took {waited:.1f} s to give up on a dead sender"
    assert os.listdir(srv.dir) == []  # temp file removed, nothing at the final name
    upload_ok(srv, make_file(tmp_path / "next.bin", 5000), "next.bin")


def big_transfer_under_way(tmp_path: Path, servers, direction: str):
    """A slow 6 MiB upload (rudp-send to rudp-recv) or download (rudp-get from rudp-recv --serve) that has started
    writing: (served dir, local dir, source file, server, client process)."""
    served = tmp_path / "served"
    served.mkdir()
    local = tmp_path / "local"
    local.mkdir()
    if direction == "upload":
        src = make_file(local / "big.bin", 6 * 1024 * 1024)
        srv = recv(servers, served)
        client = spawn("rudp-send", src, "127.0.0.1", "--port", srv.port, *SLOW, *CLIENT_TIMERS)
        started(served, client)
    else:
        src = make_file(served / "big.bin", 6 * 1024 * 1024)
        srv = recv(servers, served, "--serve")
        client = spawn(
            "rudp-get", "127.0.0.1", "big.bin", "-o", local / "copy.bin", "--port", srv.port, *SLOW, *CLIENT_TIMERS
        )
        started(local, client)
    return served, local, src, srv, client


@pytest.mark.parametrize("direction", ["upload", "download"])
def test_receiver_killed_mid_transfer_client_fails_at_once_nothing_listening(
    tmp_path: Path, servers, direction: str
) -> None:
    served, local, src, srv, client = big_transfer_under_way(tmp_path, servers, direction)
    srv.proc.kill()
    killed = time.monotonic()
    proc = finish(client)
    # ICMP port unreachable answers the next datagram: reported at once (exit 6), not after the retry budget.
    assert_one_line_error(proc, 6, "nothing is listening")
    assert time.monotonic() - killed < 1.0
    assert not (served / "big.bin").exists() if direction == "upload" else not (local / "copy.bin").exists()
    assert temp_files(local) == []  # the client cleans up its own temp file (the killed server could not)


@pytest.mark.parametrize("direction", ["upload", "download"])
def test_frozen_receiver_client_fails_after_its_retry_budget(tmp_path: Path, servers, direction: str) -> None:
    """A receiver that stops answering without closing its port (SIGSTOP: no ICMP): exit 5 after the budget."""
    served, local, src, srv, client = big_transfer_under_way(tmp_path, servers, direction)
    srv.proc.send_signal(signal.SIGSTOP)
    frozen = time.monotonic()
    proc = finish(client)
    waited = time.monotonic() - frozen
    assert_one_line_error(proc, 5, "timed out")
    assert 0.3 * 3 <= waited < 3, f"gave up after {waited:.1f} s; the budget is 4 tries 0.3 s apart"
    assert os.listdir(local) == (["big.bin"] if direction == "upload" else [])
    assert not (served / "big.bin").exists() if direction == "upload" else True


@pytest.mark.parametrize("direction", ["upload", "download"])
def test_server_restarted_mid_transfer_client_fails_cleanly(tmp_path: Path, servers, direction: str) -> None:
    served, local, src, srv, client = big_transfer_under_way(tmp_path, servers, direction)
    srv.proc.kill()
    srv.proc.wait()
    for stale in temp_files(served):  # what the SIGKILLed server could not remove (an operator's cleanup)
        (served / stale).unlink()
    again = recv(servers, served, "--port", str(srv.port), "--serve")  # same port, a new process
    assert again.port == srv.port
    proc = finish(client)
    # The transfer's own port (its TID) died with the old process: the client hears ICMP port unreachable. It
    # never restarts from scratch against the new server, whose listening port only takes requests.
    assert_one_line_error(proc, 6, "nothing is listening")
    assert temp_files(local) == [] and temp_files(served) == []
    assert sorted(os.listdir(local)) == (["big.bin"] if direction == "upload" else [])
    assert sorted(os.listdir(served)) == ([] if direction == "upload" else ["big.bin"])
    # The new server works: the transfer can be repeated.
    if direction == "upload":
        upload_ok(again, src, "big.bin")
    else:
        proc = run(
            "rudp-get", "127.0.0.1", "big.bin", "-o", local / "copy.bin", "--port", again.port, *CLIENT_TIMERS
        )
        assert proc.returncode == 0, proc.stderr
        assert sha256(local / "copy.bin") == sha256(src)


# ------------------------------------------------------------------------------------------- the last word


LAST_WORDS = [
    (Error(ErrorCode.DISK_FULL, "disk full or allocation exceeded"), FailureKind.PEER_ERROR, ErrorCode.DISK_FULL),
    (Ack(0), FailureKind.UNREACHABLE, None),  # a harmless datagram: then the bounce counts, without waiting
]


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
@pytest.mark.parametrize("last, kind, code", LAST_WORDS, ids=["error", "ack"])
def test_an_error_queued_before_the_port_closed_beats_the_icmp_report(
    family: int, host: str, last, kind: FailureKind, code
) -> None:
    """A receiver that fails (disk full) sends ERROR 3 and closes its port while DATA is still in flight to it.

    Linux then reports the ICMP port unreachable that the in-flight DATA drew *before* the ERROR already queued
    on the socket.  Seen in test_disk_full_upload_... as an occasional exit 6 'nothing is listening' instead of
    ERROR 3.  Here the order is forced: the ERROR arrives, the port closes, one more datagram bounces."""
    peer = socket.socket(family, socket.SOCK_DGRAM)
    peer.bind((host, 0))
    sock = udp_socket(family, (host, 0))
    try:
        client = peer.getsockname()[:2]
        session = ReadServer(ReadRequest("f.bin", "octet", ()), client, TransferConfig(), file_size=5000, now=0.0)
        transfer = Transfer(session, sock, source=io.BytesIO(bytes(5000)))
        transfer.service(0.0)  # DATA 1 leaves
        peer.recvfrom(2048)
        peer.sendto(encode(last), sock.getsockname()[:2])
        peer.close()
        sock.sendto(b"in flight", client)  # bounces: ICMP port unreachable, reported before the queued ERROR
        wait_for(lambda: select.select([sock], [], [], 0)[0], timeout=5, what="the ERROR and the bounce")
        transfer.receive(time.monotonic)
    finally:
        peer.close()
        sock.close()
    outcome = transfer.outcome
    assert isinstance(outcome, TransferFailed), outcome
    assert (outcome.kind, outcome.code) == (kind, code), outcome
