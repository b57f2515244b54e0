"""rudp-sim's reports: RTT statistics, the ladder diagram, parameter sweeps (table, CSV, JSON, plot), the naive
sender's pacing and the benchmark script."""

from __future__ import annotations

import csv
import json
import re
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from cliharness import run

from rudp.cli.sim import main
from rudp.core.config import TransferConfig
from rudp.impair.model import Impairment
from rudp.sim.engine import SimConfig, simulate, simulate_naive
from rudp.sim.ladder import ladder
from rudp.sim.sweep import PARAMETERS, parse_sweep, run_sweep, sweep_configs

ROOT = Path(__file__).resolve().parent.parent


def in_process(capsys, *argv: str) -> tuple[int, str, str]:
    """rudp-sim's entry point in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exit_.value.code), out, err


# --------------------------------------------------------------------------------------------- RTT statistics
def test_rtt_statistics_on_a_clean_path_are_the_path_delay_both_ways():
    proc = run("rudp-sim", "--size", "256K", "--delay", "10ms", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    rtt, rto = result["rtt"], result["rto"]
    blocks = result["server"]["blocks"]
    assert rtt["samples"] == blocks  # nothing was resent, so every block gives a sample
    assert 0.020 <= rtt["min"] <= rtt["median"] <= rtt["max"] and rtt["median"] < 0.030
    assert rtt["min"] <= rtt["mean"] <= rtt["max"]
    assert (
        rto["seconds"] > 0
        and rto["kind"] in ("fixed", "adaptive")
        and rto["timeouts"] == {"client": 0, "server": 0}
    )

    text = run("rudp-sim", "--size", "256K", "--delay", "10ms")
    line = next(line for line in text.stdout.splitlines() if line.startswith("rtt:"))
    assert re.match(
        rf"rtt: {blocks} samples, min 20\.0 ms, median 20\.0 ms, max 20\.0 ms; rto \d+\.\d{{3}} s ", line
    )
    assert line.endswith("timeouts 0 + 0 ACK side") and len(line) <= 115


def karn_samples(records: list[dict], direction: str) -> list[float]:
    """The reference: Karn's rule computed from the trace (blocks sent once; first later ACK covering them)."""
    back = "s>c" if direction == "c>s" else "c>s"
    sent: dict[int, list[float]] = {}
    samples = []
    for r in records:
        if r["event"] == "send" and r["dir"] == direction and r["packet"].startswith("DATA block="):
            sent.setdefault(int(r["packet"].split()[1].split("=")[1]), []).append(r["t"])
        elif (
            r["event"] == "recv"
            and r["dir"] == back
            and r["packet"].startswith(("ACK block=", "SACK block="))  # a SACK's block is cumulative too
            and not r.get("corrupt")
        ):
            acked = int(r["packet"].split()[1].split("=")[1])
            for block in [b for b in sent if b <= acked]:
                times = sent.pop(block)
                if len(times) == 1:  # a block sent twice gives no sample
                    samples.append(round(r["t"] - times[0], 9))
    return samples


@pytest.mark.parametrize("seed,direction", [(5, "upload"), (6, "download")])
def test_rtt_samples_follow_karns_rule_on_a_lossy_path(seed, direction):
    print(f"seed {seed}, {direction}")
    path = Impairment(loss=0.1, delay=0.01, jitter=0.004)
    config = SimConfig(
        size=150_000,
        direction=direction,
        client=TransferConfig(blksize=1000, windowsize=4, timeout=0.5, retries=30),
        server=TransferConfig(blksize=65464, windowsize=64, timeout=0.5, retries=30),
        up=path,
        down=path,
        seed=seed,
    )
    records: list[dict] = []
    result = simulate(config, trace=records.append)
    assert result.ok
    expected = sorted(karn_samples(records, "c>s" if direction == "upload" else "s>c"))
    sender = result.client if direction == "upload" else result.server
    assert sender["retransmissions"] > 0 and 0 < len(expected) < sender["blocks"]  # some blocks gave no sample
    rtt = result.rtt
    assert rtt["samples"] == len(expected)
    nanoseconds = pytest.approx  # the trace's times are rounded to the nanosecond
    assert [rtt["min"], rtt["median"], rtt["max"]] == nanoseconds(
        [expected[0], statistics.median(expected), expected[-1]], abs=3e-9
    )
    assert rtt["min"] >= 0.020


