"""rudp-demo and naive UDP over real sockets: the same seeded lossy path through the shim, two outcomes."""

from __future__ import annotations

import hashlib
import json
import random
import socket

from cliharness import run

from rudp.naive import analyse
from rudp.net.naive import receive_naive, send_naive
from rudp.net.sockets import udp_socket


def demo(*args: str):
    proc = run("rudp-demo", *args, "--json", timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    return proc, json.loads(proc.stdout)


def test_naive_udp_is_damaged_exactly_where_the_path_dropped_and_rudp_is_intact():
    proc, out = demo("--size", "400K", "--seed", "4")
    print(proc.stderr)
    assert proc.returncode == 0
    naive, rudp = out["naive"], out["rudp"]
    expected = hashlib.sha256(random.Random("rudp-demo:4").randbytes(400 * 1024)).hexdigest()
    # naive: every chunk the model dropped on the way up is missing, nothing else is (no corruption here)
    assert naive["path"]["up"]["lost"] > 0
    assert naive["report"]["missing"] == naive["path"]["up"]["lost"]
    assert naive["report"]["duplicated"] == naive["path"]["up"]["duplicated"]
    assert not naive["report"]["intact"] and naive["report"]["sha256_original"] == expected
    assert naive["report"]["sha256_received"] != expected
    # rudp: the same kind of path, yet an identical file, paid for with retransmissions
    assert rudp["intact"] and rudp["error"] is None
    assert rudp["received"] == 400 * 1024 and rudp["sha256"] == expected
    assert rudp["path"]["up"]["lost"] + rudp["path"]["down"]["lost"] > 0
    assert rudp["retransmissions"] > 0 and rudp["datagrams"] > naive["report"]["sent"]


def test_the_verdict_table_on_a_terminal_free_run():
    proc = run("rudp-demo", "--size", "200K", "--seed", "2", timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("rudp-demo: 204800 bytes of seeded data through the loss shim")
    assert any(line.split()[:3] == ["file", "DAMAGED", "INTACT"] for line in lines)
    assert any(line.startswith("sha256 matches") and line.split()[2:] == ["NO", "yes"] for line in lines)
    assert "rudp delivered an identical file" in lines[-1]
    assert "Traceback" not in proc.stderr


def test_on_a_clean_path_both_arrive_intact_and_rudp_resends_nothing():
    proc, out = demo("--size", "200K", "--loss", "0", "--dup", "0", "--reorder", "0")
    assert proc.returncode == 0, proc.stderr
    assert out["naive"]["report"]["intact"] and out["naive"]["report"]["missing"] == 0
    assert out["rudp"]["intact"] and out["rudp"]["retransmissions"] == 0


def test_bad_arguments_are_one_line_and_exit_2():
    for args in (["--loss", "lots"], ["--timeout", "0"], ["--size", "-1"]):
        proc = run("rudp-demo", *args)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)


def test_send_naive_paces_itself_at_the_rate():
    sent: list[bytes] = []
    slept: list[float] = []
    now = [0.0]

    class Sock:
        def sendto(self, data, to):
            sent.append(data)

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    data = bytes(100 * 1000)
    count = send_naive(Sock(), data, ("127.0.0.1", 9), chunk=1000, rate=8e6, clock=lambda: now[0], sleep=sleep)
    assert count == len(sent) == 100 and b"".join(sent) == data
    # 100 datagrams of 1028 bytes on the wire at 1 MB/s: the last burst of 16 ends at 96 * 1.028 ms
    assert abs(now[0] - 96 * 1028 * 8 / 8e6) < 1e-9 and len(slept) == 6


def test_naive_over_a_clean_loopback_socket_arrives_whole_and_in_order():
    data = random.Random(5).randbytes(300_000)
    with udp_socket(socket.AF_INET, ("127.0.0.1", 0), report_errors=False) as rx, udp_socket(socket.AF_INET) as tx:
        send_naive(tx, data, rx.getsockname(), chunk=1400, rate=200e6)
        arrivals = receive_naive(rx, first=2.0, idle=0.2, max_bytes=10**6)
    assert analyse(data, arrivals, 1400).intact
