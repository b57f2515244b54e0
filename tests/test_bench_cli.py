"""rudp-bench without root: options, profiles, bad input, the matrix, medians, reports and plots.

The lab and the runner are replaced by fakes (``bench(..., open_lab=, make_runner=)``), so everything here runs in
milliseconds; the real lab is exercised by tests/test_bench_lab.py (root only).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

from rudp.bench.matrix import PROTOCOLS, Fairness, Job, Plan, Scenario, default_timeout, parse_list
from rudp.bench.report import Spread, aggregate, format_table, format_targets, targets, write_csv
from rudp.bench.results import CAPPED, FAILED, OK, FairnessResult, Measurement
from rudp.cli import bench as cli
from rudp.impair.spec import parse_percent

WAN = dict(rtt=0.05, rate=100e6, size=16 << 20)


def plan_of(*argv: str) -> Plan:
    return cli.plan_from_args(cli._parser().parse_args(list(argv)))


def measurement(protocol: str, loss: float, goodput_mbit: float, *, status: str = OK, repeat: int = 0,
                rtt: float = 0.05, rate: float | None = 100e6, size: int = 16 << 20) -> Measurement:  # fmt: skip
    seconds = size * 8 / (goodput_mbit * 1e6)
    return Measurement(
        protocol, Scenario(loss, rtt, rate, size), repeat, status=status, bytes=size, seconds=seconds,
        wire_bytes=int(size * 1.05), retransmissions=int(loss * 1000),
    )  # fmt: skip


# --------------------------------------------------------------------------- fakes
class FakeRunner:
    """Goodputs shaped like the issue's measurements: CUBIC collapses under loss, BBR and rudp do not."""

    def __init__(self, lab: object, workdir: Path, plan: Plan, log: object) -> None:
        self.links: list[tuple] = []
        self.jobs: list[Job] = []
        self.fair: list[str] = []

    def set_link(self, rate: float | None, rtt: float, loss: float) -> None:
        self.links.append((rate, rtt, loss))

    def skip_reason(self, protocol: str) -> str | None:
        return "in.tftpd is not installed" if protocol == "tftp-hpa" else None

    def run(self, job: Job, timeout: float) -> Measurement:
        self.jobs.append(job)
        base = {"tcp-cubic": 86.0 / (1 + 40 * job.scenario.loss * 100), "tcp-bbr": 85.0, "rudp": 90.0}
        g = base.get(job.protocol, 0.3)
        m = measurement(job.protocol, job.scenario.loss, g + job.repeat, rtt=job.scenario.rtt,
                        rate=job.scenario.rate, size=job.scenario.size, repeat=job.repeat)  # fmt: skip
        if job.protocol == "rudp-lockstep":
            m.status = CAPPED
        return m

    def fairness(self, spec: Fairness, tcp: str) -> FairnessResult:
        self.fair.append(tcp)
        share = 0.4 if tcp == "tcp-cubic" else 0.2
        byte_rate = spec.rate / 8
        moved = {"tcp": int(byte_rate * 10 * share), "rudp": int(byte_rate * 10 * 0.5)}
        return FairnessResult(tcp, spec.rate, spec.rtt, spec.loss, interval=10.0, bytes=moved)


def run_bench(argv: list[str], runners: list[FakeRunner] | None = None, closed: list[object] | None = None) -> int:
    made = runners if runners is not None else []
    lab = object()

    def make(*a: object) -> FakeRunner:
        made.append(FakeRunner(*a))  # type: ignore[arg-type]
        return made[-1]

    return cli.bench(
        argv, open_lab=lambda: lab, close_lab=(closed.append if closed is not None else lambda _: None),
        make_runner=make,
    )  # fmt: skip


def exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    return int(info.value.code)


# --------------------------------------------------------------------------- options and profiles
def test_profiles_set_the_matrix():
    quick = plan_of("--quick")
    assert quick.profile == "quick" and quick.repeat == 1 and quick.run_timeout is not None
    assert len(quick.jobs()) <= 10 and quick.fairness is None
    wan = plan_of("--profile", "wan")
    assert wan.losses == (0.0, 0.005, 0.01, 0.02, 0.05) and wan.rtts == (0.05,) and wan.rates == (100e6,)
    fair = plan_of("--profile", "fairness")
    assert fair.jobs() == [] and fair.fairness == Fairness()
    assert fair.fairness.ccs == ("tcp-cubic", "tcp-bbr")


def test_explicit_flags_override_the_profile_and_share_the_last_unit():
    plan = plan_of("--profile", "wan", "--loss", "0,1,2%", "--rtt", "10,50ms", "--rate", "20mbit", "--size",
                   "64K,1M", "--repeat", "2", "--protocols", "tcp,rudp", "--run-timeout", "7")  # fmt: skip
    assert plan.losses == (0.0, 0.01, 0.02)
    assert plan.rtts == (0.01, 0.05) and plan.rates == (20e6,) and plan.sizes == (64 << 10, 1 << 20)
    assert plan.protocols == ("tcp-cubic", "tcp-bbr", "rudp") and plan.repeat == 2
    assert plan.timeout_for(plan.scenarios()[0]) == 7