def test_rtt_samples_survive_the_16_bit_block_number_rollover():
    config = SimConfig(
        size=600 * 1024,  # 76,805 blocks of 8 bytes (4 hold the xxh128 trailer): block numbers wrap past 65535
        client=TransferConfig(blksize=8, windowsize=64, timeout=1.0),
        up=Impairment(delay=0.01),
        down=Impairment(delay=0.01),
    )
    result = simulate(config)
    assert result.ok and result.server["blocks"] == 76_805
    assert result.rtt["samples"] == 76_805 and result.rtt["min"] == 0.02
    # A block is acknowledged with the next few (the receiver coalesces SACKs while DATA keeps coming), never
    # much later than its own round trip.
    assert result.rtt["max"] < 0.02 + 0.005


# --------------------------------------------------------------------------------------------- ladder
def parse_ladder(text: str) -> list[tuple[str, str, str]]:
    """(side of the text, arrow, packet) for each event line."""
    events = []
    for line in text.splitlines():
        match = re.match(r"^\s*\d+\.\d{3}  (.{35})  (.{16})(?:  (.*))?$", line.ljust(200))
        if match:
            left, arrow, right = match.group(1).strip(), match.group(2).strip(), (match.group(3) or "").strip()
            events.append(("left", arrow, left) if left else ("right", arrow, right))
    return events


def test_ladder_shows_request_oack_data_ack_in_order_for_a_tiny_upload():
    proc = run(
        "rudp-sim", "--size", "1000", "--blksize", "512", "--windowsize", "1", "--delay", "10ms", "--ladder"
    )
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    ladder_text = proc.stdout.split("\n\n")[0]
    assert "sender: client" in ladder_text and "receiver: server" in ladder_text
    # blksize 512 and windowsize 1 are RFC 1350's: no option needed; tsize and the digest (cut to fit the column)
    # are.  The data stream is the file's 1000 bytes and then the 32 of its xxh128 digest (spec 7.7).
    wrq = "WRQ 'sim.bin' octet tsize=1000 ..."
    assert parse_ladder(ladder_text) == [
        ("left", "---->", wrq),  # the client sends its request...
        ("right", "---->", wrq),  # ...which reaches the server 10 ms later
        ("right", "<----", "OACK tsize=1000 xxh128=trailer"),
        ("left", "<----", "OACK tsize=1000 xxh128=trailer"),
        ("left", "---->", "DATA block=1 len=512"),
        ("right", "---->", "DATA block=1 len=512"),
        ("right", "<----", "ACK block=1"),
        ("left", "<----", "ACK block=1"),
        ("left", "---->", "DATA block=2 len=512"),
        ("right", "---->", "DATA block=2 len=512"),
        ("right", "<----", "ACK block=2"),
        ("left", "<----", "ACK block=2"),
        ("left", "---->", "DATA block=3 len=8"),
        ("right", "---->", "DATA block=3 len=8"),
        ("right", "<----", "ACK block=3"),
        ("left", "<----", "ACK block=3"),
    ]
    times = re.findall(r"^\s*(\d+\.\d{3})  ", ladder_text, re.MULTILINE)
    assert times[:4] == ["0.000", "10.000", "10.000", "20.000"]
    assert "8 datagrams sent: 0 lost, 0 duplicated" in ladder_text and "result: INTACT" in proc.stdout
    assert max(len(line) for line in ladder_text.splitlines()) <= 100


def test_ladder_of_a_download_puts_the_server_on_the_left():
    config = SimConfig(size=100, direction="download", up=Impairment(delay=0.01), down=Impairment(delay=0.01))
    records: list[dict] = []
    simulate(config, trace=records.append)
    events = parse_ladder(ladder(records, config))
    assert events[0] == ("right", "<----", "RRQ 'sim.bin' octet blksize=1468...")  # the client asks
    # the server sends the file rightwards, and its xxh128 digest after it (spec 7.7)
    assert ("left", "---->", "DATA block=1 len=132") in events


