"""End-to-end integrity: rudp's digest options ``xxh128`` and ``sha256`` (spec section 7.7).

The side that has the file offers its digest, by default after the data (``trailer``: the last 32 or 64 bytes of
the DATA stream are the hex digest of the rest), or in the request (a WRQ carries it, a server answers an RRQ's
``0`` with it in its OACK).  The receiving side refuses to keep a file with another digest: the session sends
ERROR 0 instead of its final ACK (trailer) or the sink deletes the temporary file (in the request), and the
command exits 9.  Peers that ignore the option still work, and payload corruption that the UDP checksum lets
through (``rudp-shim --corrupt``) never leaves a wrong file at a final path.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
import xxhash
from cliharness import FAST, RecvServer, command, run, temp_files
from inproc import serving

import rudp
import rudp.api
import rudp.core.sending
import rudp.errors
import rudp.net.server
from rudp.cli import get as get_cli
from rudp.cli import send as send_cli
from rudp.core.client import ReadClient, WriteClient
from rudp.core.config import TransferConfig
from rudp.core.digests import DIGESTS, TrailerCheck, new_hash
from rudp.core.events import DataReceived, Digest, TransferComplete, TransferFailed
from rudp.core.server import ReadServer, WriteServer
from rudp.errors import ExitCode
from rudp.fs import AtomicWriter
from rudp.fs.files import DigestMismatch
from rudp.wire.codec import decode, encode
from rudp.wire.packets import Data, Error, ErrorCode, OptionAck, ReadRequest, WriteRequest

CLIENT, SERVER = ("127.0.0.1", 50000), ("127.0.0.1", 69)
DATA = bytes(range(256)) * 40  # 10240 bytes
HEX = {
    "sha256": hashlib.sha256(DATA).hexdigest(),
    "xxh128": xxhash.xxh3_128(DATA).hexdigest(),  # the reference implementation, not rudp's table of hashes
}
WRONG = {name: "0" * size for name, size in DIGESTS.items()}
CONFIG = TransferConfig(blksize=1024, windowsize=4)
ALGORITHMS = sorted(DIGESTS)


def in_request(algorithm: str, **kw) -> TransferConfig:
    return TransferConfig(blksize=1024, windowsize=4, digest_algorithm=algorithm, digest_trailer=False, **kw)


def only(session) -> bytes:
    (datagram, _), *rest = session.datagrams_to_send()
    assert not rest
    return datagram


def test_every_digest_option_has_a_hash_of_its_length():
    assert set(DIGESTS) == {"xxh128", "sha256"}
    for name, size in DIGESTS.items():
        digest = new_hash(name)
        digest.update(DATA)
        assert digest.hexdigest() == HEX[name] and len(HEX[name]) == size


# --------------------------------------------------------------------------- negotiation, in memory
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_write_request_offers_the_digest_and_a_rudp_server_echoes_it(algorithm):
    client = WriteClient("f", SERVER, in_request(algorithm), tsize=len(DATA), digest=HEX[algorithm], now=0.0)
    request = decode(only(client))
    assert isinstance(request, WriteRequest) and (algorithm, HEX[algorithm]) in request.options
    server = WriteServer(request, CLIENT, CONFIG, now=0.0)
    assert server.negotiated is not None and server.negotiated.digest == Digest(algorithm, HEX[algorithm])
    oack = decode(only(server))
    assert isinstance(oack, OptionAck) and (algorithm, HEX[algorithm]) in oack.options
    client.receive_datagram(encode(oack), ("127.0.0.1", 40000), now=0.1)
    assert client.negotiated is not None and client.negotiated.digest == Digest(algorithm, HEX[algorithm])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_read_request_asks_for_the_digest_and_a_rudp_server_answers_with_it(algorithm):
    client = ReadClient("f", SERVER, in_request(algorithm), now=0.0)
    request = decode(only(client))
    assert isinstance(request, ReadRequest) and (algorithm, "0") in request.options
    server = ReadServer(request, CLIENT, CONFIG, file_size=len(DATA), file_digest=HEX[algorithm], now=0.0)
    oack = decode(only(server))
    assert isinstance(oack, OptionAck) and (algorithm, HEX[algorithm]) in oack.options
    client.receive_datagram(encode(oack), ("127.0.0.1", 40000), now=0.1)
    assert client.negotiated is not None and client.negotiated.digest == Digest(algorithm, HEX[algorithm])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("kind", [ReadClient, WriteClient])
def test_by_default_both_clients_offer_the_digest_after_the_data_and_a_server_echoes_it(kind, algorithm):
    config = TransferConfig(blksize=1024, windowsize=4, digest_algorithm=algorithm)
    client = kind("f", SERVER, config, now=0.0, **({"tsize": len(DATA)} if kind is WriteClient else {}))
    request = decode(only(client))
    assert (algorithm, "trailer") in request.options
    assert not any(name in DIGESTS and name != algorithm for name, _ in request.options)  # one algorithm only
    session = WriteServer if kind is WriteClient else ReadServer
    server = session(request, CLIENT, CONFIG, now=0.0, **({"file_size": 1} if kind is ReadClient else {}))
    assert (algorithm, "trailer") in decode(only(server)).options


def test_no_digest_is_offered_in_netascii_or_without_options_or_when_off():
    for config in (
        TransferConfig(mode="netascii", windowsize=4),
        TransferConfig(options=False),
        TransferConfig(digest=False, windowsize=4),
        TransferConfig(digest=False, windowsize=4, digest_trailer=False),
    ):
        request = decode(only(WriteClient("f", SERVER, config, tsize=1, digest=HEX["xxh128"], now=0.0)))
        assert all(name not in DIGESTS for name, _ in request.options), config
        request = decode(only(WriteClient("f", SERVER, config, tsize=1, now=0.0)))
        assert all(name not in DIGESTS for name, _ in request.options), config
        request = decode(only(ReadClient("f", SERVER, config, now=0.0)))
        assert all(name not in DIGESTS for name, _ in request.options), config


@pytest.mark.parametrize("value", ["trailer", HEX["sha256"]])
def test_a_server_with_the_digest_off_ignores_it_like_a_standard_peer(value):
    request = WriteRequest("f", "octet", (("windowsize", "4"), ("sha256", value)))
    server = WriteServer(request, CLIENT, TransferConfig(windowsize=4, digest=False), now=0.0)
    oack = decode(only(server))
    assert isinstance(oack, OptionAck) and dict(oack.options) == {"windowsize": "4"}
    assert server.negotiated is not None and server.negotiated.digest is None


def test_a_server_takes_up_the_first_digest_it_knows_and_only_that_one():
    options = (("md5", "trailer"), ("sha256", "trailer"), ("xxh128", "trailer"))
    server = WriteServer(WriteRequest("f", "octet", options), CLIENT, CONFIG, now=0.0)
    assert decode(only(server)).options == (("sha256", "trailer"),)
    assert server.negotiated is not None and server.negotiated.digest == Digest("sha256", "trailer")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("request_type", [ReadRequest, WriteRequest])
@pytest.mark.parametrize("mutation", ["1", "upper", "short", "long", "not hex", "Trailer", ""])
def test_a_malformed_digest_is_refused_not_ignored(request_type, algorithm, mutation):
    # A request damaged in transit must not turn into an unverified transfer (the READ form's values are 0 and
    # trailer; the WRITE form's a digest and trailer).
    good = HEX[algorithm]
    value = {
        "1": good if request_type is ReadRequest else "1",
        "upper": good.upper(),
        "short": good[:-1],
        "long": good + "0",
        "not hex": "g" * len(good),
        "Trailer": "Trailer",
        "": "",
    }[mutation]
    request = request_type("f", "octet", ((algorithm, value),))
    session_type = WriteServer if request_type is WriteRequest else ReadServer
    kw = {} if request_type is WriteRequest else {"file_size": 1, "file_digest": good}
    server = session_type(request, CLIENT, CONFIG, now=0.0, **kw)
    error = decode(only(server))
    assert isinstance(error, Error) and error.code == ErrorCode.ILLEGAL_OPERATION and algorithm in error.message
    assert server.closed


@pytest.mark.parametrize(
    ("client_kind", "trailer", "answer"),
    [
        ("write", False, WRONG["sha256"]),
        ("write", False, HEX["sha256"].upper()),
        ("write", False, "trailer"),
        ("read", False, "0"),
        ("read", False, "trailer"),
        ("read", False, HEX["sha256"][:40]),
        ("read", False, HEX["sha256"] + "00"),
        ("write", True, HEX["sha256"]),
        ("read", True, HEX["sha256"]),
        ("read", True, "TRAILER"),
    ],
)
def test_a_client_refuses_an_oack_whose_digest_is_not_an_answer(client_kind, trailer, answer):
    config = TransferConfig(blksize=1024, windowsize=4, digest_algorithm="sha256", digest_trailer=trailer)
    if client_kind == "write":
        digest = None if trailer else HEX["sha256"]
        client = WriteClient("f", SERVER, config, tsize=len(DATA), digest=digest, now=0.0)
    else:
        client = ReadClient("f", SERVER, config, now=0.0)
    client.datagrams_to_send()
    client.receive_datagram(encode(OptionAck((("sha256", answer),))), ("127.0.0.1", 40000), now=0.1)
    error = decode(only(client))
    assert isinstance(error, Error) and error.code == ErrorCode.OPTION_REFUSED and "sha256" in error.message
    assert client.closed


@pytest.mark.parametrize("kind", [ReadClient, WriteClient])
def test_a_rudp_server_that_drops_the_digest_means_a_damaged_request_and_is_refused(kind):
    # One flipped bit in the option's name ("xxh128" -> "xxh1r8") and a server ignores it, as RFC 2347 asks. A
    # server that grants ``sack`` is rudp, which always takes up a digest: so the request was damaged, and going
    # on would leave the file unverified on exactly the path that damages data.
    client = kind("f", SERVER, CONFIG, now=0.0, **({"tsize": len(DATA)} if kind is WriteClient else {}))
    request = decode(only(client))
    assert ("sack", "1") in request.options and ("xxh128", "trailer") in request.options
    client.receive_datagram(encode(OptionAck((("windowsize", "4"), ("sack", "1")))), ("127.0.0.1", 40000), now=0.1)
    error = decode(only(client))
    assert isinstance(error, Error) and error.code == ErrorCode.OPTION_REFUSED and "damaged" in error.message
    assert client.closed


# --------------------------------------------------------------------------- the trailer, in memory
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_trailer_check_passes_the_file_on_whatever_the_cuts(algorithm):
    stream = DATA + HEX[algorithm].encode()
    rng = random.Random(5)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randrange(0, 12)))
        check = TrailerCheck(algorithm)
        pieces = [check.take(stream[a:b]) for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        pieces.append(check.finish())
        out = b"".join(bytes(piece) for taken in pieces for piece in taken)
        assert out == DATA and check.matches(), cuts


def test_the_trailer_check_hands_blocks_on_whole_and_uncopied():
    blocks = [bytes([i]) * 1024 for i in range(5)]
    check = TrailerCheck("xxh128")
    released = [piece for block in blocks for piece in check.take(block)]
    assert released == blocks[:4] and all(a is b for a, b in zip(released, blocks[:4], strict=True))
    assert check.finish() == (blocks[4][:-32],) and not check.matches()  # its last 32 bytes were no digest


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_trailer_check_refuses_any_damage_and_says_so_in_one_clean_line(algorithm):
    stream = DATA + HEX[algorithm].encode()
    for where in (0, len(DATA) // 2, len(DATA) - 1, len(DATA), len(stream) - 1):
        damaged = bytearray(stream)
        damaged[where] ^= 0x01
        check = TrailerCheck(algorithm)
        check.take(bytes(damaged))
        check.finish()
        assert not check.matches(), where
    for cut_short in (stream[:-1], DATA, b"", b"\x00" * 3):
        check = TrailerCheck(algorithm)
        check.take(cut_short)
        check.finish()
        assert not check.matches()
        message = check.mismatch()
        assert message.startswith(f"{algorithm} mismatch: file damaged in transit, not kept")
        assert message.isprintable() and message.isascii(), message


def run_in_memory(sender, receiver, feed: bytes, *, corrupt_last: bool = False):
    """Shuttle datagrams between a client and a server session until both are done; the sender is fed ``feed``.
    Returns the bytes the receiver delivered."""
    now, received, offset = 0.0, bytearray(), 0

    def source(session) -> tuple[str, int]:
        return CLIENT if isinstance(session, (ReadClient, WriteClient)) else ("127.0.0.1", 40000)

    for _ in range(10_000):
        while sender.bytes_wanted > 0 and offset <= len(feed):
            chunk = feed[offset : offset + sender.bytes_wanted]
            offset += max(1, len(chunk))
            if chunk:
                sender.feed(chunk, now=now)
            else:
                sender.feed_eof(now=now)
        moved = False
        for a, b in ((sender, receiver), (receiver, sender)):
            for datagram, _ in a.datagrams_to_send():
                packet = decode(datagram)
                if corrupt_last and isinstance(packet, Data) and len(packet.data) < receiver.negotiated.blksize:
                    datagram = datagram[:-1] + bytes([datagram[-1] ^ 0x20])  # flips a letter's case
                b.receive_datagram(datagram, source(a), now=now)
                moved = True
        while (event := receiver.next_event()) is not None:
            if isinstance(event, DataReceived):
                received += event.data
        while sender.next_event() is not None:
            pass
        if not moved:
            deadlines = [t for t in (sender.get_timer(), receiver.get_timer()) if t is not None]
            if not deadlines:
                break
            now = max(now, min(deadlines))
            for session in (sender, receiver):
                session.handle_timer(now=now)
    return bytes(received)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1024 - 16, 1024 - 32, 1024 - 64, 10240])
def test_an_upload_carries_its_digest_after_the_data_at_any_size(algorithm, size):
    data = DATA[:size]
    config = TransferConfig(blksize=1024, windowsize=4, digest_algorithm=algorithm)
    client = WriteClient("f", SERVER, config, tsize=size, now=0.0)
    server = WriteServer(decode(only(client)), CLIENT, CONFIG, now=0.0)
    received = run_in_memory(client, server, data)
    assert received == data
    assert isinstance(server.outcome, TransferComplete) and isinstance(client.outcome, TransferComplete)
    digest = new_hash(algorithm)
    digest.update(data)
    assert server.stats.payload_bytes == size + len(digest.hexdigest())  # the trailer crossed the wire


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_trailer_that_does_not_match_gets_an_error_instead_of_the_final_ack(algorithm):
    config = TransferConfig(blksize=1024, windowsize=4, digest_algorithm=algorithm)
    client = WriteClient("f", SERVER, config, tsize=len(DATA), now=0.0)
    server = WriteServer(decode(only(client)), CLIENT, CONFIG, now=0.0)
    run_in_memory(client, server, DATA, corrupt_last=True)
    assert isinstance(server.outcome, TransferFailed) and server.outcome.code == ErrorCode.NOT_DEFINED
    assert server.outcome.message.startswith(f"{algorithm} mismatch")
    assert isinstance(client.outcome, TransferFailed) and f"{algorithm} mismatch" in client.outcome.message


def test_a_download_carries_the_digest_after_the_data_without_a_pre_pass():
    client = ReadClient("f", SERVER, CONFIG, now=0.0)
    server = ReadServer(decode(only(client)), CLIENT, CONFIG, file_size=len(DATA), now=0.0)  # no file_digest
    assert run_in_memory(server, client, DATA) == DATA
    assert isinstance(client.outcome, TransferComplete)
    assert client.negotiated is not None and client.negotiated.digest == Digest("xxh128", "trailer")


# --------------------------------------------------------------------------- the sink
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_writer_keeps_a_file_with_the_expected_digest(tmp_path, algorithm):
    writer = AtomicWriter.for_path(tmp_path / "f", overwrite=False)
    writer.expect_digest(algorithm, HEX[algorithm])
    for i in range(0, len(DATA), 1000):
        writer.write(memoryview(DATA)[i : i + 1000])
    writer.commit()
    assert (tmp_path / "f").read_bytes() == DATA


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_writer_discards_a_file_with_another_digest(tmp_path, algorithm):
    writer = AtomicWriter.for_path(tmp_path / "f", overwrite=False)
    writer.expect_digest(algorithm, HEX[algorithm])
    writer.write(DATA[:-1] + b"\x00")
    with pytest.raises(DigestMismatch) as info:
        writer.commit()
    assert info.value.code == ErrorCode.NOT_DEFINED and f"{algorithm} mismatch" in info.value.message
    assert os.listdir(tmp_path) == []  # neither the final name nor the temporary file


def test_the_digest_must_be_expected_before_the_first_write(tmp_path):
    with AtomicWriter.for_path(tmp_path / "f", overwrite=False) as writer:
        writer.write(b"x")
        with pytest.raises(ValueError):
            writer.expect_digest("sha256", HEX["sha256"])
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- real sockets, one process
@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    with serving(rudp.ServerConfig(directory=str(served), host="127.0.0.1", port=0, serve=True)) as srv:
        yield srv


def wait_result(srv, timeout=10.0):
    end = time.monotonic() + timeout
    while not srv.results and time.monotonic() < end:
        time.sleep(0.02)
    assert srv.results, "the server reported no transfer"
    return srv.results[-1]


class WrongHash:
    """A sender's hash that announces a digest its bytes do not have: what damage to every DATA would look like."""

    def __init__(self, algorithm: str) -> None:
        self.size = DIGESTS[algorithm]

    def update(self, data) -> None:
        pass

    def hexdigest(self) -> str:
        return "0" * self.size


