"""The server's limits (spec section 13.5): concurrent transfers in total and per address, the per-source
request rate, the size limit, idle transfers, memory per transfer, and a flood of 1,000 WRQs."""

from __future__ import annotations

import random
import resource
import socket
import threading
import time

import pytest

import rudp
from rudp.core.config import TransferConfig
from rudp.core.ratelimit import TokenBuckets
from rudp.core.server import WriteServer
from rudp.net.server import Server, ServerConfig
from rudp.wire.codec import decode, encode
from rudp.wire.packets import Ack, Data, Error, ErrorCode, OptionAck, ReadRequest, WriteRequest

FAST = TransferConfig(blksize=512, windowsize=1, timeout=0.2, retries=2)


class Running:
    """An in-process Server stepped by a background thread."""

    def __init__(self, directory, **limits):
        config = ServerConfig(directory=str(directory), host="127.0.0.1", port=0, **limits)
        self.server = Server(config)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            self.server.step(0.02)

    def close(self):
        self._stop.set()
        self._thread.join()
        self.server.close()


@pytest.fixture
def running(tmp_path):
    made = []

    def make(**limits):
        limits.setdefault("transfer", FAST)
        made.append(Running(tmp_path, **limits))
        return made[-1].server

    yield make
    for r in made:
        r.close()


