"""The commands end to end on loopback: round trips, bad input, Ctrl-C, concurrency, --once, --json."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cliharness import FAST, RecvServer, assert_one_line_error, command, run, sha256, temp_files, wait_for

SEED = int(os.environ.get("RUDP_TEST_SEED", "20261128"))


def make_file(path: Path, size: int, seed: int = SEED) -> Path:
    print(f"seed {seed}: {path.name} of {size} bytes")
    path.write_bytes(random.Random(seed + size).randbytes(size))
    return path


@pytest.fixture
def server(tmp_path):
    servers = []

    def start(*extra: str, bind: str | None = None) -> RecvServer:
        s = RecvServer(tmp_path / f"srv{len(servers)}", *extra, bind=bind)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


CASES = [
    ("empty", 0, []),
    ("one-byte", 1, []),
    ("multiple-of-fitted-blksize", 65464 * 2, []),  # loopback's MTU: blocks of 65464
    ("multiple-of-1468", 1468 * 4, ["--blksize", "1468"]),
    ("multiple-of-512", 512 * 4, ["--blksize", "512"]),
    ("defaults", 3_000_001, []),
    ("blksize-65464", 65464 * 3 + 17, ["--blksize", "65464"]),
    ("windowsize-1", 300_000, ["--windowsize", "1"]),
    ("windowsize-8", 300_000, ["--windowsize", "8", "--blksize", "512"]),
    ("windowsize-64", 2_000_000, ["--windowsize", "64"]),
    ("no-options", 5_000, ["--no-options"]),
]


@pytest.mark.parametrize("family", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("name,size,opts", CASES, ids=[c[0] for c in CASES])
def test_round_trip(server, tmp_path, family, name, size, opts):
    srv = server("--serve")
    src = make_file(tmp_path / f"{name}.bin", size)
    up = run("rudp-send", src, family, "--port", srv.port, *opts, *FAST)
    assert up.returncode == 0, up.stderr
    stored = srv.dir / src.name
    assert sha256(stored) == sha256(src)
    event = srv.next_event()
    assert event["ok"] and event["bytes"] == size and event["direction"] == "recv"
    back = tmp_path / f"{name}.back"
    down = run("rudp-get", family, src.name, "-o", back, "--port", srv.port, *opts, *FAST)
    assert down.returncode == 0, down.stderr
    assert sha256(back) == sha256(src)
    assert temp_files(srv.dir) == [] and temp_files(tmp_path) == []


@pytest.mark.timeout(120)
def test_40_mib_at_blksize_512_crosses_block_number_rollover(server, tmp_path):
    srv = server("--serve")
    src = make_file(tmp_path / "big.bin", 40 * 1024 * 1024)  # 81920 blocks of 512: past 65535
    up = run("rudp-send", src, "127.0.0.1", "--port", srv.port, "--blksize", "512", "--json", *FAST, timeout=110)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["stats"]["blocks"] == 81921  # 81920 full blocks and the empty final one
    assert sha256(srv.dir / "big.bin") == sha256(src)
    back = tmp_path / "big.back"
    down = run(
        "rudp-get", "127.0.0.1", "big.bin", "-o", back, "--port", srv.port, "--blksize", "512", *FAST, timeout=110
    )
    assert down.returncode == 0, down.stderr
    assert sha256(back) == sha256(src)


def test_netascii_round_trip_translates_line_ends(server, tmp_path):
    srv = server("--serve")
    text = b"first line\nsecond\r\nbare CR\r here\n\n" * 300
    src = tmp_path / "notes.txt"
    src.write_bytes(text)
    assert run("rudp-send", src, "127.0.0.1", "--port", srv.port, "--mode", "netascii", *FAST).returncode == 0
    assert (srv.dir / "notes.txt").read_bytes() == text
    back = tmp_path / "notes.back"
    assert (
        run(
            "rudp-get", "127.0.0.1", "notes.txt", "-o", back, "--port", srv.port, "--mode", "netascii", *FAST
        ).returncode
        == 0
    )
    assert back.read_bytes() == text


# ---------------------------------------------------------------------------------------------- output
def test_help_for_every_command_lists_exit_codes():
    for name in ("rudp-send", "rudp-get", "rudp-recv"):
        proc = run(name, "--help")
        assert proc.returncode == 0 and "usage:" in proc.stdout and "exit codes" in proc.stdout


def test_json_and_summary_and_quiet(server, tmp_path):
    srv = server()
    src = make_file(tmp_path / "j.bin", 10_000)
    window = ["--windowsize", "8"]
    proc = run("rudp-send", src, "127.0.0.1", "--port", srv.port, "--json", "--blksize", "1024", *window, *FAST)
    record = json.loads(proc.stdout)
    assert record["ok"] and record["bytes"] == 10_000 and record["blksize"] == 1024 and record["exit_code"] == 0
    assert record["stats"]["retransmissions"] == 0 and record["options_acknowledged"]
    assert proc.stderr.startswith(f"sent {src} to 127.0.0.1:{srv.port} as j.bin: 10000 bytes in ")
    assert proc.stderr.endswith("blksize 1024, windowsize 8, 0 retransmissions\n")
    quiet = run("rudp-send", src, "127.0.0.1", "--port", srv.port, "--name", "k.bin", "-q", *FAST)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_progress_bar_only_on_a_terminal(server, tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    srv = server()
    src = make_file(tmp_path / "bar.bin", 3_000_000)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0x0
    try:
        proc = subprocess.run(
            [command("rudp-send"), str(src), "127.0.0.1", "--port", str(srv.port), *FAST],
            stderr=follower,
            stdout=subprocess.DEVNULL,
            timeout=60,
        )
        os.close(follower)
        follower = -1
        output = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    text = output.decode(errors="replace")
    assert proc.returncode == 0
    assert "bar.bin" in text and "%|" in text and "B/s" in text  # tqdm drew a bar labelled with the file
    piped = run("rudp-send", src, "127.0.0.1", "--port", srv.port, "--name", "bar2.bin", *FAST)
    assert "%|" not in piped.stderr and piped.stderr.startswith("sent ")


# ---------------------------------------------------------------------------------------------- bad input
def test_missing_local_file(tmp_path):
    assert_one_line_error(run("rudp-send", tmp_path / "nope", "127.0.0.1"), 3, "no such file")


def test_directory_is_not_a_file(tmp_path):
    assert_one_line_error(run("rudp-send", tmp_path, "127.0.0.1"), 3, "not a regular file")


def test_unreadable_local_file(tmp_path):
    src = make_file(tmp_path / "secret.bin", 10)
    src.chmod(0)
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that let it
        caps = "-dac_override,-dac_read_search"
        proc = subprocess.run(
            [
                "setpriv",
                f"--bounding-set={caps}",
                f"--inh-caps={caps}",
                command("rudp-send"),
                str(src),
                "127.0.0.1",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    else:
        proc = run("rudp-send", src, "127.0.0.1")
    assert_one_line_error(proc, 3, "permission denied")


def test_unknown_host(tmp_path):
    src = make_file(tmp_path / "a.bin", 10)
    assert_one_line_error(run("rudp-send", src, "no-such-host.invalid"), 8, "cannot resolve host")


def test_nothing_listening_fails_fast(tmp_path):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    src = make_file(tmp_path / "a.bin", 10)
    started = time.monotonic()
    proc = run("rudp-send", src, "127.0.0.1", "--port", port, "--timeout", "5")
    elapsed = time.monotonic() - started
    assert_one_line_error(proc, 6, "nothing is listening at 127.0.0.1")
    assert elapsed < 5, f"took {elapsed:.1f} s: waited for a timeout instead of the ICMP error"
    proc = run("rudp-get", "::1", "x", "-o", tmp_path / "x", "--port", port, "--timeout", "5")
    assert_one_line_error(proc, 6, "nothing is listening")
    assert not (tmp_path / "x").exists()


def test_remote_error_leaves_nothing_behind(server, tmp_path):
    srv = server("--serve")
    out = tmp_path / "out.bin"
    proc = run("rudp-get", "127.0.0.1", "missing.bin", "-o", out, "--port", srv.port, *FAST)
    assert_one_line_error(proc, 4, "ERROR 1")
    assert not out.exists() and temp_files(tmp_path) == []


def test_downloads_need_serve(server, tmp_path):
    srv = server()
    (srv.dir / "here.bin").write_bytes(b"x")
    proc = run("rudp-get", "127.0.0.1", "here.bin", "-o", tmp_path / "h", "--port", srv.port, *FAST)
    assert_one_line_error(proc, 4, "ERROR 2")


def test_existing_destination_is_refused_on_both_sides(server, tmp_path):
    srv = server("--serve")
    (srv.dir / "taken.bin").write_bytes(b"original")
    src = make_file(tmp_path / "taken.bin", 5000)
    assert_one_line_error(run("rudp-send", src, "127.0.0.1", "--port", srv.port, *FAST), 4, "ERROR 6")
    assert (srv.dir / "taken.bin").read_bytes() == b"original"
    local = tmp_path / "mine.bin"
    local.write_bytes(b"keep me")
    proc = run("rudp-get", "127.0.0.1", "taken.bin", "-o", local, "--port", srv.port, *FAST)
    assert_one_line_error(proc, 3, "exists")
    assert local.read_bytes() == b"keep me"
    ok = run("rudp-get", "127.0.0.1", "taken.bin", "-o", local, "--overwrite", "--port", srv.port, *FAST)
    assert ok.returncode == 0 and local.read_bytes() == b"original"


@pytest.mark.parametrize("name", ["../escape.bin", "/tmp/abs.bin", "sub/../../escape.bin", "a\\..\\b.bin"])
def test_traversal_names_are_refused(server, tmp_path, name):
    srv = server("--serve")
    (srv.dir / "sub").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    src = make_file(tmp_path / "payload.bin", 100)
    assert_one_line_error(
        run("rudp-send", src, "127.0.0.1", "--port", srv.port, "--name", name, *FAST), 4, "ERROR 2"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["payload.bin"])
    assert not Path("/tmp/abs.bin").exists()
    proc = run("rudp-get", "127.0.0.1", name, "-o", tmp_path / "got", "--port", srv.port, *FAST)
    assert_one_line_error(proc, 4, "ERROR 2")


def test_symlink_leaving_the_directory_is_refused(server, tmp_path):
    srv = server("--serve")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (srv.dir / "link").symlink_to(outside)
    proc = run("rudp-get", "127.0.0.1", "link/secret", "-o", tmp_path / "got", "--port", srv.port, *FAST)
    assert_one_line_error(proc, 4, "ERROR 2")
    src = make_file(tmp_path / "p.bin", 10)
    assert_one_line_error(
        run("rudp-send", src, "127.0.0.1", "--port", srv.port, "--name", "link/new", *FAST), 4, "ERROR 2"
    )
    assert sorted(os.listdir(outside)) == ["secret"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["rudp-send", "f", "h", "--blksize", "7"], "blksize must be between 8 and 65464"),
        (["rudp-send", "f", "h", "--windowsize", "0"], "windowsize must be between 1 and 65535"),
        (["rudp-get", "h", "r", "--port", "http"], "port must be a whole number"),
        (["rudp-get", "h", "r", "--timeout", "-1"], "timeout must be between"),
        (["rudp-recv", "--max-size", "lots"], "size must look like"),
        (["rudp-send"], "required"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(args, fragment):
    assert_one_line_error(run(*args), 2, fragment)


def test_json_failure_record(tmp_path):
    proc = run("rudp-send", tmp_path / "nope", "127.0.0.1", "--json")
    assert proc.returncode == 3
    # a local error before any transfer starts has no JSON record's worth of stats, but scripts get one line
    assert proc.stdout == "" or json.loads(proc.stdout)["ok"] is False


# ---------------------------------------------------------------------------------------------- limits, --once
def test_max_size_refuses_before_data(server, tmp_path):
    srv = server("--max-size", "10K")
    src = make_file(tmp_path / "big.bin", 20_000)
    assert_one_line_error(run("rudp-send", src, "127.0.0.1", "--port", srv.port, *FAST), 4, "ERROR 3")
    # without tsize (no options) the limit is enforced while receiving
    assert_one_line_error(
        run("rudp-send", src, "127.0.0.1", "--port", srv.port, "--no-options", *FAST), 4, "ERROR 3"
    )
    assert list(srv.dir.iterdir()) == []


def test_once_exits_with_the_transfer(tmp_path):
    src = make_file(tmp_path / "o.bin", 1000)
    dest = tmp_path / "dest"
    dest.mkdir()
    srv = subprocess.Popen(
        [command("rudp-recv"), "--port", "0", "--json", "-q", "--once", "--timeout", "0.3", "--dir", str(dest)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = json.loads(srv.stdout.readline())["port"]
        assert run("rudp-send", src, "127.0.0.1", "--port", port, *FAST).returncode == 0
        assert srv.wait(timeout=15) == 0
        assert json.loads(srv.stdout.readline())["ok"]
    finally:
        srv.kill()
        srv.wait()
        srv.stdout.close()
    assert sha256(dest / "o.bin") == sha256(src)


def test_concurrent_transfers_in_one_server(server, tmp_path):
    srv = server("--serve")
    sources = [make_file(tmp_path / f"c{i}.bin", 400_000 + i, seed=i) for i in range(4)]
    procs = [
        subprocess.Popen(
            [
                command("rudp-send"),
                str(s),
                "127.0.0.1",
                "--port",
                str(srv.port),
                "-q",
                "--blksize",
                "512",
                "--windowsize",
                "2",
                *FAST,
            ]
        )
        for s in sources
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    for s in sources:
        assert sha256(srv.dir / s.name) == sha256(s)


# ---------------------------------------------------------------------------------------------- Ctrl-C
def _slow_upload(srv, src, name):
    return subprocess.Popen(
        [
            command("rudp-send"),
            str(src),
            "127.0.0.1",
            "--port",
            str(srv.port),
            "--name",
            name,
            "--blksize",
            "512",
            "--windowsize",
            "1",
            *FAST,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _started(directory):
    return lambda: any(p.stat().st_size > 0 for p in Path(directory).glob("*.rudp-part"))


def test_ctrl_c_on_sender_stops_the_transfer_cleanly(server, tmp_path):
    srv = server()
    src = make_file(tmp_path / "big.bin", 40 * 1024 * 1024)
    client = _slow_upload(srv, src, "big.bin")
    wait_for(_started(srv.dir), what="the upload to start")
    assert not (srv.dir / "big.bin").exists()  # in flight: only the temporary file exists
    client.send_signal(signal.SIGINT)
    out, err = client.communicate(timeout=20)
    assert client.returncode == 130, err
    assert err.strip().splitlines()[-1].endswith("interrupted") and "Traceback" not in err
    event = srv.next_event()
    assert not event["ok"] and "interrupted" in event["error"]  # the server got our ERROR
    wait_for(lambda: not (srv.dir / "big.bin").exists() and temp_files(srv.dir) == [], what="cleanup")


def test_ctrl_c_on_getter_removes_the_partial_file(server, tmp_path):
    srv = server("--serve")
    make_file(srv.dir / "big.bin", 40 * 1024 * 1024)
    out = tmp_path / "partial.bin"
    client = subprocess.Popen(
        [
            command("rudp-get"),
            "127.0.0.1",
            "big.bin",
            "-o",
            str(out),
            "--port",
            str(srv.port),
            "--blksize",
            "512",
            "--windowsize",
            "1",
            *FAST,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(_started(tmp_path), what="the download to start")
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=20)
    assert client.returncode == 130, err
    assert not out.exists() and temp_files(tmp_path) == []
    assert not srv.next_event()["ok"]


def test_ctrl_c_on_server_tells_the_client_and_removes_the_temp_file(server, tmp_path):
    srv = server()
    src = make_file(tmp_path / "big.bin", 40 * 1024 * 1024)
    client = _slow_upload(srv, src, "big.bin")
    wait_for(_started(srv.dir), what="the upload to start")
    assert srv.interrupt() == 130
    out, err = client.communicate(timeout=20)
    assert client.returncode == 4 and "server shutting down" in err, err
    assert list(srv.dir.iterdir()) == []


# ---------------------------------------------------------------------------------------------- install
@pytest.mark.timeout(180)
def test_fresh_install_gives_working_commands(tmp_path):
    repo = Path(__file__).resolve().parent.parent
    venv = tmp_path / "venv"
    subprocess.run([os.sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # exactly what a user does: an isolated build, dependencies from the package index
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(repo)],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert pip.returncode == 0, pip.stderr
    for name in ("rudp-send", "rudp-recv", "rudp-get"):
        proc = subprocess.run([str(venv / "bin" / name), "--help"], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr


def test_netascii_summary_counts_file_bytes_not_wire_bytes(server, tmp_path):
    srv = server("--serve")
    src = tmp_path / "lines.txt"
    src.write_bytes(b"a\nb\nc\n")  # 6 bytes here, 9 on the wire
    up = run("rudp-send", src, "127.0.0.1", "--port", srv.port, "--mode", "netascii", "--json", *FAST)
    assert json.loads(up.stdout)["bytes"] == 6 and json.loads(up.stdout)["stats"]["payload_bytes"] == 9
    assert srv.next_event()["bytes"] == 6
    down = run(
        "rudp-get",
        "127.0.0.1",
        "lines.txt",
        "-o",
        tmp_path / "l2",
        "--port",
        srv.port,
        "--mode",
        "netascii",
        "--json",
        *FAST,
    )
    assert json.loads(down.stdout)["bytes"] == 6
    assert srv.next_event()["bytes"] == 6