@pytest.mark.parametrize("where", ["trailer", "request"])
def test_an_upload_that_does_not_match_is_discarded_and_the_sender_told(
    server, tmp_path, monkeypatch, capsys, where
):
    local = tmp_path / "up.bin"
    local.write_bytes(DATA)
    if where == "trailer":  # rudp-send's default: the sending session hashes what it sends
        monkeypatch.setattr(rudp.core.sending, "new_hash", WrongHash)
        with pytest.raises(SystemExit) as exit_info:
            send_cli.main([str(local), "127.0.0.1", "--port", str(server.port), *FAST, "--blksize", "1024"])
        assert exit_info.value.code == ExitCode.PEER_ERROR  # the server's ERROR, not the final ACK
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "xxh128 mismatch" in err[0], err
    else:  # the digest in the WRQ, from the pre-pass
        monkeypatch.setattr(rudp.api, "file_digest", lambda source, algorithm: WRONG[algorithm])
        config = rudp.api.client_config(blksize=1024, timeout=1, digest="sha256", digest_trailer=False)
        with pytest.raises(rudp.errors.PeerError, match="sha256 mismatch"):
            rudp.send_file(local, "127.0.0.1", port=server.port, config=config)
    result = wait_result(server)
    assert not result.ok and result.exit_code == ExitCode.INTEGRITY
    served = Path(server.config.directory)
    assert os.listdir(served) == []  # no final file, no temporary file