def test_ladder_marks_every_lost_datagram_and_matches_the_trace(tmp_path):
    seed = 4
    print(f"seed {seed}")
    trace = tmp_path / "trace.jsonl"
    args = ["--size", "6000", "--blksize", "512", "--windowsize", "4", "--loss", "15%", "--delay", "10ms"]
    proc = run("rudp-sim", *args, "--seed", seed, "--ladder", "--trace", trace)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    lost = [r for r in records if r.get("lost")]
    assert lost, "pick a seed that loses something"
    lost_lines = [line for line in proc.stdout.splitlines() if "x lost" in line or "lost x--" in line]
    assert len(lost_lines) == len(lost)
    for line, record in zip(lost_lines, lost, strict=True):  # each at its time, with what was lost
        assert line.lstrip().startswith(f"{record['t'] * 1000:.3f}") and record["packet"][:20] in line
    assert f"{sum(r['event'] == 'send' for r in records)} datagrams sent: {len(lost)} lost" in proc.stdout


def test_ladder_marks_duplicates_and_corruption():
    seed = 2
    print(f"seed {seed}")
    path = Impairment(dup=0.3, corrupt=0.2, delay=0.005)
    config = SimConfig(
        size=8000,
        client=TransferConfig(blksize=512, windowsize=4, timeout=0.5, retries=30),
        up=path,
        down=path,
        seed=seed,
    )
    records: list[dict] = []
    simulate(config, trace=records.append)
    dups = sum(bool(r.get("dup")) for r in records)
    corrupt = sum(bool(r.get("corrupt")) for r in records)
    assert dups and corrupt
    text = ladder(records, config)
    arrows = [arrow for _, arrow, _ in parse_ladder(text)]
    assert sum("dup" in arrow for arrow in arrows) == dups
    assert sum("corrupt" in arrow for arrow in arrows) == corrupt
    assert f"{dups} duplicated, {corrupt} corrupted on arrival" in text
    assert set(records[0]) == {"t", "event", "dir", "packet", "len", "lost"}  # the trace's keys are unchanged


def test_ladder_of_a_long_run_is_cut_with_a_count_of_the_rest(tmp_path):
    trace = tmp_path / "trace.jsonl"
    proc = run("rudp-sim", "--size", "600K", "--ladder", "--trace", trace)
    assert proc.returncode == 0, proc.stderr
    total = len(trace.read_text().splitlines())
    ladder_text = proc.stdout.split("\n\n")[0]
    assert len(parse_ladder(ladder_text)) == 400
    assert ladder_text.splitlines()[-1].startswith(f"... {total - 400} more events (the run had {total};")


def test_ladder_function_cuts_at_its_limit():
    config = SimConfig(size=100_000, up=Impairment(delay=0.001), down=Impairment(delay=0.001))
    records: list[dict] = []
    simulate(config, trace=records.append)
    text = ladder(records, config, limit=50)
    assert len(parse_ladder(text)) == 50
    assert text.splitlines()[-1].startswith(f"... {len(records) - 50} more events (the run had {len(records)};")
    assert parse_ladder(ladder(records[:50], config, total=len(records))) == parse_ladder(text)


def test_ladder_refuses_json(capsys):
    code, out, err = in_process(capsys, "--size", "1K", "--ladder", "--json")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--ladder" in err


# --------------------------------------------------------------------------------------------- sweeps
def table_rows(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[1:3] == ["intact", "time"])
    return [line.split() for line in lines[start + 1 :] if not line.startswith("ran ")]


