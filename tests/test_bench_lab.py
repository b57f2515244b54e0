"""rudp-bench end to end through the real network lab (root only): one tiny lossy scenario for TCP and rudp.

Checks that both rows exist and arrived intact, that the configured loss was applied to both protocols (the lab's
counters, in the JSON), and that the bench left no namespace behind.  Without root this skips with the reason
shown, unless RUDP_REQUIRE_ROOT=1 (CI), which makes it a failure.
"""

from __future__ import annotations

import json
import os
import subprocess

from peers import explain, rudp_command, unavailable


def test_quick_like_run_through_the_lab(tmp_path):
    if os.geteuid() != 0:
        unavailable("rudp-bench needs root to build its network namespaces", "RUDP_REQUIRE_ROOT")
    from rudp.lab.lab import PREFIX, lab_namespaces

    out = tmp_path / "bench.json"
    link = ["--loss", "5%", "--rtt", "10ms", "--rate", "20mbit", "--size", "256K", "--run-timeout", "20"]
    argv = [
        rudp_command("rudp-bench"),
        *link,
        "--protocols",
        "tcp-cubic,rudp",
        "--repeat",
        "1",
        "--json",
        str(out),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    done = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    assert proc.returncode == 0 and out.exists(), explain(done)
    data = json.loads(out.read_text())
    runs = {r["protocol"]: r for r in data["runs"]}
    assert set(runs) == {"tcp-cubic", "rudp"}, explain(done)
    for protocol, r in runs.items():
        assert r["status"] == "ok", f"{protocol}: {r}"
        assert r["bytes"] == 256 << 10 and r["goodput_bps"] > 0
        forward = r["counters"]["a>b"]
        assert forward["lost_random"] > 0, f"{protocol}: the lab applied no loss: {r['counters']}"
        assert r["wire_per_payload"] > 1.0
    assert runs["rudp"]["retransmissions"] > 0 and runs["tcp-cubic"]["retransmissions"] > 0
    assert {row["protocol"] for row in data["rows"]} == {"tcp-cubic", "rudp"}
    assert "tcp-cubic" in stdout and "rudp" in stdout
    left = [name for name in lab_namespaces() if name.startswith(f"{PREFIX}{proc.pid}-")]
    assert left == [], f"rudp-bench left namespaces behind: {left}"
