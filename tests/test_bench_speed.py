"""tools/bench_speed.py runs end to end at tiny sizes: every row and target line is there, it exits 0, and it
leaves no network namespace and no files behind.  No timing is asserted (the benchmark is evidence, not a test).

The loss rows need root (network namespaces); without root they must be reported as skipped, unless
RUDP_REQUIRE_ROOT=1, which makes missing root a failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "tools" / "bench_speed.py"
ROOT = os.geteuid() == 0
TARGET_LINES = [
    "rudp defaults / TCP goodput, clean loopback",
    "rudp-recv --serve + curl / tftpd-hpa + curl goodput, lockstep",
    "rudp time at 1% loss / at 0% loss (veth)",
    "rudp time at 5% loss / at 0% loss (veth)",
    "rudp-recv peak RSS MiB receiving",
]


def _namespaces() -> list[str]:
    if shutil.which("ip") is None:
        return []
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@pytest.mark.timeout(180)
def test_quick_run_reports_every_row_and_target(tmp_path):
    if not ROOT and os.environ.get("RUDP_REQUIRE_ROOT") == "1":
        pytest.fail("the loss rows need root (RUDP_REQUIRE_ROOT=1 makes missing root a failure)", pytrace=False)
    raw = tmp_path / "raw.json"
    work = tmp_path / "work"
    work.mkdir()
    argv = [
        sys.executable,
        str(BENCH),
        "--quick",
        "--size",
        "2M",
        "--loss-size",
        "512K",
        "--lockstep-size",
        "256K",
        "--size-rss",
        "4M",
        "--tmpdir",
        str(work),
        "--json",
        str(raw),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    shown = f"\n--- stdout\n{out}\n--- stderr\n{err}"
    assert proc.returncode == 0, shown

    rows = [
        "TCP loopback",
        "rudp defaults loopback",
        "rudp --digest none loopback",
        "rudp lockstep upload",
        "rudp-recv peak RSS (4 MiB)",
    ]
    if shutil.which("curl"):
        rows.append("rudp-recv --serve + curl get")
        if ROOT and shutil.which("in.tftpd", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])):
            rows.append("tftpd-hpa + curl get")
    if ROOT:
        rows += [f"{kind} veth {p}% loss" for p in (0, 1, 5) for kind in ("TCP", "rudp defaults")]
    else:
        assert "SKIPPED loss rows: not root" in out, shown
    table = out.split("== results", 1)[1]
    for row in rows:
        assert any(line.startswith(row) for line in table.splitlines()), f"row {row!r} missing{shown}"
    targets = out.split("== issue 4 targets", 1)[1].splitlines()
    for name in TARGET_LINES:
        assert any(name in line and line.split()[0] in ("PASS", "FAIL", "N/A") for line in targets), (
            f"target line {name!r} missing{shown}"
        )

    assert any(line.startswith("INFO  rudp --digest none / TCP goodput") for line in targets), shown
    data = json.loads(raw.read_text())
    assert {r["row"] for r in data["runs"]} >= set(rows)
    assert not data["crashed"] and not data["interrupted"]
    assert not [ns for ns in _namespaces() if ns.startswith(f"rudpbench-{proc.pid}-")]
    assert list(work.iterdir()) == [], "the benchmark left files behind"