@pytest.mark.parametrize("where", ["trailer", "request"])
def test_a_download_that_does_not_match_is_discarded_and_exits_9(server, tmp_path, monkeypatch, capsys, where):
    served = Path(server.config.directory)
    (served / "down.bin").write_bytes(DATA)
    out = tmp_path / "client"
    out.mkdir()
    if where == "trailer":  # the serving session hashes what it sends
        monkeypatch.setattr(rudp.core.sending, "new_hash", WrongHash)
        with pytest.raises(SystemExit) as exit_info:
            get_cli.main(["127.0.0.1", "down.bin", "-o", str(out / "down.bin"), "--port", str(server.port), *FAST])
        assert exit_info.value.code == ExitCode.INTEGRITY == 9
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "xxh128 mismatch" in err[0] and "Traceback" not in err[0], err
    else:  # the server's pre-pass answers the RRQ's "0" in its OACK
        monkeypatch.setattr(rudp.net.server, "file_digest", lambda source, algorithm: WRONG[algorithm])
        config = rudp.api.client_config(timeout=1, digest="sha256", digest_trailer=False)
        with pytest.raises(rudp.errors.IntegrityError, match="sha256 mismatch"):
            rudp.get_file("127.0.0.1", "down.bin", out / "down.bin", port=server.port, config=config)
    assert os.listdir(out) == []
    result = wait_result(server)
    assert not result.ok and "mismatch" in (result.error or "")  # it got our ERROR, not a final ACK


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("trailer", [True, False])
def test_matching_transfers_both_ways_are_verified(server, tmp_path, algorithm, trailer):
    local = tmp_path / "up.bin"
    local.write_bytes(DATA)
    kw = {"timeout": 1, "digest": algorithm, "digest_trailer": trailer}
    sent = rudp.send_file(local, "127.0.0.1", port=server.port, config=rudp.api.client_config(blksize=1024, **kw))
    assert sent.ok and sent.digest == algorithm and sent.bytes == len(DATA)
    served = Path(server.config.directory)
    assert (served / "up.bin").read_bytes() == DATA
    assert wait_result(server).digest == algorithm
    got = tmp_path / "back.bin"
    back = rudp.get_file("127.0.0.1", "up.bin", got, port=server.port, config=rudp.api.client_config(**kw))
    assert got.read_bytes() == DATA and back.digest == algorithm and back.bytes == len(DATA)


