"""The Python API over real loopback sockets: send_file, get_file, Server; TIDs checked on the wire."""

from __future__ import annotations

import random
import socket
import threading
import time

import pytest
from inproc import serving

import rudp
from rudp.api import MAX_FITTED_WINDOW, fit_to_path
from rudp.core.config import window_for_buffer
from rudp.net.sockets import blksize_for_mtu, receive_buffer, udp_socket
from rudp.wire.codec import decode, encode
from rudp.wire.packets import Ack, Data, Error, ErrorCode, WriteRequest

SEED = 7


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    with serving(rudp.ServerConfig(directory=str(served), host="127.0.0.1", port=0, serve=True)) as srv:
        yield srv


def test_send_and_get_through_the_api(server, tmp_path):
    print(f"seed {SEED}")
    data = random.Random(SEED).randbytes(250_000)
    src = tmp_path / "api.bin"
    src.write_bytes(data)
    seen = []
    done = []
    result = rudp.send_file(
        src,
        "127.0.0.1",
        port=server.port,
        on_progress=lambda n, total: seen.append((n, total)),
        on_complete=done.append,
    )
    # fitted to the path: loopback's MTU carries the largest block; the window is what a receive buffer holds
    assert result.ok and result.bytes == len(data) and result.blksize == 65464
    held = window_for_buffer(rcvbuf(), 65464)  # what a receive buffer here holds (depends on net.core.rmem_max)
    asked = min(MAX_FITTED_WINDOW, max(8, held))
    assert result.windowsize == min(asked, 64, held)  # the fixture's server grants at most 64, and what it holds
    assert sum(n for n, _ in seen) == len(data) and seen[-1][1] == len(data)
    assert done == [result]
    back = tmp_path / "back.bin"
    got = rudp.get_file("127.0.0.1", "api.bin", back, port=server.port, config=rudp.client_config(blksize=512))
    assert back.read_bytes() == data and got.tsize == len(data) and got.blksize == 512


def rcvbuf() -> int:
    with udp_socket(socket.AF_INET) as sock:
        return receive_buffer(sock)


def test_fitting_to_the_path_uses_the_route_mtu_and_keeps_explicit_values():
    config = rudp.client_config()
    assert config.fit_blksize and config.fit_windowsize
    with udp_socket(socket.AF_INET) as sock:
        fitted = fit_to_path(config, socket.AF_INET, ("127.0.0.1", 9), sock)
        assert fitted.blksize == 65464 and 8 <= fitted.windowsize <= MAX_FITTED_WINDOW
        kept = fit_to_path(rudp.client_config(blksize=700, windowsize=3), socket.AF_INET, ("127.0.0.1", 9), sock)
        assert (kept.blksize, kept.windowsize) == (700, 3)
    assert blksize_for_mtu(1500, socket.AF_INET) == 1468 and blksize_for_mtu(1500, socket.AF_INET6) == 1448
    assert blksize_for_mtu(65535, socket.AF_INET) == 65464 and blksize_for_mtu(200, socket.AF_INET) == 512
    assert window_for_buffer(8 * 1024 * 1024, 65464) == 63 and window_for_buffer(10, 1468) == 1


def test_api_errors_carry_exit_codes(server, tmp_path):
    with pytest.raises(rudp.PeerError) as info:
        rudp.get_file("127.0.0.1", "absent", tmp_path / "x", port=server.port)
    assert info.value.code == ErrorCode.FILE_NOT_FOUND and info.value.exit_code == 4
    with pytest.raises(rudp.LocalFileError):
        rudp.send_file(tmp_path / "absent", "127.0.0.1", port=server.port)
    with pytest.raises(rudp.UsageError):
        rudp.client_config(blksize=4)