def test_sweep_table_csv_and_json_agree(tmp_path):
    out_csv, out_json = tmp_path / "sweep.csv", tmp_path / "sweep.json"
    proc = run(
        "rudp-sim",
        "--size",
        "64K",
        "--delay",
        "5ms",
        "--sweep",
        "loss=0,1,2,5,10,20%",
        "--seeds",
        "2",
        "--csv",
        out_csv,
        "--json-out",
        out_json,
    )
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    rows = table_rows(proc.stdout)
    assert [row[0] for row in rows] == ["0%", "1%", "2%", "5%", "10%", "20%"]  # the % reached every value
    assert all(len(row) == 7 and re.fullmatch(r"[0-2]/2", row[1]) for row in rows)
    record = json.loads(out_json.read_text())
    assert record["parameter"] == "loss" and record["seeds_per_value"] == 2
    assert [r["value"] for r in record["rows"]] == [0.0, 0.01, 0.02, 0.05, 0.1, 0.2]
    assert all(r["seeds"] == [1, 2] and r["runs"] == 2 for r in record["rows"])
    with out_csv.open(newline="") as stream:
        csv_rows = list(csv.DictReader(stream))
    assert len(csv_rows) == len(record["rows"]) == len(rows) == 6
    for shown, written, stored in zip(rows, csv_rows, record["rows"], strict=True):
        assert shown[0] == written["label"] == stored["label"]
        assert shown[1] == f"{written['intact']}/{written['runs']}" == f"{stored['intact']}/{stored['runs']}"
        assert shown[2] == f"{float(written['time_s']):.3f}" == f"{stored['time_s']:.3f}"
        assert shown[3] == f"{float(written['goodput_mbps']):.3f}" == f"{stored['goodput_mbps']:.3f}"
        assert [float(x) for x in shown[4:]] == [
            float(written[k]) for k in ("datagrams", "retransmissions", "lost")
        ]
        assert [float(x) for x in shown[4:]] == [stored[k] for k in ("datagrams", "retransmissions", "lost")]
    assert float(rows[0][6]) == 0 and float(rows[-1][6]) > 0  # no loss at 0 %, some at 20 %
    assert float(rows[0][3]) > float(rows[-1][3])  # loss costs goodput


def test_sweep_units_carry_to_every_value_and_each_run_matches_a_single_run():
    sweep = parse_sweep("delay=10,20,50ms")
    assert sweep.labels == ("10ms", "20ms", "50ms") and sweep.values == (0.01, 0.02, 0.05)
    assert parse_sweep("rate=1,10mbit").values == (1e6, 10e6)
    assert parse_sweep("size=64K,1,2M").values == (64 * 1024, 1024**2, 2 * 1024**2)
    assert parse_sweep("loss=0.01,0.05").values == (0.01, 0.05)  # bare fractions stay fractions
    assert parse_sweep("burst=1%:30%,2%:30%").values == ((0.01, 0.3), (0.02, 0.3))
    assert parse_sweep("timeout=0.5,1").values == (0.5, 1.0) and parse_sweep("timeout=500,800ms").values[0] == 0.5
    base = SimConfig(size=20_000, client=TransferConfig(blksize=1000, windowsize=4, timeout=1.0), seed=3)
    rows = run_sweep(base, sweep, seeds=1)
    assert [row.time_s for row in rows] == sorted(row.time_s for row in rows)  # more delay, more time
    single = simulate(sweep_configs(base, sweep)[1])
    assert rows[1].time_s == single.transfer_time and rows[1].intact == 1


def test_sweep_seeds_are_consecutive_and_each_row_is_the_median_of_its_runs():
    base = SimConfig(size=30_000, client=TransferConfig(blksize=1000, windowsize=4, timeout=0.5), seed=11)
    seen: list[int] = []
    (row,) = run_sweep(base, parse_sweep("loss=10%"), seeds=3, on_run=lambda config, _: seen.append(config.seed))
    assert seen == [11, 12, 13] and row.seeds == (11, 12, 13) and row.runs == 3
    alone = [simulate(sweep_configs(replace(base, seed=s), parse_sweep("loss=10%"))[0]) for s in seen]
    assert len({r.transfer_time for r in alone}) == 3  # three different runs...
    assert row.time_s == statistics.median(r.transfer_time for r in alone)  # ...and the row holds their median
    assert row.lost == statistics.median(r.up["lost_random"] + r.down["lost_random"] for r in alone)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_every_sweepable_parameter_reaches_the_configuration(name):
    examples = {
        "loss": "5%",
        "burst": "2%:30%",
        "dup": "5%",
        "reorder": "5%",
        "delay": "20ms",
        "jitter": "5ms",
        "corrupt": "5%",
        "rate": "10mbit",
        "queue": "7",
        "size": "3K",
        "blksize": "700",
        "windowsize": "3",
        "timeout": "2",
        "seed": "9",
    }
    base = SimConfig()
    (config,) = sweep_configs(base, parse_sweep(f"{name}={examples[name]}"))
    assert config != base
    read = {
        "size": config.size,
        "seed": config.seed,
        "blksize": config.client.blksize,
        "windowsize": config.client.windowsize,
        "timeout": config.client.timeout,
    }
    value = read[name] if name in read else getattr(config.up, name)
    if name not in read:
        assert getattr(config.down, name) == value  # both directions, as the command-line options
    if name == "timeout":
        assert config.server.timeout == 2.0
    assert value == PARAMETERS[name].parse(examples[name])


