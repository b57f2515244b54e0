"""The network lab: the relay's packet path in memory and as a process (no root needed), then, as root, whole
labs: TCP and rudp end to end through a lossy link with the loss checked in the counters, and every way a lab can
end (normal exit, SIGTERM, SIGKILL, a crashed run's stale namespaces) leaving no namespace behind.

Root-only tests skip with the reason shown, unless RUDP_REQUIRE_ROOT=1, which makes them fail (CI has root).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time

import pytest
from peers import FAST, rudp_command, unavailable

from rudp.lab import ADDR_A, ADDR_B, PREFIX, Lab, LabUnavailable, LinkSpec
from rudp.lab.lab import check_available, lab_namespaces
from rudp.lab.relay import Relay

SEED = int(os.environ.get("RUDP_TEST_SEED", "20261205"))


def within_binomial(lost: int, offered: int, p: float, sigmas: float = 4.5) -> bool:
    mean = offered * p
    return abs(lost - mean) <= sigmas * math.sqrt(offered * p * (1 - p)) + 2


# =========================================================================== the relay, in memory
def test_each_direction_is_delayed_and_kept_apart():
    relay = Relay(LinkSpec(delay=0.010))
    relay.receive(b"from a", "a>b", now=1.0)
    relay.receive(b"from b", "b>a", now=1.002)
    assert relay.next_deadline() == pytest.approx(1.010)
    assert relay.due(now=1.0099) == []
    assert relay.due(now=1.010) == [("a>b", b"from a")]
    assert relay.due(now=1.5) == [("b>a", b"from b")]
    assert relay.next_deadline() is None
    counters = relay.counters()
    assert counters["a>b"]["offered"] == counters["b>a"]["offered"] == 1


def test_rate_counts_the_whole_ip_packet_and_no_extra_header():
    relay = Relay(LinkSpec(rate=12e6, queue=2))  # a 1500-byte packet takes exactly 1 ms at 12 Mbit/s
    for _ in range(3):
        relay.receive(bytes(1500), "a>b", now=0.0)
    assert relay.next_deadline() == pytest.approx(0.001)
    assert [len(p) for _, p in relay.due(now=0.0015)] == [1500]
    assert relay.next_deadline() == pytest.approx(0.002)
    assert relay.counters()["a>b"]["lost_queue"] == 1  # the third met a full queue of two


def test_loss_is_applied_per_direction_and_counters_reset():
    seed = SEED
    print(f"seed {seed}")
    relay = Relay(LinkSpec(loss=0.05, seed=seed))
    for i in range(20000):
        relay.receive(i.to_bytes(4, "big"), "a>b" if i % 2 else "b>a", now=0.0)
    counters = relay.counters()
    for direction in ("a>b", "b>a"):
        c = counters[direction]
        assert c["offered"] == 10000
        assert within_binomial(c["lost_random"], c["offered"], 0.05), c
        assert c["delivered"] == c["offered"] - c["lost_random"]
    assert len(relay.due(now=0.0)) == sum(c["delivered"] for c in counters.values())
    relay.reset_counters()
    assert all(v == 0 for c in relay.counters().values() for v in c.values())
    relay.receive(b"x", "a>b", now=0.0)
    relay.set_link(LinkSpec(loss=1.0))
    assert relay.counters()["a>b"]["offered"] == 0  # new link, new counters
    relay.receive(b"y", "a>b", now=0.0)
    assert relay.due(now=0.0) == [("a>b", b"x")]  # scheduled before set_link: still arrives
    assert relay.counters()["a>b"]["lost_random"] == 1


def test_same_seed_same_decisions():
    def lost(seed: int) -> list[int]:
        relay = Relay(LinkSpec(loss=0.1, dup=0.05, jitter=0.001, seed=seed))
        for i in range(500):
            relay.receive(i.to_bytes(2, "big"), "a>b", now=i * 1e-4)
        return [int.from_bytes(p, "big") for _, p in relay.due(now=1.0)]

    assert lost(3) == lost(3)
    assert lost(3) != lost(4)


def test_default_queue_is_one_bandwidth_delay_product_at_least_64():
    assert LinkSpec(rate=100e6, delay=0.025).queue_packets == 417  # 100 Mbit/s x 50 ms / 1500 B
    assert LinkSpec(rate=10e6, delay=0.001).queue_packets == 64
    assert LinkSpec().queue_packets == 64
    assert LinkSpec(rate=100e6, delay=0.025, queue=10).queue_packets == 10
    with pytest.raises(ValueError, match="loss"):
        LinkSpec(loss=1.5)
    with pytest.raises(ValueError, match="queue"):
        LinkSpec(queue=0)
    link = LinkSpec(rate=5e6, delay=0.01, loss=0.02, jitter=0.001, reorder=0.01, dup=0.01, queue=99, seed=7)
    assert LinkSpec.from_json(json.loads(json.dumps(link.to_json()))) == link


# =========================================================================== the relay as a process
RELAY_MAIN = "import sys; from rudp.lab.relay import main; sys.exit(main())"


def test_relay_process_moves_packets_and_answers_on_its_control_pipe():
    """Datagram socketpairs stand in for the TUN fds (one packet per read, like a TUN device)."""
    a_outer, a_inner = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b_outer, b_inner = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    fds = [a_inner.fileno(), b_inner.fileno()]
    link = LinkSpec(delay=0.02)
    argv = [sys.executable, "-c", RELAY_MAIN, "--fds", *map(str, fds), "--link", json.dumps(link.to_json())]
    relay = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=fds, text=True)
    a_inner.close()
    b_inner.close()
    assert relay.stdin and relay.stdout

    def call(request: dict) -> dict:
        relay.stdin.write(json.dumps(request) + "\n")
        relay.stdin.flush()
        assert select.select([relay.stdout], [], [], 10)[0], "the relay did not answer"
        return json.loads(relay.stdout.readline())

    try:
        assert select.select([relay.stdout], [], [], 15)[0]
        assert json.loads(relay.stdout.readline())["event"] == "ready"
        sent = time.monotonic()
        a_outer.send(b"one")
        a_outer.send(b"two")
        b_outer.send(b"back")
        b_outer.settimeout(5)
        a_outer.settimeout(5)
        assert [b_outer.recv(100), b_outer.recv(100)] == [b"one", b"two"]
        assert a_outer.recv(100) == b"back"
        assert time.monotonic() - sent >= 0.02
        counters = call({"cmd": "counters"})["counters"]
        assert counters["a>b"]["offered"] == 2 and counters["b>a"]["offered"] == 1
        assert call({"cmd": "reset"}) == {"ok": True}
        assert call({"cmd": "counters"})["counters"]["a>b"]["offered"] == 0
        assert call({"cmd": "set", "link": LinkSpec(loss=1.0).to_json()}) == {"ok": True}
        a_outer.send(b"lost")
        b_outer.settimeout(0.2)
        with pytest.raises(TimeoutError):
            b_outer.recv(100)
        assert call({"cmd": "counters"})["counters"]["a>b"]["lost_random"] == 1
        assert call({"cmd": "nonsense"})["ok"] is False
        assert call({"cmd": "quit"}) == {"ok": True}
        assert relay.wait(timeout=10) == 0
    finally:
        if relay.poll() is None:
            relay.kill()
        relay.wait()
        for s in (a_outer, b_outer):
            s.close()


def test_relay_exits_when_its_parent_goes_away():
    """End of file on the control pipe (the parent died) stops the relay: it never outlives its lab."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    argv = [sys.executable, "-c", RELAY_MAIN, "--fds", str(a.fileno()), str(b.fileno())]
    relay = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=[a.fileno(), b.fileno()]
    )
    try:
        assert relay.stdout and relay.stdin
        assert b"ready" in relay.stdout.readline()
        relay.stdin.close()
        assert relay.wait(timeout=10) == 0
    finally:
        if relay.poll() is None:
            relay.kill()
        relay.wait()
        a.close()
        b.close()