def test_a_server_that_ignores_the_digest_still_works(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    config = rudp.ServerConfig(
        directory=str(served),
        host="127.0.0.1",
        port=0,
        serve=True,
        transfer=TransferConfig(digest=False, selective=False),  # a peer that knows neither rudp extension
    )
    with serving(config) as srv:
        local = tmp_path / "up.bin"
        local.write_bytes(DATA)
        sent = rudp.send_file(local, "127.0.0.1", port=srv.port, config=rudp.api.client_config(timeout=1))
        assert sent.ok and (served / "up.bin").read_bytes() == DATA
        got = tmp_path / "back.bin"
        rudp.get_file("127.0.0.1", "up.bin", got, port=srv.port, config=rudp.api.client_config(timeout=1))
        assert got.read_bytes() == DATA


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


def test_the_golden_trailer_is_what_a_sender_sends_and_a_receiver_accepts():
    vectors = json.loads((Path(__file__).parent.parent / "spec" / "vectors.json").read_text())
    wanted = ("wrq-rudp-digest-trailer", "data-file-then-digest-trailer")
    golden = {v["name"]: bytes.fromhex(v["hex"].replace(" ", "")) for v in vectors["valid"] if v["name"] in wanted}
    client = WriteClient("hello.txt", SERVER, TransferConfig(windowsize=8), tsize=5, now=0.0)
    assert only(client) == golden["wrq-rudp-digest-trailer"]
    server = WriteServer(decode(golden["wrq-rudp-digest-trailer"]), CLIENT, CONFIG, now=0.0)
    client.receive_datagram(only(server), ("127.0.0.1", 40000), now=0.1)
    client.feed(b"hello", now=0.1)
    client.feed_eof(now=0.1)
    assert only(client) == golden["data-file-then-digest-trailer"]
    server.receive_datagram(golden["data-file-then-digest-trailer"], CLIENT, now=0.2)
    kept = b"".join(bytes(e.data) for e in iter(server.next_event, None) if isinstance(e, DataReceived))
    assert kept == b"hello" and isinstance(server.outcome, TransferComplete)