@pytest.mark.parametrize(
    "spec,fragment",
    [
        ("loss", "NAME=V1,V2"),
        ("speed=1,2", "cannot sweep 'speed'"),
        ("loss=", "empty value"),
        ("loss=1,,2%", "empty value"),
        ("loss=1,2,5", "ambiguous"),
        ("delay=10,20", "needs a unit"),
        ("blksize=7,512", "blksize=7"),
        ("windowsize=many", "whole number"),
        ("rate=1,2mbps", "ambiguous rate unit"),
    ],
)
def test_a_bad_sweep_is_one_line_and_exit_2(capsys, spec, fragment):
    code, out, err = in_process(capsys, "--size", "1K", "--sweep", spec)
    assert code == 2 and out == "", (code, out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("rudp: error: --sweep ") and fragment in err, err


@pytest.mark.parametrize("extra", [["--csv", "x.csv"], ["--seeds", "2"], ["--plot", "x.png"], ["--json-out", "x"]])
def test_sweep_options_without_a_sweep_are_refused(capsys, extra):
    code, _, err = in_process(capsys, "--size", "1K", *extra)
    assert code == 2 and "goes with --sweep" in err and len(err.strip().splitlines()) == 1


def test_sweep_as_json_on_stdout_and_a_missing_output_folder(capsys, tmp_path):
    code, out, _ = in_process(capsys, "--size", "8K", "--sweep", "windowsize=1,16", "--json")
    record = json.loads(out)
    assert code == 0 and [r["label"] for r in record["rows"]] == ["1", "16"]
    assert record["rows"][0]["datagrams"] > record["rows"][1]["datagrams"]  # fewer ACKs with a window
    code, _, err = in_process(
        capsys, "--size", "2K", "--sweep", "seed=1,2", "--csv", str(tmp_path / "no" / "x.csv")
    )
    assert code == 3 and "no such directory" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------- plots
def test_plot_without_matplotlib_is_a_one_line_usage_error(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    png = tmp_path / "sweep.png"
    code, out, err = in_process(capsys, "--size", "2K", "--sweep", "loss=0,5%", "--plot", str(png))
    assert code == 2 and out == "" and not png.exists()
    assert err == "rudp: error: --plot needs matplotlib: pip install 'rudp[plot]'\n"


def test_plot_writes_a_png(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "sweep.png"
    for spec in ("loss=0,5,10%", "burst=1%:30%,5%:30%"):  # numbers on the axis, and categories
        code, out, err = in_process(capsys, "--size", "4K", "--sweep", spec, "--plot", str(png))
        assert code == 0, err
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        png.unlink()


# --------------------------------------------------------------------------------------------- naive pacing
def test_naive_sender_paces_itself_at_the_bottleneck_rate():
    path = Impairment(rate=10e6, queue=64)
    config = SimConfig(size=1024 * 1024, up=path, down=path)  # 715 chunks: 11 times the queue
    report = simulate_naive(config)
    assert report.intact and report.missing == 0 and report.arrived == report.sent == 715, report.summary()
    lossy = simulate_naive(SimConfig(size=1024 * 1024, up=Impairment(rate=10e6, queue=64, loss=0.05), seed=3))
    assert 10 < lossy.missing < 80  # only the path's own ~5 % loss, no queue overflow on top


# --------------------------------------------------------------------------------------------- benchmark
def test_bench_script_prints_the_ratio():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_sim.py"), "--size", "200K", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^\d+x faster than real time \(target >= 50x: (met|MISSED)\)$", proc.stdout, re.MULTILINE)
    assert re.search(r"^simulated: \d+\.\d{3} s", proc.stdout, re.MULTILINE) and "result: INTACT" in proc.stdout


def test_bad_bench_option_is_one_line():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_sim.py"), "--loss", "lots"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith("expected a percentage like 5% or 0.5% (or a fraction like 0.05), not 'lots'")
    )