def request_from(port: int, packet, *, source: str = "127.0.0.1", wait: float = 2.0):
    """Send one request from a fresh socket bound to ``source``; the socket and the decoded answer (or None)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.settimeout(wait)
    sock.sendto(encode(packet), ("127.0.0.1", port))
    try:
        data, addr = sock.recvfrom(70000)
    except TimeoutError:
        return sock, None, None
    return sock, decode(data), addr


def close_all(socks):
    for s in socks:
        s.close()


def test_token_buckets_refill_at_the_rate_and_forget_full_buckets():
    buckets = TokenBuckets(rate=10, burst=3, max_sources=2)
    assert [buckets.take("a", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert buckets.take("a", now=0.05) is False  # half a token
    assert buckets.take("a", now=0.1) is True  # one token after 1/rate
    assert buckets.take("b", now=0.1) is True
    assert buckets.take("c", now=0.1) is False  # table full, nothing refilled: fail closed
    assert buckets.take("c", now=1.0) is True and len(buckets) <= 2  # full buckets were forgotten


def test_max_transfers_refuses_with_error_0_once_every_place_is_proven(running):
    server = running(max_transfers=2, max_per_client=None)
    socks = []
    for name in ("a", "b"):
        sock, answer, tid = request_from(server.port, WriteRequest(name, "octet"))
        assert answer == Ack(0)
        sock.sendto(encode(Data(1, b"x" * 512)), tid)  # prove the address: the transfer holds its place
        assert decode(sock.recv(100)) == Ack(1)
        socks.append(sock)
    sock, answer, _ = request_from(server.port, WriteRequest("c", "octet"))
    socks.append(sock)
    assert answer == Error(ErrorCode.NOT_DEFINED, "server busy: too many transfers")
    assert server.peak_transfers == 2
    close_all(socks)


def test_max_per_client_counts_per_address_and_unproven_transfers_make_room(running):
    server = running(max_transfers=None, max_per_client=2)
    socks = []
    for name in ("a", "b"):
        sock, answer, tid = request_from(server.port, WriteRequest(name, "octet"))
        sock.sendto(encode(Data(1, b"x" * 512)), tid)
        assert decode(sock.recv(100)) == Ack(1)
        socks.append(sock)
    sock, answer, _ = request_from(server.port, WriteRequest("c", "octet"))
    socks.append(sock)
    assert answer == Error(ErrorCode.NOT_DEFINED, "server busy: too many transfers from your address")
    # another address has its own places
    sock, answer, _ = request_from(server.port, WriteRequest("d", "octet"), source="127.0.0.2")
    socks.append(sock)
    assert answer == Ack(0)
    # and its unproven transfers give way to its newer requests instead of refusing them
    for name in ("e", "f", "g"):
        sock, answer, _ = request_from(server.port, WriteRequest(name, "octet"), source="127.0.0.2")
        socks.append(sock)
        assert answer == Ack(0)
    assert server.evicted == 2 and server.peak_per_client == 2
    close_all(socks)


def test_a_source_over_its_rate_is_dropped_without_an_answer(running):
    server = running(rate_limit=5.0, rate_burst=3)  # downloads are off: every RRQ draws one ERROR 2
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.3)
    for _ in range(10):
        sock.sendto(encode(ReadRequest("x", "octet")), ("127.0.0.1", server.port))
    answers = []
    try:
        while True:
            answers.append(decode(sock.recv(100)))
    except TimeoutError:
        pass
    assert len(answers) == 3 and all(isinstance(a, Error) for a in answers)
    assert server.rate_limited == 7
    time.sleep(0.25)  # a token and a bit
    sock.sendto(encode(ReadRequest("x", "octet")), ("127.0.0.1", server.port))
    assert isinstance(decode(sock.recv(100)), Error)
    sock.close()


def test_a_lying_tsize_is_stopped_at_the_size_limit_while_receiving(running, tmp_path):
    server = running(transfer=TransferConfig(blksize=512, windowsize=1, timeout=0.2, retries=2, max_size=1000))
    sock, answer, tid = request_from(server.port, WriteRequest("lie.bin", "octet", (("tsize", "900"),)))
    assert answer == OptionAck((("tsize", "900"),))
    for block in (1, 2):
        sock.sendto(encode(Data(block, b"x" * 512)), tid)
        answer = decode(sock.recv(100))
    assert isinstance(answer, Error) and answer.code == ErrorCode.DISK_FULL  # block 2 passes 1000 bytes
    sock.close()
    time.sleep(0.1)
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone, nothing at the final name


def test_an_upload_whose_sender_vanishes_is_removed_within_the_retry_budget(running, tmp_path):
    server = running()
    sock, answer, tid = request_from(server.port, WriteRequest("gone.bin", "octet"))
    sock.sendto(encode(Data(1, b"x" * 512)), tid)
    assert decode(sock.recv(100)) == Ack(1)
    assert len(list(tmp_path.glob(".gone.bin.*.rudp-part"))) == 1
    # the sender vanishes: its socket stays open (no ICMP error to end things early) but answers nothing
    start = time.monotonic()
    while server.active and time.monotonic() < start + 5:
        time.sleep(0.05)
    assert server.active == 0  # retry budget: 0.2 s timeouts, 2 retries, < 2 s with the adaptive backoff
    assert 0.3 < time.monotonic() - start < 3
    assert list(tmp_path.iterdir()) == []
    sock.close()


def test_the_idle_timeout_ends_a_transfer_that_asked_for_a_long_timeout(running, tmp_path):
    transfer = TransferConfig(blksize=512, windowsize=1, timeout=5.0, retries=5)
    server = running(transfer=transfer, idle_timeout=0.5)
    sock, answer, tid = request_from(server.port, WriteRequest("idle.bin", "octet", (("timeout", "255"),)))
    assert answer == OptionAck((("timeout", "255"),))
    sock.sendto(encode(Data(1, b"x" * 512)), tid)
    assert decode(sock.recv(100)) == Ack(1)
    start = time.monotonic()
    while server.active and time.monotonic() < start + 5:
        time.sleep(0.05)
    assert server.active == 0 and server.idle_ended == 1  # not 255 s x retries
    assert time.monotonic() - start < 3
    assert list(tmp_path.iterdir()) == []
    sock.close()


def test_a_selective_repeat_receiver_holds_at_most_a_window_beyond_a_gap():
    seed = 6
    print(f"seed {seed}")
    rng = random.Random(seed)
    config = TransferConfig(blksize=512, windowsize=16)
    request = WriteRequest("f", "octet", (("windowsize", "16"), ("sack", "1")))
    session = WriteServer(request, ("127.0.0.1", 9), config, now=0.0)
    session.datagrams_to_send()
    for i in range(2000):  # block 1 never comes; everything else, in any order, many times
        session.receive_datagram(encode(Data(rng.randrange(2, 65536), b"x" * 512)), ("127.0.0.1", 9), now=i / 1e3)
        session.datagrams_to_send()
    assert 0 < len(session._held) <= 15  # the window less the missing block: 16 x 512 bytes at most
    assert max(session._held) <= 16


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_a_flood_of_1000_wrqs_keeps_the_caps_and_memory_and_a_real_upload_still_completes(tmp_path):
    incoming = tmp_path / "in"
    incoming.mkdir()
    runner = Running(incoming, transfer=TransferConfig(blksize=65464, windowsize=64, timeout=0.5, retries=2))
    server = runner.server
    try:
        before = rss_kib()
        socks = []
        for i in range(1000):  # 100 addresses x 10 source ports, none of which ever answers
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((f"127.0.1.{i // 10 + 1}", 0))
            socks.append(sock)
            opts = (("blksize", "65464"), ("windowsize", "64"), ("tsize", "100000000"))
            sock.sendto(encode(WriteRequest(f"flood{i}.bin", "octet", opts)), ("127.0.0.1", server.port))
        # a real upload from another address, in the middle of the flood's aftermath
        src = tmp_path / "real.bin"
        payload = random.Random(7).randbytes(300_000)
        src.write_bytes(payload)
        rudp.send_file(src, "127.0.0.1", port=server.port, config=rudp.client_config(timeout=2.0))
        assert (incoming / "real.bin").read_bytes() == payload
        grew = rss_kib() - before
        print(
            f"peak {server.peak_transfers} transfers, {server.peak_per_client} per address, "
            f"{server.evicted} evicted, {server.rate_limited} rate-limited, RSS +{grew} KiB"
        )
        assert server.peak_transfers <= 64 and server.peak_per_client <= 8
        assert server.evicted > 0  # the caps were reached
        assert grew < 64 * 1024
        close_all(socks)
        deadline = time.monotonic() + 5
        while server.active and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.active == 0
        assert [p.name for p in incoming.iterdir()] == ["real.bin"]  # every flood temporary file removed
    finally:
        runner.close()


@pytest.mark.parametrize(
    "flag, value, fragment",
    [
        ("--max-transfers", "many", "whole number"),
        ("--max-transfers", "-1", ">= 0"),
        ("--max-per-client", "1.5", "whole number"),
        ("--rate-limit", "abc", "rate-limit"),
        ("--rate-burst", "x", "rate-burst"),
        ("--idle-timeout", "-3", "idle-timeout"),
    ],
)
def test_bad_limit_values_are_one_line_usage_errors(flag: str, value: str, fragment: str) -> None:
    from cliharness import assert_one_line_error, run

    proc = run("rudp-recv", "--port", "0", flag, value, timeout=20)
    assert_one_line_error(proc, 2, fragment)
