"""The amplification bound (spec section 17.1): nothing is resent to a client that has not proven its address.

The core tests drive server sessions by hand with a stepped clock; the socket tests send requests from a
loopback socket that never answers and count every byte the server sends back."""

from __future__ import annotations

import socket
import time

import pytest
from inproc import serving

from rudp.core.config import TransferConfig
from rudp.core.events import FailureKind, TransferFailed
from rudp.core.server import ReadServer, WriteServer
from rudp.net.server import Server, ServerConfig
from rudp.wire.codec import decode, encode
from rudp.wire.packets import Ack, Data, OptionAck, ReadRequest, WriteRequest

CLIENT = ("127.0.0.1", 40000)
CONFIG = TransferConfig(blksize=65464, windowsize=64, timeout=1.0, retries=3)
LIFETIME = 4.0


def drain(session) -> list[bytes]:
    return [d for d, _ in session.datagrams_to_send()]


def run_until_closed(session, now: float) -> list[bytes]:
    """Fire every timer until the session closes; everything it sent meanwhile."""
    sent = []
    for _ in range(100):
        deadline = session.get_timer()
        if deadline is None or session.closed:
            break
        now = max(now, deadline)
        session.handle_timer(now=now)
        sent += drain(session)
    return sent


def read_server(options: tuple = ()) -> ReadServer:
    session = ReadServer(ReadRequest("f", "octet", options), CLIENT, CONFIG, file_size=100_000, now=0.0)
    session.require_validation(now=0.0, lifetime=LIFETIME)
    session.feed(bytes(100_000), now=0.0)
    session.feed_eof(now=0.0)
    return session


@pytest.mark.parametrize("options", [(), (("blksize", "65464"), ("tsize", "0"), ("timeout", "255"))])
def test_a_read_server_sends_its_first_answer_once_then_ends_quietly(options):
    session = read_server(options)
    first = drain(session)
    assert len(first) == 1
    assert isinstance(decode(first[0]), OptionAck if options else Data)
    assert session.get_timer() == LIFETIME  # not the RTO, and not the 255 s the request asked for
    assert run_until_closed(session, 0.0) == []  # no retransmission, and no ERROR at the end
    assert isinstance(session.outcome, TransferFailed) and session.outcome.kind is FailureKind.TIMED_OUT


@pytest.mark.parametrize("options", [(), (("blksize", "1428"), ("windowsize", "16"))])
def test_a_write_server_sends_its_first_answer_once_then_ends_quietly(options):
    session = WriteServer(WriteRequest("f", "octet", options), CLIENT, CONFIG, now=0.0)
    session.require_validation(now=0.0, lifetime=LIFETIME)
    assert len(drain(session)) == 1
    assert run_until_closed(session, 0.0) == []
    assert isinstance(session.outcome, TransferFailed)


def test_a_repeated_request_gets_the_first_answer_again_and_the_proof_restores_retransmission():
    session = read_server((("blksize", "1024"),))
    (oack,) = drain(session)
    assert session.answer_again(now=0.5)
    assert drain(session) == [oack]
    session.receive_datagram(encode(Ack(7)), CLIENT, now=0.6)  # answers nothing we sent: no proof
    assert drain(session) == [] and not session.validated
    session.receive_datagram(encode(Ack(0)), CLIENT, now=0.7)  # RFC 2347: ACK 0 confirms the OACK
    assert session.validated
    (data1,) = drain(session)
    assert decode(data1) == Data(1, bytes(1024))
    assert not session.answer_again(now=0.8)  # proven: the transfer's own timer resends from now on
    session.handle_timer(now=session.get_timer())
    assert drain(session) == [data1]  # the ordinary retransmission is back


def test_a_write_server_is_proven_by_a_data_inside_its_window():
    session = WriteServer(WriteRequest("f", "octet", (("windowsize", "4"),)), CLIENT, CONFIG, now=0.0)
    session.require_validation(now=0.0, lifetime=LIFETIME)
    drain(session)
    session.receive_datagram(encode(Data(9, b"x" * 512)), CLIENT, now=0.1)  # beyond the window: ignored
    assert drain(session) == [] and not session.validated
    session.receive_datagram(encode(Data(2, b"x" * 512)), CLIENT, now=0.2)  # DATA 1 lost, DATA 2 came
    assert session.validated


