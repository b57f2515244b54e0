"""End-to-end integrity: rudp's ``sha256`` option (spec section 7.7).

The side that has the file offers its SHA-256 (a WRQ carries it, a server answers an RRQ's ``sha256 0`` with it);
the receiving side hashes what it writes and refuses to move a file with another digest into place: the temporary
file is deleted, the peer gets an ERROR instead of the final ACK, and the command exits 9.  Peers that ignore the
option still work, and payload corruption that the UDP checksum lets through (``rudp-shim --corrupt``) never
leaves a wrong file at a final path.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import select
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cliharness import FAST, RecvServer, command, run, temp_files

import rudp
import rudp.api
import rudp.net.server
from rudp.cli import get as get_cli
from rudp.cli import send as send_cli
from rudp.core.client import ReadClient, WriteClient
from rudp.core.config import TransferConfig
from rudp.core.server import ReadServer, WriteServer
from rudp.errors import ExitCode
from rudp.fs import AtomicWriter
from rudp.fs.files import DigestMismatch
from rudp.wire.codec import decode, encode
from rudp.wire.packets import Error, ErrorCode, OptionAck, ReadRequest, WriteRequest

CLIENT, SERVER = ("127.0.0.1", 50000), ("127.0.0.1", 69)
DATA = bytes(range(256)) * 40  # 10240 bytes
DIGEST = hashlib.sha256(DATA).hexdigest()
WRONG = hashlib.sha256(b"something else").hexdigest()
CONFIG = TransferConfig(blksize=1024, windowsize=4)


def only(session) -> bytes:
    (datagram, _), *rest = session.datagrams_to_send()
    assert not rest
    return datagram


# --------------------------------------------------------------------------- negotiation, in memory
def test_a_write_request_offers_the_digest_and_a_rudp_server_echoes_it():
    client = WriteClient("f", SERVER, CONFIG, tsize=len(DATA), sha256=DIGEST, now=0.0)
    request = decode(only(client))
    assert isinstance(request, WriteRequest) and ("sha256", DIGEST) in request.options
    server = WriteServer(request, CLIENT, CONFIG, now=0.0)
    assert server.negotiated is not None and server.negotiated.sha256 == DIGEST
    oack = decode(only(server))
    assert isinstance(oack, OptionAck) and ("sha256", DIGEST) in oack.options
    client.receive_datagram(encode(oack), ("127.0.0.1", 40000), now=0.1)
    assert client.negotiated is not None and client.negotiated.sha256 == DIGEST


def test_a_read_request_asks_for_the_digest_and_a_rudp_server_answers_with_it():
    client = ReadClient("f", SERVER, CONFIG, now=0.0)
    request = decode(only(client))
    assert isinstance(request, ReadRequest) and ("sha256", "0") in request.options
    server = ReadServer(request, CLIENT, CONFIG, file_size=len(DATA), file_sha256=DIGEST, now=0.0)
    oack = decode(only(server))
    assert isinstance(oack, OptionAck) and ("sha256", DIGEST) in oack.options
    client.receive_datagram(encode(oack), ("127.0.0.1", 40000), now=0.1)
    assert client.negotiated is not None and client.negotiated.sha256 == DIGEST


def test_no_digest_is_offered_in_netascii_or_without_options_or_when_off():
    for config in (
        TransferConfig(mode="netascii", windowsize=4),
        TransferConfig(options=False),
        TransferConfig(digest=False, windowsize=4),
    ):
        request = decode(only(WriteClient("f", SERVER, config, tsize=1, sha256=DIGEST, now=0.0)))
        assert all(name != "sha256" for name, _ in request.options), config
        request = decode(only(ReadClient("f", SERVER, config, now=0.0)))
        assert all(name != "sha256" for name, _ in request.options), config


def test_a_server_with_the_digest_off_ignores_it_like_a_standard_peer():
    request = WriteRequest("f", "octet", (("windowsize", "4"), ("sha256", DIGEST)))
    server = WriteServer(request, CLIENT, TransferConfig(windowsize=4, digest=False), now=0.0)
    oack = decode(only(server))
    assert isinstance(oack, OptionAck) and dict(oack.options) == {"windowsize": "4"}
    assert server.negotiated is not None and server.negotiated.sha256 is None


@pytest.mark.parametrize("request_type", [ReadRequest, WriteRequest])
@pytest.mark.parametrize("value", ["1", DIGEST.upper(), DIGEST[:-1], DIGEST + "0", "g" * 64])
def test_a_malformed_digest_is_refused_not_ignored(request_type, value):
    # A request damaged in transit must not turn into an unverified transfer (the READ form's only value is 0).
    if request_type is ReadRequest and value == "1":
        value = DIGEST  # an RRQ offers no digest: only "0" is defined
    request = request_type("f", "octet", (("sha256", value),))
    session_type = WriteServer if request_type is WriteRequest else ReadServer
    kw = {} if request_type is WriteRequest else {"file_size": 1, "file_sha256": DIGEST}
    server = session_type(request, CLIENT, CONFIG, now=0.0, **kw)
    error = decode(only(server))
    assert isinstance(error, Error) and error.code == ErrorCode.ILLEGAL_OPERATION and "sha256" in error.message
    assert server.closed


@pytest.mark.parametrize(
    ("client_kind", "answer"),
    [("write", WRONG), ("write", DIGEST.upper()), ("read", "0"), ("read", DIGEST[:40]), ("read", DIGEST + "00")],
)
def test_a_client_refuses_an_oack_whose_digest_is_not_an_answer(client_kind, answer):
    if client_kind == "write":
        client = WriteClient("f", SERVER, CONFIG, tsize=len(DATA), sha256=DIGEST, now=0.0)
    else:
        client = ReadClient("f", SERVER, CONFIG, now=0.0)
    client.datagrams_to_send()
    client.receive_datagram(encode(OptionAck((("sha256", answer),))), ("127.0.0.1", 40000), now=0.1)
    error = decode(only(client))
    assert isinstance(error, Error) and error.code == ErrorCode.OPTION_REFUSED and "sha256" in error.message
    assert client.closed


# --------------------------------------------------------------------------- the sink
def test_the_writer_keeps_a_file_with_the_expected_digest(tmp_path):
    writer = AtomicWriter.for_path(tmp_path / "f", overwrite=False)
    writer.expect_sha256(DIGEST)
    for i in range(0, len(DATA), 1000):
        writer.write(memoryview(DATA)[i : i + 1000])
    writer.commit()
    assert (tmp_path / "f").read_bytes() == DATA


def test_the_writer_discards_a_file_with_another_digest(tmp_path):
    writer = AtomicWriter.for_path(tmp_path / "f", overwrite=False)
    writer.expect_sha256(DIGEST)
    writer.write(DATA[:-1] + b"\x00")
    with pytest.raises(DigestMismatch) as info:
        writer.commit()
    assert info.value.code == ErrorCode.NOT_DEFINED and "sha256 mismatch" in info.value.message
    assert os.listdir(tmp_path) == []  # neither the final name nor the temporary file


def test_the_digest_must_be_expected_before_the_first_write(tmp_path):
    with AtomicWriter.for_path(tmp_path / "f", overwrite=False) as writer:
        writer.write(b"x")
        with pytest.raises(ValueError):
            writer.expect_sha256(DIGEST)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- real sockets, one process
@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    stop = threading.Event()
    srv = rudp.Server(rudp.ServerConfig(directory=str(served), host="127.0.0.1", port=0, serve=True))

    def loop():
        while not stop.is_set():
            srv.step(timeout=0.02)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield srv
    stop.set()
    thread.join(timeout=10)
    srv.close()


def wait_result(srv, timeout=10.0):
    end = time.monotonic() + timeout
    while not srv.results and time.monotonic() < end:
        time.sleep(0.02)
    assert srv.results, "the server reported no transfer"
    return srv.results[-1]


def test_an_upload_that_does_not_match_is_discarded_and_the_sender_told(server, tmp_path, monkeypatch, capsys):
    local = tmp_path / "up.bin"
    local.write_bytes(DATA)
    # The sender announces a digest its bytes do not have: what a corruption of every DATA would look like.
    monkeypatch.setattr(rudp.api, "file_sha256", lambda source: WRONG)
    with pytest.raises(SystemExit) as exit_info:
        send_cli.main([str(local), "127.0.0.1", "--port", str(server.port), *FAST, "--blksize", "1024"])
    assert exit_info.value.code == ExitCode.PEER_ERROR  # the server's ERROR, not the final ACK
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sha256 mismatch" in err[0], err
    result = wait_result(server)
    assert not result.ok and result.exit_code == ExitCode.INTEGRITY
    served = Path(server.config.directory)
    assert os.listdir(served) == []  # no final file, no temporary file


def test_a_download_that_does_not_match_is_discarded_and_exits_9(server, tmp_path, monkeypatch, capsys):
    served = Path(server.config.directory)
    (served / "down.bin").write_bytes(DATA)
    monkeypatch.setattr(rudp.net.server, "file_sha256", lambda source: WRONG)
    out = tmp_path / "client"
    out.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        get_cli.main(["127.0.0.1", "down.bin", "-o", str(out / "down.bin"), "--port", str(server.port), *FAST])
    assert exit_info.value.code == ExitCode.INTEGRITY == 9
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sha256 mismatch" in err[0] and "Traceback" not in err[0], err
    assert os.listdir(out) == []
    result = wait_result(server)
    assert not result.ok and "sha256 mismatch" in (result.error or "")  # it got our ERROR, not a final ACK


def test_matching_transfers_both_ways_are_verified(server, tmp_path):
    local = tmp_path / "up.bin"
    local.write_bytes(DATA)
    rudp.send_file(local, "127.0.0.1", port=server.port, config=rudp.api.client_config(blksize=1024, timeout=1))
    served = Path(server.config.directory)
    assert (served / "up.bin").read_bytes() == DATA
    got = tmp_path / "back.bin"
    rudp.get_file("127.0.0.1", "up.bin", got, port=server.port, config=rudp.api.client_config(timeout=1))
    assert got.read_bytes() == DATA


def test_a_server_that_ignores_the_digest_still_works(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    config = rudp.ServerConfig(
        directory=str(served), host="127.0.0.1", port=0, serve=True, transfer=TransferConfig(digest=False)
    )
    with rudp.Server(config) as srv:
        stop = threading.Event()
        thread = threading.Thread(target=lambda: [srv.step(0.02) for _ in iter(stop.is_set, True)], daemon=True)
        thread.start()
        try:
            local = tmp_path / "up.bin"
            local.write_bytes(DATA)
            sent = rudp.send_file(local, "127.0.0.1", port=srv.port, config=rudp.api.client_config(timeout=1))
            assert sent.ok and (served / "up.bin").read_bytes() == DATA
            got = tmp_path / "back.bin"
            rudp.get_file("127.0.0.1", "up.bin", got, port=srv.port, config=rudp.api.client_config(timeout=1))
            assert got.read_bytes() == DATA
        finally:
            stop.set()
            thread.join(timeout=10)


# --------------------------------------------------------------------------- through rudp-shim --corrupt
SHIM_SEEDS = [1, 2]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", SHIM_SEEDS)
def test_corruption_through_the_shim_never_leaves_a_wrong_file(tmp_path, seed):
    """10 % of datagrams, both ways, get 1-3 bit flips with a valid UDP checksum.  Every transfer ends with an
    identical file or fails with nothing at the final path."""
    print(f"seed {seed}")
    rng = random.Random(seed)
    data = rng.randbytes(200 * 1024)
    client = tmp_path / "client"
    client.mkdir()
    (client / "up.bin").write_bytes(data)
    recv = RecvServer(tmp_path / "served", "--serve", *FAST)
    (recv.dir / "down.bin").write_bytes(data)
    shim = subprocess.Popen(
        [command("rudp-shim"), "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{recv.port}", "--json",
         "--seed", str(seed), "--corrupt", "10%"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert shim.stdout is not None
        ready, _, _ = select.select([shim.stdout], [], [], 15)
        assert ready, "rudp-shim did not start"
        port = json.loads(shim.stdout.readline())["port"]
        common = ["--port", port, *FAST, "--blksize", "1468", "--json"]
        sent = run("rudp-send", "up.bin", "127.0.0.1", *common, cwd=client)
        got = run("rudp-get", "127.0.0.1", "down.bin", "-o", "down.bin", *common, cwd=client)
        print("send:", sent.returncode, sent.stderr.strip(), "| get:", got.returncode, got.stderr.strip())
        for proc, final in ((sent, recv.dir / "up.bin"), (got, client / "down.bin")):
            assert "Traceback" not in proc.stderr
            if final.exists():
                assert final.read_bytes() == data, f"a wrong file at {final} (seed {seed})"
            if proc.returncode == 0 and final is client / "down.bin":
                assert final.exists()
            if proc.returncode != 0:
                assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
                assert proc.returncode in (ExitCode.PEER_ERROR, ExitCode.TIMED_OUT, ExitCode.PROTOCOL, 9)
        assert not temp_files(client)
    finally:
        shim.send_signal(signal.SIGTERM)
        out, _ = shim.communicate(timeout=15)
        recv.stop()
    counters = json.loads(out.strip().splitlines()[-1])
    print("shim:", counters)
    assert counters["up"]["corrupted"] > 0 and counters["down"]["corrupted"] > 0
    assert not temp_files(recv.dir)
