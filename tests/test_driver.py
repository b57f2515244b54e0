"""rudp.net.driver.Transfer over a scripted socket: what leaves, and when, while a backlog is drained."""

from __future__ import annotations

import io
import socket
from collections import deque
from pathlib import Path

import pytest

from rudp.core.config import TransferConfig
from rudp.core.server import ReadServer, WriteServer
from rudp.net.driver import SPIN_LIMIT, SPIN_RTT, Transfer, keep_heap, spin
from rudp.wire.codec import decode, describe, encode
from rudp.wire.packets import Ack, Data, ReadRequest, SelectiveAck, WriteRequest

CLIENT = ("127.0.0.1", 40000)
OPTIONS = (("blksize", "512"), ("windowsize", "4"))


class ScriptedSocket:
    """recvfrom hands out the queued datagrams, then EAGAIN; everything is logged in order."""

    def __init__(self, log: list[str]) -> None:
        self.incoming: deque[bytes] = deque()
        self.log = log

    def recvfrom(self, size: int, flags: int = 0) -> tuple[bytes, tuple]:
        if not self.incoming:
            raise BlockingIOError
        datagram = self.incoming.popleft()
        self.log.append(f"recv {describe(decode(datagram))}")
        return datagram, CLIENT

    def sendto(self, datagram: bytes, addr: tuple) -> int:
        self.log.append(f"send {describe(decode(datagram))}")
        return len(datagram)

    def sendmsg(self, buffers, ancdata=(), flags: int = 0, addr: tuple | None = None) -> int:
        return self.sendto(b"".join(buffers), addr)  # a DATA gathered from its header and payload


class ListSink:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.data = bytearray()
        self.committed = False

    def write(self, data: bytes) -> None:
        self.log.append(f"write {len(data)}")
        self.data += data

    def expect_size(self, size: int) -> None:
        pass

    def commit(self) -> None:
        self.log.append("commit")
        self.committed = True

    def abort(self) -> None:
        self.log.append("abort")


def clock() -> float:
    return 1.0


def test_answers_leave_while_the_backlog_is_drained_and_after_the_bytes_they_confirm_are_written() -> None:
    log: list[str] = []
    config = TransferConfig(windowsize=4, selective=False)
    session = WriteServer(WriteRequest("f.bin", "octet", OPTIONS), CLIENT, config, now=0.0)
    sock, sink = ScriptedSocket(log), ListSink(log)
    transfer = Transfer(session, sock, sink=sink)  # type: ignore[arg-type]
    transfer.service(0.0)
    assert log == ["send OACK blksize=512 windowsize=4"]
    log.clear()
    payload = bytes(range(256)) * 16 + b"end"  # 8 full blocks and a short one
    for block in range(1, 10):
        sock.incoming.append(encode(Data(block, payload[(block - 1) * 512 : block * 512])))
    transfer.receive(clock)  # one wake-up finds two windows and the final block waiting
    assert log == [
        *[f"recv DATA block={b} len=512" for b in (1, 2, 3, 4)],
        *["write 512"] * 4,
        "send ACK block=4",  # before the next window is read, and after its bytes are written
        *[f"recv DATA block={b} len=512" for b in (5, 6, 7, 8)],
        *["write 512"] * 4,
        "send ACK block=8",
        "recv DATA block=9 len=3",
        "write 3",
        "commit",  # the file is in place before the final ACK says so
        "send ACK block=9",
    ]
    assert bytes(sink.data) == payload and transfer.outcome is not None


def test_a_sending_session_answers_each_ack_before_reading_the_next() -> None:
    log: list[str] = []
    data = b"x" * (3 * 512 + 10)
    config = TransferConfig(windowsize=1)
    session = ReadServer(ReadRequest("f.bin", "octet", ()), CLIENT, config, file_size=len(data), now=0.0)
    sock = ScriptedSocket(log)
    transfer = Transfer(session, sock, source=io.BytesIO(data))  # type: ignore[arg-type]
    transfer.service(0.0)
    assert log == ["send DATA block=1 len=512"]
    sock.incoming.extend(encode(Ack(block)) for block in (1, 2, 3, 4))  # RFC 1350 lockstep, ACKs already in
    transfer.receive(clock)
    assert log == [
        "send DATA block=1 len=512",
        "recv ACK block=1",
        "send DATA block=2 len=512",
        "recv ACK block=2",
        "send DATA block=3 len=512",
        "recv ACK block=3",
        "send DATA block=4 len=10",
        "recv ACK block=4",
    ]
    assert transfer.outcome is not None and transfer.file_bytes == len(data)


def test_keep_heap_is_idempotent() -> None:
    keep_heap()
    keep_heap()


# ----------------------------------------------------------------- busy-waiting before a sleep (spin)
class LateSocket(ScriptedSocket):
    """Like ScriptedSocket, but the queued datagram only 'arrives' on the n-th read."""

    def __init__(self, log: list[str], arrives_on_read: int) -> None:
        super().__init__(log)
        self.reads = 0
        self.arrives_on_read = arrives_on_read
        self.late: deque[bytes] = deque()

    def recvfrom(self, size: int, flags: int = 0) -> tuple[bytes, tuple]:
        self.reads += 1
        if self.reads == self.arrives_on_read:
            self.incoming.extend(self.late)
        return super().recvfrom(size, flags)


class StepClock:
    """A clock that moves ``step`` seconds each time it is read."""

    def __init__(self, start: float, step: float) -> None:
        self.now, self.step = start, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def lockstep_sender(log: list[str], sock: ScriptedSocket, srtt: float | None) -> Transfer:
    data = b"x" * (3 * 512)
    session = ReadServer(
        ReadRequest("f.bin", "octet", ()), CLIENT, TransferConfig(windowsize=1), file_size=len(data), now=0.0
    )
    transfer = Transfer(session, sock, source=io.BytesIO(data))  # type: ignore[arg-type]
    transfer.service(0.0)
    session.rtt.srtt = srtt
    log.clear()
    return transfer


