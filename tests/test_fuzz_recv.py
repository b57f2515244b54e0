"""A short run of tools/fuzz_recv.py in CI: 20,000 random and mutated datagrams at a live rudp-recv on loopback.

The full run (``python tools/fuzz_recv.py``: 100,000 datagrams) takes about 10 s more.  Here the server's caps
are raised so the fuzz opens many transfers and reaches their ports too, not only the listener.  Afterwards the
server must still be running, a normal upload and download must succeed byte for byte, nothing outside the
served directory may have changed and nothing but regular files may sit inside it.
"""

from __future__ import annotations

from toolscripts import load_tool

fuzz_recv = load_tool("fuzz_recv")

SEED = 1


def test_rudp_recv_survives_20000_fuzzed_datagrams_and_still_transfers() -> None:
    limits = ["--rate-limit", "100000", "--max-per-client", "1000", "--max-transfers", "1000"]
    report = fuzz_recv.fuzz(20_000, SEED, 20.0, limits)
    print(f"fuzz_recv seed {SEED}: {report}")
    assert report["sent"] >= 20_000, "the flood was cut short by its time bound"
    assert report["transfer_ports_seen"] >= 10 and report["to_transfer_ports"] > 5_000, "transfers not reached"
    assert report["server_alive_after_flood"]
    assert report["upload_ok"] and report["download_ok"]
    assert report["problems"] == []
    assert report["ok"]