def test_fairness_flag_adds_the_scenario_with_its_own_link():
    plan = plan_of("--quick", "--fairness", "--fairness-rate", "20mbit", "--fairness-rtt", "40ms",
                   "--fairness-time", "5")  # fmt: skip
    assert plan.jobs() and plan.fairness == Fairness(rate=20e6, rtt=0.04, duration=5.0)


def test_parse_list_reuses_rudps_grammar():
    assert parse_list("0, 0.5, 1%", parse_percent, "loss") == (0.0, 0.005, 0.01)
    with pytest.raises(ValueError, match="--loss 1"):
        parse_list("1,2", parse_percent, "loss")  # a bare 1 is ambiguous in rudp's grammar


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--loss", "150%"], "cannot exceed 100%"),
        (["--loss", "0,,1%"], "empty value"),
        (["--rtt", "50"], "needs a unit"),
        (["--rate", "10mbps"], "10mbps"),
        (["--size", "lots"], "size must look like"),
        (["--protocols", "tcp,quic"], "unknown protocol 'quic'"),
        (["--repeat", "0"], "--repeat must be between"),
        (["--run-timeout", "0"], "--run-timeout"),
        (["--quick", "--profile", "wan"], "contradict"),
        (["--profile", "lan"], "invalid choice"),
        (["--plot", "out.txt"], ".png or .svg"),
        (["--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_unwritable_output_is_exit_3(tmp_path, capsys):
    assert exit_code(["--quick", "--json", str(tmp_path / "missing-dir" / "out.json")]) == 3
    assert "cannot write" in capsys.readouterr().err


def test_without_root_a_clear_message_and_exit_8(monkeypatch, capsys):
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    assert exit_code(["--quick"]) == 8
    err = capsys.readouterr().err
    assert err.endswith(f": error: {cli.NEEDS_ROOT}\n") and err.count("\n") == 1


def test_plot_without_matplotlib_fails_before_running(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    runners: list[FakeRunner] = []
    with pytest.raises(cli.UsageError, match="pip install"):
        run_bench(["--quick", "--plot", "x.png"], runners)
    assert runners == []  # nothing ran


# --------------------------------------------------------------------------- the matrix
def test_matrix_expands_size_rate_rtt_loss_then_repeats_then_protocols():
    plan = Plan(losses=(0.0, 0.02), rtts=(0.01, 0.05), rates=(100e6,), sizes=(1 << 20,), repeat=2,
                protocols=("tcp-cubic", "rudp"))  # fmt: skip
    jobs = plan.jobs()
    assert len(jobs) == 2 * 2 * 2 * 2
    assert [(j.protocol, j.repeat) for j in jobs[:4]] == [
        ("tcp-cubic", 0),
        ("rudp", 0),
        ("tcp-cubic", 1),
        ("rudp", 1),
    ]
    assert [(s.loss, s.rtt) for s in plan.scenarios()] == [(0.0, 0.01), (0.02, 0.01), (0.0, 0.05), (0.02, 0.05)]


def test_default_cap_grows_with_size_and_is_bounded():
    small, big = Scenario(0.0, 0.05, 100e6, 1 << 20), Scenario(0.0, 0.05, 100e6, 16 << 20)
    assert 5 < default_timeout(small) < default_timeout(big) <= 60
    assert default_timeout(Scenario(0.0, 0.05, 1e6, 1 << 30)) == 60


# --------------------------------------------------------------------------- medians and reports
def test_medians_with_min_max_exclude_failed_runs():
    runs = [measurement("rudp", 0.0, g, repeat=i) for i, g in enumerate((80.0, 90.0, 88.0))]
    runs.append(measurement("rudp", 0.0, 1.0, status=FAILED, repeat=3))
    (row,) = aggregate(runs)
    g = row.goodput
    assert g is not None
    assert (g.median, g.low, g.high) == pytest.approx((88e6, 80e6, 90e6))
    seconds = row.spread("seconds")
    assert seconds is not None and seconds.high == pytest.approx(runs[0].seconds)  # not the failed run's
    assert row.count(OK) == 3 and row.count(FAILED) == 1 and "FAILED 1/4" in row.note
    assert Spread.of([None, 2, 4]) == Spread(3.0, 2.0, 4.0) and Spread.of([None]) is None


def test_table_csv_and_json_carry_the_medians(tmp_path):
    runs = [measurement("tcp-cubic", 0.02, 1.4), measurement("rudp", 0.02, 88.0),
            measurement("rudp-lockstep", 0.02, 0.08, status=CAPPED)]  # fmt: skip
    rows = aggregate(runs)
    assert [r.protocol for r in rows] == ["tcp-cubic", "rudp", "rudp-lockstep"]  # PROTOCOLS' order
    table = format_table(rows).splitlines()
    assert table[0].startswith("protocol") and "goodput Mbit/s" in table[0]
    assert "88.00" in table[3] and "2%" in table[3] and "50 ms" in table[3] and "100 Mbit/s" in table[3]
    assert "capped 1/1" in table[4] and "0/1/0" in table[4]
    out = io.StringIO()
    write_csv(rows, out)
    parsed = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert float(parsed[1]["goodput_bps_median"]) == pytest.approx(88e6)
    assert parsed[2]["capped"] == "1" and float(parsed[0]["wire_per_payload_median"]) == pytest.approx(1.05)


def test_targets_pass_fail_and_na():
    rows = aggregate([measurement("tcp-cubic", 0.0, 86), measurement("tcp-bbr", 0.0, 87),
                      measurement("rudp", 0.0, 90), measurement("tcp-cubic", 0.02, 1.4),
                      measurement("tcp-bbr", 0.02, 83), measurement("rudp", 0.02, 70)])  # fmt: skip
    fair = [FairnessResult("tcp-cubic", 50e6, 0.02, 0.0, interval=10, bytes={"tcp": int(50e6 / 8 * 10 * 0.3)})]
    verdicts = {v["target"].split(",")[0]: v for v in targets(rows, fair)}
    assert verdicts["rudp / better TCP goodput"]["verdict"] == "PASS"
    assert verdicts["rudp / better TCP goodput"]["value"] == pytest.approx(90 / 87)
    assert verdicts["rudp goodput 2% loss / 0% loss"]["verdict"] == "FAIL"  # 70/90 < 0.90
    assert verdicts["rudp / TCP CUBIC goodput"]["value"] == pytest.approx(50, rel=1e-3)
    assert verdicts["rudp / TCP BBR goodput"]["verdict"] == "FAIL"
    shares = [v for v in verdicts.values() if "share" in v["target"]]
    assert [v["verdict"] for v in shares] == ["PASS", "N/A"] and shares[0]["value"] == pytest.approx(0.3)
    text = format_targets(list(verdicts.values()))
    assert "PASS  rudp / better TCP goodput" in text and "1.03  (target >= 0.95)" in text
    assert "needs the fairness scenario" in text
    assert all(v["verdict"] == "N/A" for v in targets([], []))


# --------------------------------------------------------------------------- a whole bench, faked
def test_bench_runs_every_job_and_writes_json_csv_and_plots(tmp_path, capsys):
    runners: list[FakeRunner] = []
    closed: list[object] = []
    files = {ext: tmp_path / f"out.{ext}" for ext in ("json", "csv", "png", "svg")}
    argv = ["--profile", "wan", "--repeat", "2", "--rtt", "20,50ms", "--fairness", "-q",
            "--json", str(files["json"]), "--csv", str(files["csv"]), "--plot", str(files["png"])]  # fmt: skip
    assert run_bench(argv, runners, closed) == 0
    (runner,) = runners
    assert len(closed) == 1
    assert len(runner.jobs) == 5 * 2 * 2 * 4  # tftp-hpa is skipped by the fake: not run
    assert len(runner.links) == 10 and runner.fair == ["tcp-cubic", "tcp-bbr"]
    out = capsys.readouterr().out
    assert "skipped: in.tftpd is not installed" in out and "fairness" in out and "PASS " in out
    data = json.loads(files["json"].read_text())
    assert {r["protocol"] for r in data["rows"]} == set(PROTOCOLS)
    assert len(data["runs"]) == 5 * 2 * 2 * 5 and len(data["fairness"]) == 2
    rudp = next(r for r in data["rows"] if r["protocol"] == "rudp" and r["loss"] == 0 and r["rtt"] == 0.05)
    assert rudp["goodput_bps"] == {"median": 90.5e6, "min": 90e6, "max": 91e6}
    assert {t["verdict"] for t in data["targets"]} <= {"PASS", "FAIL"}
    assert files["csv"].read_text().count("\n") == 1 + 5 * 2 * 5
    assert files["png"].read_bytes().startswith(b"\x89PNG") and files["png"].stat().st_size > 10_000
    argv[-1] = str(files["svg"])
    assert run_bench(argv) == 0
    assert b"<svg" in files["svg"].read_bytes()[:1000]


def test_the_lab_is_closed_when_a_run_breaks(capsys):
    closed: list[object] = []

    class Broken(FakeRunner):
        def run(self, job: Job, timeout: float) -> Measurement:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cli.bench(["--quick", "-q"], open_lab=lambda: "lab", close_lab=closed.append, make_runner=Broken)
    assert closed == ["lab"]


def test_plot_needs_a_run_that_moved_data(tmp_path):
    from rudp.bench.plot import plot_rows

    with pytest.raises(ValueError, match="nothing to plot"):
        plot_rows(aggregate([measurement("rudp", 0.0, 1.0, status=FAILED)]), str(tmp_path / "x.png"))