# ----------------------------------------------------------------- over sockets


@pytest.fixture
def server(tmp_path):
    (tmp_path / "big.bin").write_bytes(bytes(200_000))
    config = ServerConfig(
        directory=str(tmp_path),
        host="127.0.0.1",
        port=0,
        serve=True,
        transfer=TransferConfig(blksize=65464, windowsize=64, timeout=0.1, retries=2),
    )
    with serving(config, step=0.05) as srv:
        yield srv


def bytes_back(server: Server, requests: list[bytes], *, sockets: int = 1, listen: float) -> tuple[int, int, int]:
    """Send ``requests`` (spread over ``sockets`` source ports), answer nothing, and count what comes back
    within ``listen`` seconds: (bytes in, bytes out, datagrams out)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(sockets)]
    try:
        for i, request in enumerate(requests):
            socks[i % sockets].sendto(request, ("127.0.0.1", server.port))
        got, count, end = 0, 0, time.monotonic() + listen
        for sock in socks:
            sock.setblocking(False)
        while time.monotonic() < end:
            time.sleep(0.01)
            for sock in socks:
                while True:
                    try:
                        got += len(sock.recv(70000))
                        count += 1
                    except BlockingIOError:
                        break
        return sum(map(len, requests)), got, count
    finally:
        for sock in socks:
            sock.close()


CASES = {
    "RRQ without options": encode(ReadRequest("big.bin", "octet")),
    "RRQ blksize 65464": encode(ReadRequest("big.bin", "octet", (("blksize", "65464"),))),
    "RRQ every option": encode(
        ReadRequest(
            "big.bin",
            "octet",
            (("blksize", "65464"), ("tsize", "0"), ("timeout", "255"), ("windowsize", "2048"), ("sack", "1")),
        )
    ),
    "WRQ without options": encode(WriteRequest("up.bin", "octet")),
    "WRQ every option": encode(
        WriteRequest(
            "up2.bin",
            "octet",
            (("blksize", "65464"), ("tsize", "10000"), ("timeout", "255"), ("windowsize", "2048"), ("sack", "1")),
        )
    ),
}
FIRST_ANSWER = {  # the most the protocol makes the server send in answer to one request (section 17.1)
    "RRQ without options": 4 + 512,  # DATA 1, RFC 1350
    "RRQ blksize 65464": len(encode(OptionAck((("blksize", "65464"),)))),  # the OACK only, RFC 2347
    "RRQ every option": 80,
    "WRQ without options": 4,  # ACK 0
    "WRQ every option": 80,
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_address_that_never_answers_gets_one_answer_per_request(server, case, tmp_path):
    # The lifetime is 0.1 s x 3 = 0.3 s; listen for three of them: without the bound the session resends.
    bytes_in, bytes_out, datagrams = bytes_back(server, [CASES[case]], listen=1.0)
    print(f"{case}: {bytes_in} bytes in, {bytes_out} out, ratio {bytes_out / bytes_in:.2f}")
    assert datagrams == 1
    assert bytes_out <= FIRST_ANSWER[case]
    assert server.active == 0  # the transfer was dropped after the lifetime
    assert not list(tmp_path.glob(".*.rudp-part"))  # an upload's temporary file went with it


def test_the_per_source_budget_caps_answers_to_a_flood_of_requests(server):
    # 200 requests for the 516-byte answer, from 50 source ports of one address, in well under a second:
    # at most the burst (40) plus 20 a second are answered, each once.
    request = CASES["RRQ without options"]
    start = time.monotonic()
    bytes_in, bytes_out, datagrams = bytes_back(server, [request] * 200, sockets=50, listen=1.0)
    elapsed = time.monotonic() - start
    print(f"flood: {bytes_in} bytes in, {bytes_out} out ({datagrams} datagrams) in {elapsed:.2f} s")
    assert datagrams <= 40 + 20 * elapsed + 1
    assert server.rate_limited >= 200 - datagrams - 1