def test_without_root_the_lab_says_why(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabUnavailable, match="needs root"):
        with Lab(LinkSpec()):
            pass


# =========================================================================== whole labs (root)
def require_lab() -> None:
    try:
        check_available()
    except LabUnavailable as exc:
        unavailable(str(exc), "RUDP_REQUIRE_ROOT")


def namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def assert_none_left(*pids: int) -> None:
    """No lab namespace of these pids, nor of any pid that no longer runs (another live run's are not ours)."""
    for name in lab_namespaces():
        pid = int(name[len(PREFIX) :].split("-")[0])
        assert pid not in pids, f"{name} was left behind"
        assert os.path.exists(f"/proc/{pid}"), f"{name} of dead pid {pid} was left behind"


TCP_RECV = """
import hashlib, json, socket, sys
with socket.create_server((sys.argv[1], 0)) as listener:
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    conn, peer = listener.accept()
digest, total = hashlib.sha256(), 0
with conn:
    while chunk := conn.recv(1 << 16):
        digest.update(chunk)
        total += len(chunk)
print(json.dumps({"bytes": total, "sha256": digest.hexdigest(), "peer": peer[0]}), flush=True)
"""

TCP_SEND = """
import socket, sys
data = open(sys.argv[1], "rb").read()
with socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=30) as sock:
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    sock.recv(1)
"""


def check_loss_applied(counters: dict, loss: float, least: dict[str, int]) -> None:
    for direction, minimum in least.items():
        c = counters[direction]
        assert c["offered"] >= minimum, f"{direction}: only {c['offered']} packets crossed the link: {counters}"
        assert c["lost_random"] > 0, f"{direction}: no loss applied: {counters}"
        assert within_binomial(c["lost_random"], c["offered"], loss), f"{direction}: {counters}"