def test_datagram_from_a_wrong_tid_gets_error_5_and_the_transfer_goes_on(server, tmp_path):
    data = random.Random(SEED).randbytes(3_000_000)
    src = tmp_path / "tid.bin"
    src.write_bytes(data)
    outcome = {}
    config = rudp.client_config(blksize=512, windowsize=1, timeout=2.0)
    sender = threading.Thread(
        target=lambda: outcome.setdefault("r", rudp.send_file(src, "127.0.0.1", port=server.port, config=config))
    )
    sender.start()
    deadline = time.monotonic() + 10
    ports = []
    while not ports and time.monotonic() < deadline:
        ports = [a.transfer.sock.getsockname()[1] for a in list(server._active.values())]
        time.sleep(0.005)
    assert ports, "the upload never started"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.settimeout(5)
        stranger.sendto(encode(Ack(1)), ("127.0.0.1", ports[0]))  # not from the client's TID
        reply, addr = stranger.recvfrom(1000)
    assert decode(reply) == Error(ErrorCode.UNKNOWN_TID, "Unknown transfer ID") and addr[1] == ports[0]
    sender.join(timeout=60)
    assert outcome["r"].ok and (tmp_path / "served" / "tid.bin").read_bytes() == data
    # The client has its final ACK a moment before the server's thread records the result: wait for it.
    deadline = time.monotonic() + 10
    while not server.results and time.monotonic() < deadline:
        time.sleep(0.005)
    assert server.results and server.results[-1].stats["wrong_tid"] == 1


def test_a_client_reusing_its_port_gets_a_new_transfer_while_the_last_one_dallies(server, tmp_path):
    """tftp-hpa's interactive client sends several commands from one port; the server must not mistake the
    second request for a repeat of the first while the first (upload) session dallies after its final ACK."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(3)  # far less than the 10 s dally of the first session
        for name, content in (("one", b"first file"), ("two", b"second file")):
            client.sendto(encode(WriteRequest(name, "octet")), ("127.0.0.1", server.port))
            reply, tid = client.recvfrom(2000)
            assert decode(reply) == Ack(0)
            client.sendto(encode(Data(1, content)), tid)
            reply, _ = client.recvfrom(2000)
            assert decode(reply) == Ack(1)
    assert (tmp_path / "served" / "one").read_bytes() == b"first file"
    assert (tmp_path / "served" / "two").read_bytes() == b"second file"


def test_a_request_repeated_while_its_transfer_runs_starts_no_second_transfer(server, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(3)
        request = encode(WriteRequest("dup.bin", "octet"))
        client.sendto(request, ("127.0.0.1", server.port))
        reply, tid = client.recvfrom(2000)
        assert decode(reply) == Ack(0)
        client.sendto(request, ("127.0.0.1", server.port))  # as if our request had been resent
        reply, again = client.recvfrom(2000)  # our address is unproven: the same transfer answers once more
        assert decode(reply) == Ack(0) and again == tid
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):
            client.recvfrom(2000)  # no second transfer, no second ACK 0 from a new port
        client.settimeout(3)
        client.sendto(encode(Data(1, b"once")), tid)
        assert decode(client.recvfrom(2000)[0]) == Ack(1)
    assert (tmp_path / "served" / "dup.bin").read_bytes() == b"once"


def test_a_name_taken_during_the_upload_gets_error_6_not_a_false_success(server, tmp_path):
    data = random.Random(SEED).randbytes(2_000_000)
    src = tmp_path / "race.bin"
    src.write_bytes(data)
    final = tmp_path / "served" / "race.bin"
    errors = []

    def upload():
        try:
            rudp.send_file(
                src, "127.0.0.1", port=server.port, config=rudp.client_config(blksize=512, windowsize=1)
            )
        except rudp.RudpError as exc:
            errors.append(exc)

    sender = threading.Thread(target=upload)
    sender.start()
    deadline = time.monotonic() + 10
    while not list((tmp_path / "served").glob("*.rudp-part")) and time.monotonic() < deadline:
        time.sleep(0.005)
    final.write_bytes(b"someone else's file")  # the name appears while our upload is in flight
    sender.join(timeout=60)
    assert len(errors) == 1 and isinstance(errors[0], rudp.PeerError) and errors[0].code == ErrorCode.FILE_EXISTS
    assert final.read_bytes() == b"someone else's file"
    assert not list((tmp_path / "served").glob("*.rudp-part"))


def test_a_client_polls_its_socket_before_each_sleep(server, tmp_path, monkeypatch):
    import rudp.net.driver as driver

    calls = []
    real_spin = driver.spin

    def counting_spin(transfer, clock):
        calls.append(transfer)
        return real_spin(transfer, clock)

    monkeypatch.setattr(driver, "spin", counting_spin)  # the client loop (driver.run); the server has its own
    src = tmp_path / "lockstep.bin"
    src.write_bytes(b"z" * (20 * 512))
    result = rudp.send_file(
        src, "127.0.0.1", port=server.port, config=rudp.client_config(blksize=512, windowsize=1)
    )
    assert result.ok and result.blksize == 512 and result.windowsize == 1
    assert calls and all(t.source is not None for t in calls)  # the sending client's own transfer
