"""UDP segmentation offload in the driver (rudp.net.batching), over real loopback sockets.

What is checked: a sender with Ethernet-sized blocks really batches (GSO sends counted by the Transfer), yet a
plain receiver without GRO reads one TFTP DATA datagram per block, in order, each exactly once; a GRO receiver
cuts a coalesced buffer back into its datagrams; and when the kernel refuses to segment (a patched EIO, or the
kernel's own EINVAL for a socket without UDP checksums) every datagram still leaves exactly once, one per
``sendto``.  No timing is asserted: the senders use a fixed 5 s timeout, so nothing is retransmitted on loopback
and every datagram seen on the wire was sent once."""

from __future__ import annotations

import errno
import io
import random
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest
from inproc import serving

import rudp
import rudp.net.server as server_module
from rudp.core.client import WriteClient
from rudp.core.config import TransferConfig
from rudp.core.server import WriteServer
from rudp.net import batching
from rudp.net.driver import Transfer, run
from rudp.net.sockets import udp_socket
from rudp.wire.codec import decode, encode
from rudp.wire.packets import Ack, Data, OptionAck, WriteRequest

pytestmark = pytest.mark.skipif(not batching.ENABLED, reason="RUDP_NO_GSO is set")

SEED = 11
BLKSIZE = 1468  # an IPv4 Ethernet-sized block: the case batching is for
SO_NO_CHECK = 11  # Linux: send UDP without checksums; the kernel then refuses GSO (EINVAL)


def payload(blocks: int, tail: int = 100) -> bytes:
    print(f"seed {SEED}")
    return random.Random(SEED).randbytes(blocks * BLKSIZE + tail)


def client_transfer(sock: socket.socket, server: tuple, data: bytes, windowsize: int) -> Transfer:
    """A WriteClient sending ``data`` with a fixed 5 s timer, so nothing is sent twice on a quiet loopback."""
    config = TransferConfig(blksize=BLKSIZE, windowsize=windowsize, timeout=5.0, fixed_timeout=True)
    session = WriteClient("copy.bin", server, config, tsize=len(data), now=time.monotonic())
    return Transfer(session, sock, source=io.BytesIO(data), started=time.monotonic())


# ----------------------------------------------------------------- a minimal TFTP receiver without GRO
@dataclass
class PlainReceiver:
    """A go-back-N TFTP receiver (RFC 1350/2347/7440) on a plain socket read with ``recvfrom``: one datagram
    per read, as on any wire.  Every datagram's length and block number is logged."""

    windowsize: int = 64
    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    seen: list[tuple[int, int]] = field(default_factory=list)  # (datagram length, block number)
    received: bytearray = field(default_factory=bytearray)
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(20)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> tuple:
        return self.sock.getsockname()

    def _serve(self) -> None:
        try:
            request, client = self.sock.recvfrom(65536)
            if not isinstance(decode(request), WriteRequest):
                self.problems.append(f"not a WRQ: {request[:20]!r}")
                return
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tid:
                tid.bind(("127.0.0.1", 0))
                tid.settimeout(20)
                options = (("blksize", str(BLKSIZE)), ("windowsize", str(self.windowsize)))
                tid.sendto(encode(OptionAck(options)), client)
                expected = 1
                while True:
                    datagram, _ = tid.recvfrom(65536)
                    packet = decode(datagram)
                    if not isinstance(packet, Data):
                        self.problems.append(f"not DATA: {packet}")
                        return
                    self.seen.append((len(datagram), packet.block))
                    if packet.block != expected:
                        self.problems.append(f"block {packet.block} where {expected} was due")
                        return
                    self.received += packet.data
                    last = len(packet.data) < BLKSIZE
                    if last or expected % self.windowsize == 0:
                        tid.sendto(encode(Ack(expected)), client)
                    if last:
                        return
                    expected += 1
        except Exception as exc:  # reported by the test, which joins the thread
            self.problems.append(repr(exc))

    def finish(self) -> None:
        self.thread.join(timeout=20)
        self.sock.close()


def check_wire(receiver: PlainReceiver, data: bytes) -> None:
    """One DATA datagram of 4 + BLKSIZE bytes per block (the last shorter), blocks 1, 2, 3, ... each once."""
    assert receiver.problems == []
    blocks = len(data) // BLKSIZE + 1
    assert [block for _, block in receiver.seen] == list(range(1, blocks + 1))
    assert [size for size, _ in receiver.seen] == [4 + BLKSIZE] * (blocks - 1) + [4 + len(data) % BLKSIZE]
    assert bytes(receiver.received) == data


def test_a_sender_batches_yet_a_plain_receiver_reads_one_data_datagram_per_block() -> None:
    data = payload(300)
    receiver = PlainReceiver(windowsize=64)
    try:
        with udp_socket(socket.AF_INET) as sock:
            transfer = client_transfer(sock, receiver.address, data, windowsize=64)
            run(transfer)
    finally:
        receiver.finish()
    assert transfer.local_error is None and transfer.file_bytes == len(data)
    check_wire(receiver, data)
    assert transfer.session.stats.retransmissions == 0
    # 64-block windows travel as GSO sends of at most 44 segments (44 x 1472 bytes <= 65507)
    assert transfer.gso_refused is None
    assert transfer.gso_sends >= 300 // 64 and transfer.gso_datagrams >= 256
    assert transfer.gso_datagrams / transfer.gso_sends > 10