@pytest.mark.timeout(90)
def test_tcp_and_rudp_cross_the_lossy_link_intact(tmp_path):
    require_lab()
    seed = SEED
    print(f"seed {seed}")
    data = random.Random(seed).randbytes(2 << 20)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    link = LinkSpec(loss=0.05, delay=0.005, rate=50e6, seed=seed)
    with Lab(link) as lab:
        # TCP: every segment and every ACK crosses the relay
        lab.reset_counters()
        recv = lab.popen("b", [sys.executable, "-c", TCP_RECV, ADDR_B], stdout=subprocess.PIPE, text=True)
        try:
            assert recv.stdout and select.select([recv.stdout], [], [], 15)[0]
            port = json.loads(recv.stdout.readline())["port"]
            send = lab.popen("a", [sys.executable, "-c", TCP_SEND, str(source), ADDR_B, str(port)])
            assert send.wait(timeout=60) == 0
            out, _ = recv.communicate(timeout=30)
        finally:
            if recv.poll() is None:
                recv.kill()
                recv.wait()
        result = json.loads(out)
        assert (result["bytes"], result["sha256"], result["peer"]) == (len(data), digest, ADDR_A)
        check_loss_applied(lab.counters(), 0.05, {"a>b": len(data) // 1500, "b>a": 100})

        # rudp: rudp-recv in b, rudp-send in a, on a fresh link (counters zeroed)
        lab.set_link(LinkSpec(loss=0.05, delay=0.005, rate=50e6, seed=seed + 1))
        incoming = tmp_path / "incoming"
        incoming.mkdir()
        # --timeout 0.5: the server's dally after its final ACK (two timeouts) then takes 1 s, not 10
        server_argv = [rudp_command("rudp-recv"), "--once", "--json", "--port", "0", "--bind", ADDR_B, *FAST]
        server = lab.popen("b", [*server_argv, "--dir", str(incoming)], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout and select.select([server.stdout], [], [], 15)[0]
            listening = json.loads(server.stdout.readline())
            assert listening["event"] == "listening"
            client_argv = [
                rudp_command("rudp-send"),
                str(source),
                ADDR_B,
                "--port",
                str(listening["port"]),
                "--json",
            ]
            client = lab.popen("a", client_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = client.communicate(timeout=60)
            assert client.returncode == 0, out + err
            assert server.wait(timeout=30) == 0
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        assert hashlib.sha256((incoming / "source.bin").read_bytes()).hexdigest() == digest
        counters = lab.counters()
        blocks = len(data) // 1468
        check_loss_applied(counters, 0.05, {"a>b": blocks, "b>a": 10})
        names = dict(lab.names)
    assert not set(names.values()) & set(namespaces())
    assert_none_left(os.getpid())


LAB_CHILD = """
import json, os, time
from rudp.lab import Lab, LinkSpec
try:
    with Lab(LinkSpec(delay=0.001)) as lab:
        print(json.dumps({"names": lab.names, "relay": lab._relay.pid}), flush=True)
        time.sleep(60)
finally:
    print(json.dumps({"closed": True}), flush=True)
"""


def start_lab_child() -> tuple[subprocess.Popen, dict]:
    child = subprocess.Popen([sys.executable, "-c", LAB_CHILD], stdout=subprocess.PIPE, text=True)
    assert child.stdout and select.select([child.stdout], [], [], 20)[0], "the child did not build its lab"
    info = json.loads(child.stdout.readline())
    assert set(info["names"].values()) <= set(namespaces())
    return child, info


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.timeout(60)
def test_sigterm_tears_the_lab_down():
    require_lab()
    child, info = start_lab_child()
    try:
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=20) == 128 + signal.SIGTERM  # the handler ran: `with` and `finally` did too
        assert child.stdout and json.loads(child.stdout.readline()) == {"closed": True}
        assert not set(info["names"].values()) & set(namespaces())
        assert process_gone(info["relay"])
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert_none_left(child.pid)


@pytest.mark.timeout(60)
def test_sigkill_leaves_nothing_behind_for_long():
    """Nothing in the killed process runs: its relay sees the control pipe close and deletes the namespaces."""
    require_lab()
    child, info = start_lab_child()
    child.kill()
    child.wait()
    deadline = time.monotonic() + 3  # the relay notices at once; a lab starting elsewhere would take longer
    while set(info["names"].values()) & set(namespaces()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(info["names"].values()) & set(namespaces())
    while not process_gone(info["relay"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_gone(info["relay"])
    assert_none_left(child.pid)


@pytest.mark.timeout(60)
def test_a_new_lab_removes_stale_namespaces_of_dead_pids_only():
    require_lab()
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    stale = [f"{PREFIX}{dead.pid}-a", f"{PREFIX}{dead.pid}-b"]
    kept = [f"{PREFIX}{live.pid}-a", f"rudpother-{dead.pid}-a"]
    try:
        for name in stale + kept:
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        with Lab(LinkSpec()) as lab:
            present = set(namespaces())
            assert not set(stale) & present
            assert set(kept) <= present
            assert set(lab.names.values()) <= present
    finally:
        for name in stale + kept:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        live.kill()
        live.wait()
    assert_none_left(os.getpid(), dead.pid)
