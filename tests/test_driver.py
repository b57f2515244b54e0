"""rudp.net.driver.Transfer over a scripted socket: what leaves, and when, while a backlog is drained."""

from __future__ import annotations

import io
from collections import deque

from rudp.core.config import TransferConfig
from rudp.core.server import ReadServer, WriteServer
from rudp.net.driver import Transfer, keep_heap
from rudp.wire.codec import decode, describe, encode
from rudp.wire.packets import Ack, Data, ReadRequest, WriteRequest

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


class ListSink:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.data = bytearray()
        self.committed = False

    def write(self, data: bytes) -> None:
        self.log.append(f"write {len(data)}")
        self.data += data

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
