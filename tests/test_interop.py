"""rudp against real TFTP implementations on loopback: tftp-hpa and curl as clients of rudp-recv, and
rudp-send / rudp-get as clients of tftpd-hpa (in.tftpd).

Every transfer is judged by file content (SHA-256 / bytes), never by exit codes alone (tftp-hpa exits 0 even
when it received an ERROR), and, where rudp reports it, by what was negotiated (blksize, windowsize, options).
Peers that are not installed skip these tests visibly; RUDP_REQUIRE_PEERS=1 / RUDP_REQUIRE_ROOT=1 make that a
failure (see tests/peers.py).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import zlib
from pathlib import Path

import pytest
from peers import (
    FAST,
    Curl,
    RudpRecv,
    Tftpd,
    TftpHpa,
    collect,
    explain,
    last_json,
    netascii_encode,
    netascii_text,
    random_bytes,
    require_binary,
    require_root,
    rudp_command,
    run,
    sha256,
    spawn,
)

SEED = int(os.environ.get("RUDP_TEST_SEED", "20261128"))
MIB = 1024 * 1024


def seed_for(label: str) -> int:
    return SEED + zlib.crc32(label.encode())


def make_file(path: Path, size: int, label: str | None = None) -> bytes:
    data = random_bytes(seed_for(label or path.name), size, label or path.name)
    path.write_bytes(data)
    return data


def same_content(path: Path, expected: bytes, context: str = "") -> None:
    """The file holds exactly ``expected``; on failure say sizes, SHA-256s and where they first differ."""
    assert path.exists(), f"{path} does not exist{context}"
    got = path.read_bytes()
    if got != expected:
        hint = ""
        if len(got) == len(expected):
            first = next(i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b)
            near = slice(first, first + 16)
            hint = f", first difference at byte {first}: {got[near]!r} != {expected[near]!r}"
        elif len(expected) < 200:
            hint = f": {got!r} != {expected!r}"
        raise AssertionError(
            f"{path}: {len(got)} bytes, sha256 {sha256(path)[:16]}..., expected {len(expected)} bytes, "
            f"sha256 {hashlib.sha256(expected).hexdigest()[:16]}..."
            f"{hint}{context}"
        )


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in Path(directory).iterdir() if p.name.endswith(".rudp-part"))


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def client_dir(tmp_path) -> Path:
    d = tmp_path / "client"
    d.mkdir()
    return d


@pytest.fixture
def recv_server(tmp_path):
    """Factory: rudp-recv processes on free ports; their stderr is printed (shown on failure) at teardown."""
    servers: list[RudpRecv] = []

    def start(*extra: str) -> RudpRecv:
        server = RudpRecv(tmp_path / f"recv{len(servers)}", *extra)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        print(server.diagnostics())
        server.close()


@pytest.fixture
def tftpd(tmp_path):
    """Factory: in.tftpd processes (root only) on free ports; their output is printed at teardown."""
    servers: list[Tftpd] = []

    def start(*extra: str, host: str = "127.0.0.1") -> Tftpd:
        server = Tftpd(tmp_path / f"tftpd{len(servers)}", *extra, host=host)
        servers.append(server)
        return server

    yield start
    for server in servers:
        print(server.diagnostics())
        server.close()


@pytest.fixture
def tftp() -> TftpHpa:
    return TftpHpa()


@pytest.fixture
def curl() -> Curl:
    return Curl()


def rudp(*args: object, timeout: float = 30) -> subprocess.CompletedProcess:
    name, *rest = args
    return run([rudp_command(str(name)), *rest], timeout=timeout)


# --------------------------------------------------------------------------- the skip-or-fail policy itself
def test_missing_peer_skips_or_fails_by_environment(monkeypatch):
    monkeypatch.delenv("RUDP_REQUIRE_PEERS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        require_binary("no-such-tftp-peer-binary")
    monkeypatch.setenv("RUDP_REQUIRE_PEERS", "1")
    with pytest.raises(pytest.fail.Exception, match="RUDP_REQUIRE_PEERS=1"):
        require_binary("no-such-tftp-peer-binary")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("RUDP_REQUIRE_ROOT", raising=False)
    with pytest.raises(pytest.skip.Exception, match="root"):
        require_root()
    monkeypatch.setenv("RUDP_REQUIRE_ROOT", "1")
    with pytest.raises(pytest.fail.Exception, match="RUDP_REQUIRE_ROOT=1"):
        require_root()


# =========================================================================== tftp-hpa client -> rudp-recv
def assert_tftp_hpa_ok(proc, what: str) -> None:
    # tftp-hpa prints "Error code N: ..." (and still exits 0) when the server refused or aborted.
    assert "Error code" not in proc.stdout + proc.stderr, what + explain(proc)
    assert proc.returncode == 0, what + explain(proc)


def test_tftp_hpa_binary_put_and_get(recv_server, tftp, client_dir):
    srv = recv_server("--serve")
    data = make_file(client_dir / "up.bin", 512 * 600, "tftp-hpa multiple of 512")  # ends with an empty DATA
    put = tftp(client_dir, "127.0.0.1", srv.port, "put", "up.bin", "stored.bin")
    assert_tftp_hpa_ok(put, "upload")
    same_content(srv.dir / "stored.bin", data, explain(put) + srv.diagnostics())
    report = srv.transfer()
    # tftp-hpa 5.2's client asks for no options: rudp-recv must answer as a plain RFC 1350 server (no OACK).
    assert report["ok"] and report["direction"] == "recv" and report["bytes"] == len(data), report
    assert report["options_acknowledged"] is False and report["blksize"] == 512, report
    assert report["windowsize"] == 1, report

    get = tftp(client_dir, "127.0.0.1", srv.port, "get", "stored.bin", "back.bin")
    assert_tftp_hpa_ok(get, "download")
    same_content(client_dir / "back.bin", data, explain(get))
    report = srv.transfer()
    assert report["ok"] and report["direction"] == "serve" and report["blksize"] == 512, report

    odd = make_file(srv.dir / "odd.bin", 100_001, "tftp-hpa odd size")  # ends with a short DATA
    get = tftp(client_dir, "127.0.0.1", srv.port, "get", "odd.bin", "odd.back")
    assert_tftp_hpa_ok(get, "download of a file with a short last block")
    same_content(client_dir / "odd.back", odd, explain(get))


def test_tftp_hpa_empty_file_put_and_get(recv_server, tftp, client_dir):
    srv = recv_server("--serve")
    (client_dir / "empty").write_bytes(b"")
    put = tftp(client_dir, "127.0.0.1", srv.port, "put", "empty", "empty.bin")
    assert_tftp_hpa_ok(put, "upload of an empty file")
    report = srv.transfer()
    assert report["ok"] and report["bytes"] == 0, report
    same_content(srv.dir / "empty.bin", b"", explain(put))

    get = tftp(client_dir, "127.0.0.1", srv.port, "get", "empty.bin", "empty.back")
    assert_tftp_hpa_ok(get, "download of an empty file")
    # tftp-hpa creates the local file even when the transfer fails, and prints no "Received" line for 0 bytes:
    # the server's own report is what shows the download really completed.
    report = srv.transfer()
    assert report["ok"] and report["direction"] == "serve" and report["bytes"] == 0, report
    same_content(client_dir / "empty.back", b"", explain(get))


def test_tftp_hpa_netascii_put_and_get(recv_server, tftp, client_dir):
    srv = recv_server("--serve")
    text = netascii_text(seed_for("tftp-hpa netascii"))
    (client_dir / "notes.txt").write_bytes(text)
    put = tftp(client_dir, "127.0.0.1", srv.port, "put", "notes.txt", "notes.txt", mode="netascii")
    assert_tftp_hpa_ok(put, "netascii upload")
    # tftp-hpa sent CR LF for LF and CR NUL for CR; rudp-recv must store the same local bytes again.
    same_content(srv.dir / "notes.txt", text, explain(put) + srv.diagnostics())
    report = srv.transfer()
    assert report["ok"] and report["bytes"] == len(text), report  # file bytes, not wire bytes

    get = tftp(client_dir, "127.0.0.1", srv.port, "get", "notes.txt", "notes.back", mode="netascii")
    assert_tftp_hpa_ok(get, "netascii download")
    same_content(client_dir / "notes.back", text, explain(get) + srv.diagnostics())
    report = srv.transfer()
    assert report["ok"] and report["direction"] == "serve" and report["bytes"] == len(text), report


def test_tftp_hpa_over_ipv6(recv_server, tftp, client_dir):
    srv = recv_server("--serve")
    data = make_file(client_dir / "v6.bin", 70_000, "tftp-hpa ipv6")
    put = tftp(client_dir, "::1", srv.port, "put", "v6.bin", "v6.bin")
    assert_tftp_hpa_ok(put, "IPv6 upload")
    same_content(srv.dir / "v6.bin", data, explain(put))
    assert srv.transfer()["peer"].startswith("[::1]:")
    get = tftp(client_dir, "::1", srv.port, "get", "v6.bin", "v6.back")
    assert_tftp_hpa_ok(get, "IPv6 download")
    same_content(client_dir / "v6.back", data, explain(get))


def test_real_clients_at_once(recv_server, tftp, curl, client_dir):
    """tftp-hpa and curl, uploading and downloading concurrently from one rudp-recv (one TID per transfer)."""
    srv = recv_server("--serve")
    served = {f"s{i}.bin": make_file(srv.dir / f"s{i}.bin", 150_000 + i, f"served {i}") for i in range(3)}
    sent = {f"u{i}.bin": make_file(client_dir / f"u{i}.bin", 160_000 + i, f"sent {i}") for i in range(3)}
    jobs = [
        spawn(curl.argv("-o", "s0.back", curl.url("127.0.0.1", srv.port, "s0.bin")), cwd=client_dir),
        spawn(curl.argv("-o", "s1.back", curl.url("::1", srv.port, "s1.bin")), cwd=client_dir),
        spawn(tftp.argv("127.0.0.1", srv.port, "get", "s2.bin", "s2.back"), cwd=client_dir),
        spawn(curl.argv("-T", "u0.bin", curl.url("127.0.0.1", srv.port, "u0.bin")), cwd=client_dir),
        spawn(tftp.argv("127.0.0.1", srv.port, "put", "u1.bin", "u1.bin"), cwd=client_dir),
        spawn(tftp.argv("::1", srv.port, "put", "u2.bin", "u2.bin"), cwd=client_dir),
    ]
    done = []
    try:
        for job in jobs:
            done.append(collect(job, timeout=25))
    finally:
        for job in jobs:
            if job.poll() is None:
                job.kill()
                job.wait()
    for proc in done:
        assert proc.returncode == 0 and "Error code" not in proc.stdout + proc.stderr, explain(proc)
    context = "".join(explain(p) for p in done) + srv.diagnostics()
    for name, data in served.items():
        same_content(client_dir / name.replace(".bin", ".back"), data, context)
    for name, data in sent.items():
        same_content(srv.dir / name, data, context)
    reports = [srv.transfer() for _ in jobs]
    assert all(r["ok"] for r in reports), reports
    assert len({r["peer"] for r in reports}) == len(jobs), reports


# =========================================================================== curl -> rudp-recv
CURL_CASES = [
    # id, curl options, blksize rudp-recv must agree to, options acknowledged (OACK)
    ("defaults", [], 512, True),  # curl asks blksize 512 + tsize explicitly
    ("blksize-1024", ["--tftp-blksize", "1024"], 1024, True),
    ("blksize-65464", ["--tftp-blksize", "65464"], 65464, True),  # curl's maximum (65465 is refused by curl)
    ("no-options", ["--tftp-no-options"], 512, False),
]


@pytest.mark.parametrize("label,options,blksize,acked", CURL_CASES, ids=[c[0] for c in CURL_CASES])
def test_curl_upload_and_download(recv_server, curl, client_dir, label, options, blksize, acked):
    srv = recv_server("--serve")
    size = 200_003
    data = make_file(client_dir / "up.bin", size, f"curl {label}")
    up = curl(client_dir, *options, "-T", "up.bin", curl.url("127.0.0.1", srv.port, "stored.bin"))
    assert up.returncode == 0, explain(up) + srv.diagnostics()
    same_content(srv.dir / "stored.bin", data, explain(up))
    report = srv.transfer()
    assert report["ok"] and report["direction"] == "recv" and report["bytes"] == size, report
    assert report["blksize"] == blksize and report["options_acknowledged"] is acked, report
    if acked:
        assert report["tsize"] == size, report  # curl announced the size (RFC 2349)

    down = curl(client_dir, *options, "-o", "back.bin", curl.url("127.0.0.1", srv.port, "stored.bin"))
    assert down.returncode == 0, explain(down) + srv.diagnostics()
    same_content(client_dir / "back.bin", data, explain(down))
    report = srv.transfer()
    assert report["ok"] and report["direction"] == "serve" and report["bytes"] == size, report
    assert report["blksize"] == blksize and report["options_acknowledged"] is acked, report
    if acked:
        assert report["tsize"] == size, report  # curl asked tsize 0: the server must tell the real size


def test_curl_large_blksize_is_capped_by_the_server(recv_server, curl, client_dir):
    srv = recv_server("--serve", "--blksize", "1024")
    data = make_file(client_dir / "up.bin", 50_000, "curl capped")
    up = curl(client_dir, "--tftp-blksize", "65464", "-T", "up.bin", curl.url("127.0.0.1", srv.port, "c.bin"))
    assert up.returncode == 0, explain(up) + srv.diagnostics()
    same_content(srv.dir / "c.bin", data, explain(up))
    assert srv.transfer()["blksize"] == 1024
    down = curl(client_dir, "--tftp-blksize", "65464", "-o", "back", curl.url("127.0.0.1", srv.port, "c.bin"))
    assert down.returncode == 0, explain(down) + srv.diagnostics()
    same_content(client_dir / "back", data, explain(down))
    assert srv.transfer()["blksize"] == 1024


def test_curl_over_ipv6(recv_server, curl, client_dir):
    srv = recv_server("--serve")
    data = make_file(srv.dir / "six.bin", 123_457, "curl ipv6")
    down = curl(client_dir, "-o", "six.back", curl.url("::1", srv.port, "six.bin"))
    assert down.returncode == 0, explain(down) + srv.diagnostics()
    same_content(client_dir / "six.back", data, explain(down))
    report = srv.transfer()
    assert report["ok"] and report["peer"].startswith("[::1]:"), report

    up = curl(client_dir, "-T", "six.back", curl.url("::1", srv.port, "six.up"))
    assert up.returncode == 0, explain(up) + srv.diagnostics()
    same_content(srv.dir / "six.up", data, explain(up))


def test_curl_sees_netascii_on_the_wire(recv_server, curl, client_dir):
    """curl does no netascii translation: it shows exactly what rudp-recv puts on (and takes off) the wire."""
    srv = recv_server("--serve")
    text = netascii_text(seed_for("curl netascii"))
    (srv.dir / "notes.txt").write_bytes(text)
    down = curl(client_dir, "-o", "wire.txt", curl.url("127.0.0.1", srv.port, "notes.txt;mode=netascii"))
    assert down.returncode == 0, explain(down) + srv.diagnostics()
    same_content(client_dir / "wire.txt", netascii_encode(text), explain(down))
    report = srv.transfer()
    assert report["ok"] and report["bytes"] == len(text), report

    (client_dir / "encoded.txt").write_bytes(netascii_encode(text))
    up = curl(client_dir, "-T", "encoded.txt", curl.url("127.0.0.1", srv.port, "decoded.txt;mode=netascii"))
    assert up.returncode == 0, explain(up) + srv.diagnostics()
    same_content(srv.dir / "decoded.txt", text, explain(up))
    assert srv.transfer()["bytes"] == len(text)

    # A Unix file sent as-is with ;mode=netascii (curl translates nothing): lone LFs and lone CRs, one of them the
    # very last byte, are not netascii pairs and must be stored as they came.
    lenient = b"unix line\nbare\rcarriage return\n\nlast byte is a CR\r"
    (client_dir / "unix.txt").write_bytes(lenient)
    up = curl(client_dir, "-T", "unix.txt", curl.url("127.0.0.1", srv.port, "unix.txt;mode=netascii"))
    assert up.returncode == 0, explain(up) + srv.diagnostics()
    same_content(srv.dir / "unix.txt", lenient, explain(up))


# =========================================================================== rudp-send / rudp-get -> in.tftpd
TFTPD_CASES = [
    # id, size, rudp options, blksize expected, options acknowledged
    ("small", 1000, [*FAST, "--blksize", "1468"], 1468, True),
    ("empty", 0, FAST, 65464, True),  # the fitted default on loopback: the largest block, which tftpd grants
    ("exactly-512", 512, [*FAST, "--blksize", "1468"], 1468, True),
    ("exactly-512-at-blksize-512", 512, [*FAST, "--blksize", "512"], 512, True),  # a full block, then empty
    ("defaults", 300_001, [], 65464, True),  # rudp asks a window (and sack): tftpd knows neither, so lockstep
    ("windowsize-16", 100_000, [*FAST, "--windowsize", "16", "--blksize", "1468"], 1468, True),
    ("blksize-65464", 65464 * 3, [*FAST, "--blksize", "65464"], 65464, True),
    ("no-options", 512 * 3, [*FAST, "--no-options"], 512, False),
]


@pytest.mark.parametrize("label,size,options,blksize,acked", TFTPD_CASES, ids=[c[0] for c in TFTPD_CASES])
def test_rudp_against_tftpd(tftpd, client_dir, label, size, options, blksize, acked):
    srv = tftpd()
    data = make_file(client_dir / "up.bin", size, f"tftpd {label}")
    up = rudp(
        "rudp-send",
        client_dir / "up.bin",
        "127.0.0.1",
        "--port",
        srv.port,
        "--name",
        "stored.bin",
        "--json",
        *options,
    )
    assert up.returncode == 0, explain(up) + srv.diagnostics()
    same_content(srv.dir / "stored.bin", data, explain(up) + srv.diagnostics())
    result = last_json(up)
    assert result["ok"] and result["bytes"] == size, result
    assert result["blksize"] == blksize and result["options_acknowledged"] is acked, result
    assert result["windowsize"] == 1, result  # whatever rudp asked, tftpd-hpa only does lockstep

    down = rudp(
        "rudp-get",
        "127.0.0.1",
        "stored.bin",
        "-o",
        client_dir / "back.bin",
        "--port",
        srv.port,
        "--json",
        *options,
    )
    assert down.returncode == 0, explain(down) + srv.diagnostics()
    same_content(client_dir / "back.bin", data, explain(down))
    result = last_json(down)
    assert result["ok"] and result["bytes"] == size, result
    assert result["blksize"] == blksize and result["windowsize"] == 1, result
    if acked:
        assert result["tsize"] == size, result  # tftpd-hpa answers tsize for octet reads
    assert temp_files(client_dir) == []


def test_rudp_netascii_against_tftpd(tftpd, client_dir):
    srv = tftpd()
    text = netascii_text(seed_for("tftpd netascii"))
    (client_dir / "notes.txt").write_bytes(text)
    up = rudp(
        "rudp-send",
        client_dir / "notes.txt",
        "127.0.0.1",
        "--port",
        srv.port,
        "--mode",
        "netascii",
        "--blksize",
        "512",
        "--json",
        *FAST,
    )  # 512: the text's CR pairs straddle these blocks
    assert up.returncode == 0, explain(up) + srv.diagnostics()
    # tftpd-hpa decodes netascii back to Unix text: the same bytes as ours, only if rudp encoded correctly.
    same_content(srv.dir / "notes.txt", text, explain(up))
    assert last_json(up)["bytes"] == len(text)

    down = rudp(
        "rudp-get",
        "127.0.0.1",
        "notes.txt",
        "-o",
        client_dir / "back.txt",
        "--port",
        srv.port,
        "--mode",
        "netascii",
        "--blksize",
        "512",
        "--json",
        *FAST,
    )
    assert down.returncode == 0, explain(down) + srv.diagnostics()
    same_content(client_dir / "back.txt", text, explain(down))
    assert last_json(down)["bytes"] == len(text)


def test_rudp_against_tftpd_over_ipv6(tftpd, client_dir):
    srv = tftpd(host="::1")
    data = make_file(client_dir / "v6.bin", 77_777, "tftpd ipv6")
    up = rudp("rudp-send", client_dir / "v6.bin", "::1", "--port", srv.port, *FAST)
    assert up.returncode == 0, explain(up) + srv.diagnostics()
    same_content(srv.dir / "v6.bin", data, explain(up))
    down = rudp("rudp-get", "::1", "v6.bin", "-o", client_dir / "v6.back", "--port", srv.port, *FAST)
    assert down.returncode == 0, explain(down) + srv.diagnostics()
    same_content(client_dir / "v6.back", data, explain(down))


@pytest.mark.parametrize(
    "label,tftpd_options,blksize",
    [("capped-at-1024", ["-B", "1024"], 1024), ("blksize-refused", ["-r", "blksize"], 512)],
    ids=["capped-at-1024", "blksize-refused"],
)
def test_rudp_accepts_what_tftpd_grants(tftpd, client_dir, label, tftpd_options, blksize):
    """rudp asks blksize 65464; tftpd-hpa answers a smaller one (-B) or leaves blksize out of its OACK (-r)."""
    srv = tftpd(*tftpd_options)
    data = make_file(client_dir / "up.bin", 40_000, f"tftpd {label}")
    up = rudp(
        "rudp-send", client_dir / "up.bin", "127.0.0.1", "--port", srv.port, "--blksize", "65464", "--json", *FAST
    )
    assert up.returncode == 0, explain(up) + srv.diagnostics()
    same_content(srv.dir / "up.bin", data, explain(up))
    assert last_json(up)["blksize"] == blksize, last_json(up)
    down = rudp(
        "rudp-get",
        "127.0.0.1",
        "up.bin",
        "-o",
        client_dir / "back",
        "--port",
        srv.port,
        "--blksize",
        "65464",
        "--json",
        *FAST,
    )
    assert down.returncode == 0, explain(down) + srv.diagnostics()
    same_content(client_dir / "back", data, explain(down))
    assert last_json(down)["blksize"] == blksize, last_json(down)


ROLLOVER_SIZE = 40 * MIB  # 81921 blocks of 512: block numbers wrap past 65535 (to 0, tftpd-hpa's default)


@pytest.mark.timeout(120)
def test_40_mib_upload_to_tftpd_crosses_block_number_rollover(tftpd, client_dir):
    srv = tftpd()
    data = make_file(client_dir / "big.bin", ROLLOVER_SIZE, "rollover upload")
    up = rudp(
        "rudp-send",
        client_dir / "big.bin",
        "127.0.0.1",
        "--port",
        srv.port,
        "--blksize",
        "512",
        "--json",
        timeout=100,
    )
    assert up.returncode == 0, explain(up) + srv.diagnostics()
    same_content(srv.dir / "big.bin", data, explain(up))
    result = last_json(up)
    assert result["blksize"] == 512 and result["windowsize"] == 1, result
    assert result["stats"]["blocks"] > 65536, result


@pytest.mark.timeout(120)
def test_40_mib_download_from_tftpd_crosses_block_number_rollover(tftpd, client_dir):
    srv = tftpd()
    data = make_file(srv.dir / "big.bin", ROLLOVER_SIZE, "rollover download")
    down = rudp(
        "rudp-get",
        "127.0.0.1",
        "big.bin",
        "-o",
        client_dir / "big.bin",
        "--port",
        srv.port,
        "--blksize",
        "512",
        "--json",
        timeout=100,
    )
    assert down.returncode == 0, explain(down) + srv.diagnostics()
    same_content(client_dir / "big.bin", data, explain(down))
    result = last_json(down)
    assert result["blksize"] == 512 and result["windowsize"] == 1, result
    assert result["stats"]["blocks"] > 65536 and result["tsize"] == ROLLOVER_SIZE, result


# =========================================================================== error paths
def test_rudp_get_of_a_missing_file_from_tftpd(tftpd, client_dir):
    srv = tftpd()
    down = rudp(
        "rudp-get", "127.0.0.1", "missing.bin", "-o", client_dir / "missing.bin", "--port", srv.port, *FAST
    )
    assert down.returncode == 4, explain(down) + srv.diagnostics()
    lines = down.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in down.stderr, explain(down)
    assert "not found" in lines[0].lower(), explain(down)
    assert list(client_dir.iterdir()) == [], "rudp-get left files behind" + explain(down)


def test_curl_download_of_a_missing_file_from_rudp_recv(recv_server, curl, client_dir):
    srv = recv_server("--serve")
    down = curl(client_dir, "-o", "missing.bin", curl.url("127.0.0.1", srv.port, "missing.bin"))
    # 68 is CURLE_TFTP_NOTFOUND: rudp-recv answered ERROR 1 (file not found), as RFC 1350 says.
    assert down.returncode == 68, explain(down) + srv.diagnostics()
    assert list(client_dir.iterdir()) == [], "curl created a file" + explain(down)
    assert list(srv.dir.iterdir()) == []


def test_size_limit_refusals_reach_curl_and_tftp_hpa(recv_server, tftp, curl, client_dir):
    srv = recv_server("--max-size", "1000")
    make_file(client_dir / "big.bin", 5_000, "over the limit")
    # curl announces tsize: rudp-recv refuses before any data, with ERROR 3 (curl: 70, CURLE_REMOTE_DISK_FULL).
    up = curl(client_dir, "-T", "big.bin", curl.url("127.0.0.1", srv.port, "by-curl.bin"))
    assert up.returncode == 70, explain(up) + srv.diagnostics()
    # tftp-hpa announces nothing: the transfer must be stopped once it passes the limit.
    put = tftp(client_dir, "127.0.0.1", srv.port, "put", "big.bin", "by-tftp.bin")
    assert "Error code 3" in put.stdout + put.stderr, explain(put) + srv.diagnostics()
    reports = [srv.transfer(), srv.transfer()]
    assert [r["ok"] for r in reports] == [False, False], reports
    assert list(srv.dir.iterdir()) == [], "a refused upload left something behind"


def test_tftp_hpa_put_does_not_replace_an_existing_file(recv_server, tftp, client_dir):
    srv = recv_server("--serve")
    original = make_file(srv.dir / "keep.bin", 5_000, "existing original")
    make_file(client_dir / "keep.bin", 7_000, "existing replacement")
    put = tftp(client_dir, "127.0.0.1", srv.port, "put", "keep.bin", "keep.bin")
    assert put.returncode == 0, explain(put)  # tftp-hpa exits 0 whatever happened
    assert "Error code 6" in put.stdout + put.stderr, "expected ERROR 6 (file already exists)" + explain(put)
    same_content(srv.dir / "keep.bin", original, explain(put) + srv.diagnostics())
    assert temp_files(srv.dir) == [] and sorted(p.name for p in srv.dir.iterdir()) == ["keep.bin"]