def test_an_upload_with_ethernet_sized_blocks_to_a_rudp_server_batches_both_ways(tmp_path, monkeypatch) -> None:
    servers: list[Transfer] = []

    class Recorded(Transfer):
        def __post_init__(self) -> None:
            super().__post_init__()
            servers.append(self)

    monkeypatch.setattr(server_module, "Transfer", Recorded)
    data = payload(2000)
    with serving(rudp.ServerConfig(directory=str(tmp_path), host="127.0.0.1", port=0)) as srv:
        listener_gro = srv.sock.getsockopt(batching.SOL_UDP, batching.UDP_GRO)
        with udp_socket(socket.AF_INET) as sock:
            transfer = client_transfer(sock, srv.address, data, windowsize=256)
            run(transfer)
    assert transfer.local_error is None and transfer.outcome is not None
    assert (tmp_path / "copy.bin").read_bytes() == data
    assert transfer.gso_refused is None and transfer.gso_sends > 0 and transfer.gso_datagrams > transfer.gso_sends
    (server,) = servers
    assert server._gro and server.gro_reads > 0  # the server's transfer socket read coalesced buffers and cut them
    assert listener_gro == 0  # never on the listener, which reads requests with recvfrom and cannot cut


# ----------------------------------------------------------------- a GRO receiver cuts coalesced buffers
class ListSink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.committed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def expect_size(self, size: int) -> None:
        pass

    def commit(self) -> None:
        self.committed = True

    def abort(self) -> None:
        pass


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "dual-stack-ipv6"])
def test_a_gro_receiver_cuts_a_coalesced_buffer_into_its_datagrams(family: int) -> None:
    blksize, blocks = 512, 40
    data = random.Random(SEED).randbytes(blocks * blksize + 77)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(10)
        # the server's transfer socket as rudp.net.server makes it (dual stack: the peer is an IPv4-mapped address)
        bind = ("::", 0) if family == socket.AF_INET6 else ("127.0.0.1", 0)
        with udp_socket(family, bind, dual_stack=family == socket.AF_INET6) as sock:
            peer = client.getsockname()
            if family == socket.AF_INET6:
                peer = ("::ffff:" + peer[0], peer[1], 0, 0)
            options = (("blksize", str(blksize)), ("windowsize", "64"))
            session = WriteServer(
                WriteRequest("f.bin", "octet", options), peer, TransferConfig(windowsize=64), now=0
            )
            sink = ListSink()
            transfer = Transfer(session, sock, sink=sink)
            assert transfer._gro
            transfer.service(time.monotonic())
            oack, server = client.recvfrom(65536)
            assert isinstance(decode(oack), OptionAck)
            run_ = [encode(Data(b + 1, data[b * blksize : (b + 1) * blksize])) for b in range(blocks + 1)]
            client.sendmsg(run_, batching.segment_option(blksize + 4), 0, ("127.0.0.1", server[1]))
            for _ in range(1000):
                if transfer.outcome is not None:
                    break
                transfer.receive(time.monotonic)
    assert bytes(sink.data) == data and sink.committed
    assert transfer.gro_reads == 1 and transfer.gro_datagrams == blocks + 1
    assert session.stats.datagrams_received == blocks + 1 and not session.stats.malformed


def test_segments_cuts_at_the_reported_size_and_drops_a_truncated_tail() -> None:
    size = 100
    cmsg = [(batching.SOL_UDP, batching.UDP_GRO, size.to_bytes(4, sys.byteorder))]
    buffer = bytes(range(250))
    assert batching.segments(buffer, cmsg, False) == [buffer[:100], buffer[100:200], buffer[200:]]
    assert batching.segments(buffer, cmsg, True) == [buffer[:100], buffer[100:200]]  # 50 bytes cut short
    assert batching.segments(buffer[:100], cmsg, False) is None  # one datagram: passed on as it is
    assert batching.segments(buffer, [], False) is None  # no segment size: one datagram


# ----------------------------------------------------------------- falling back when the kernel refuses
class RefusingSocket(socket.socket):
    """A UDP socket whose GSO sends fail as they do on a device without checksum offload (EIO)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.refused = 0
        self.sendtos = 0

    def sendmsg(self, *args: object) -> int:  # type: ignore[override]
        if len(args) > 1 and args[1]:  # ancillary data: UDP_SEGMENT, a GSO send
            self.refused += 1
            raise OSError(errno.EIO, "Input/output error")
        self.sendtos += 1  # one DATA gathered from its header and payload: a plain single send
        return super().sendmsg(*args)  # type: ignore[arg-type,no-any-return]

    def sendto(self, *args: object) -> int:  # type: ignore[override]
        self.sendtos += 1
        return super().sendto(*args)  # type: ignore[call-overload,no-any-return]


def test_when_gso_is_refused_every_datagram_leaves_once_by_sendto() -> None:
    data = payload(300)
    receiver = PlainReceiver(windowsize=64)
    try:
        with RefusingSocket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            transfer = client_transfer(sock, receiver.address, data, windowsize=64)
            run(transfer)
    finally:
        receiver.finish()
    assert transfer.local_error is None and transfer.file_bytes == len(data)
    check_wire(receiver, data)
    assert transfer.session.stats.retransmissions == 0
    assert sock.refused == 1 and transfer.gso_refused == "EIO"  # tried once, then never again on this socket
    assert transfer.gso_sends == 0
    assert sock.sendtos == 1 + len(data) // BLKSIZE + 1  # the WRQ, then one single send per block


def test_when_the_kernel_refuses_gso_the_batch_goes_again_datagram_by_datagram() -> None:
    data = payload(300)
    receiver = PlainReceiver(windowsize=64)
    try:
        with udp_socket(socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)  # Linux refuses GSO without checksums: EINVAL
            transfer = client_transfer(sock, receiver.address, data, windowsize=64)
            run(transfer)
    finally:
        receiver.finish()
    assert transfer.local_error is None and transfer.file_bytes == len(data)
    check_wire(receiver, data)
    assert transfer.session.stats.retransmissions == 0
    assert transfer.gso_refused == "EINVAL" and transfer.gso_sends == 0