def test_spin_handles_an_answer_that_arrives_while_it_polls_and_answers_it_at_once() -> None:
    log: list[str] = []
    sock = LateSocket(log, arrives_on_read=5)
    sock.late.append(encode(Ack(1)))
    transfer = lockstep_sender(log, sock, srtt=50e-6)
    assert spin(transfer, StepClock(0.0, 1e-6)) is True
    assert log == ["recv ACK block=1", "send DATA block=2 len=512"]
    assert sock.reads == 6  # four empty polls, the ACK, and the read that found the socket empty again


def test_spin_gives_up_after_twice_the_smoothed_rtt() -> None:
    log: list[str] = []
    sock = LateSocket(log, arrives_on_read=10**6)
    transfer = lockstep_sender(log, sock, srtt=20e-6)
    assert spin(transfer, StepClock(0.0, 1e-6)) is False
    # each poll reads the clock once: 2 x 20 µs of 1 µs steps (the first read sets the start)
    assert 30 <= sock.reads <= 41 and log == []


def test_spin_never_busy_waits_longer_than_its_limit_or_past_the_sessions_deadline() -> None:
    log: list[str] = []
    sock = LateSocket(log, arrives_on_read=10**6)
    transfer = lockstep_sender(log, sock, srtt=SPIN_RTT)  # 2 x srtt is far above SPIN_LIMIT
    spin(transfer, StepClock(0.0, 1e-6))
    assert sock.reads <= SPIN_LIMIT / 1e-6 + 1
    sock.reads = 0
    deadline = transfer.session.get_timer()
    assert deadline is not None
    spin(transfer, StepClock(deadline - 10e-6, 1e-6))  # the retransmission is due in 10 µs
    assert sock.reads <= 11


def test_spin_is_bounded_even_by_a_clock_that_stands_still() -> None:
    log: list[str] = []
    sock = LateSocket(log, arrives_on_read=10**6)
    transfer = lockstep_sender(log, sock, srtt=50e-6)
    assert spin(transfer, lambda: 0.5) is False
    assert 0 < sock.reads <= 1000


def test_spin_does_not_poll_on_a_long_or_unmeasured_path() -> None:
    for srtt in (None, 2 * SPIN_RTT, 0.05):
        log: list[str] = []
        sock = LateSocket(log, arrives_on_read=1)
        sock.late.append(encode(Ack(1)))
        transfer = lockstep_sender(log, sock, srtt=srtt)
        assert spin(transfer, StepClock(0.0, 1e-6)) is False
        assert sock.reads == 0 and log == []


def test_a_server_with_one_transfer_polls_it_before_sleeping_and_does_not_sleep_when_it_heard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rudp.net.server as server_module

    (tmp_path / "f.bin").write_bytes(b"y" * 2000)
    spun: list[Transfer] = []
    waits: list[float | None] = []

    def fake_spin(transfer: Transfer, clock: object) -> bool:
        spun.append(transfer)
        return True

    monkeypatch.setattr(server_module, "spin", fake_spin)
    with server_module.Server(server_module.ServerConfig(str(tmp_path), "127.0.0.1", 0, serve=True)) as srv:
        real_select = srv._selector.select

        def select(timeout: float | None = None) -> list:
            waits.append(timeout)
            return real_select(timeout)

        monkeypatch.setattr(srv._selector, "select", select)
        srv.step(timeout=0.0)
        assert spun == [] and waits == [0.0]  # nothing running: nothing to spin on
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(encode(ReadRequest("f.bin", "octet", ())), srv.address)
            srv.step(timeout=1.0)  # the request: a transfer starts
            assert srv.active == 1
            waits.clear()
            srv.step(timeout=1.0)
            assert len(spun) == 1 and spun[0] is next(iter(srv._active.values())).transfer
            assert waits == [0.0]  # it heard something while polling, so it only looks, never sleeps


def test_progress_never_counts_the_digest_after_the_data_as_file_bytes() -> None:
    # 1526 file bytes and the 32-byte xxh128 digest after them (spec 7.7): blocks 512, 512, 512 (the last 10 of
    # them digest) and a final 22.  A SACK for block 3 acknowledges digest bytes before the transfer ends.
    log: list[str] = []
    data = b"z" * (3 * 512 - 10)
    options = (("blksize", "512"), ("windowsize", "4"), ("sack", "1"), ("xxh128", "trailer"))
    session = ReadServer(
        ReadRequest("f.bin", "octet", options), CLIENT, TransferConfig(windowsize=4), file_size=None, now=0.0
    )
    sock = ScriptedSocket(log)
    seen: list[int] = []
    transfer = Transfer(session, sock, source=io.BytesIO(data), on_progress=seen.append)  # type: ignore[arg-type]
    transfer.service(0.0)
    sock.incoming.append(encode(Ack(0)))  # the client confirms the OACK
    transfer.receive(clock)
    assert log[-4:] == [f"send DATA block={b} len={n}" for b, n in ((1, 512), (2, 512), (3, 512), (4, 22))]
    sock.incoming.append(encode(SelectiveAck(3, b"")))
    transfer.receive(clock)
    assert sum(seen) == len(data)  # not 1536: the digest's first 10 bytes were acknowledged, but they are no file
    sock.incoming.append(encode(Ack(4)))
    transfer.receive(clock)
    assert transfer.outcome is not None and sum(seen) == transfer.file_bytes == len(data)
