"""rudp-bench: rudp against TCP (CUBIC and BBR) and real TFTP peers, across the same impaired path (rudp.lab).

Every protocol crosses the same link: two network namespaces joined by a relay applying rudp's impairment model to
every IP packet.  The bench builds a matrix (loss x RTT x rate x size, with repetitions), runs each protocol on
each scenario, and prints medians with min-max; ``--fairness`` starts one rudp and one TCP transfer together
across one bottleneck and reports each one's share.  Root only (it builds network namespaces).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from rudp.bench import children
from rudp.bench.matrix import (
    PROFILES,
    PROTOCOLS,
    Fairness,
    Job,
    Plan,
    parse_losses,
    parse_protocols,
    parse_rates,
    parse_rtts,
    parse_sizes,
    with_profile,
)
from rudp.bench.report import aggregate, as_json, format_fairness, format_table, format_targets, targets, write_csv
from rudp.bench.results import FAILED, FairnessResult, Measurement
from rudp.cli.common import Parser, entry_point
from rudp.errors import ExitCode, LocalFileError, NetworkError, UsageError
from rudp.impair.spec import format_duration, format_rate, parse_duration, parse_percent, parse_rate

__all__ = ["main", "bench", "NEEDS_ROOT"]

NEEDS_ROOT = "rudp-bench needs root to build its network namespaces"

EXIT_CODES = """profiles:
  quick     loss 0,2%, RTT 10ms, 50mbit, 2M, 1 repetition, runs capped at 6 s (under 2 minutes)
  wan       loss 0,0.5,1,2,5%, RTT 50ms, 100mbit, 16M, 3 repetitions (the issue's targets)
  fairness  only the shared-bottleneck scenario: rudp + TCP CUBIC, then rudp + TCP BBR (50mbit, 20ms, 20 s)

exit codes:
  0  the bench ran (targets marked FAIL, capped or failed runs are results, not errors)
  2  bad usage (unknown option, bad value, --plot without matplotlib)
  3  cannot write a --json/--csv/--plot file
  8  the lab could not be built (not root, no TUN device, no ip command)
  1  internal error (a bug)    130  interrupted (Ctrl-C): namespaces and children are cleaned up"""


def _parser() -> Parser:
    p = Parser(prog="rudp-bench", description=__doc__.split("\n\n")[0], epilog=EXIT_CODES)
    p.add_argument("--profile", choices=sorted(PROFILES), help="a named set of scenarios (see below)")
    p.add_argument("--quick", action="store_true", help="same as --profile quick")
    p.add_argument("--loss", help="random loss rates, each direction: 0,1,2%%")
    p.add_argument("--rtt", help="round-trip times (twice the one-way delay): 10ms,50ms")
    p.add_argument("--rate", help="link rates, each direction: 100mbit (or 'unlimited')")
    p.add_argument("--size", help="file sizes: 16M,64M")
    p.add_argument("--repeat", type=int, help="repetitions of every run (medians with min-max)")
    p.add_argument("--protocols", help=f"comma-separated: {','.join(PROTOCOLS)} (tcp = both TCPs; default all)")
    p.add_argument("--run-timeout", type=float, metavar="S", help="cap each run at S seconds (default: from size, "
                   "rate and RTT; a capped run reports the goodput of what had arrived)")  # fmt: skip
    p.add_argument("--seed", type=int, default=1, help="the lab's loss seed (default 1)")
    p.add_argument("--fairness", action="store_true", help="also run the shared-bottleneck scenario")
    p.add_argument("--fairness-rate", default="50mbit", help="its bottleneck rate (default 50mbit)")
    p.add_argument("--fairness-rtt", default="20ms", help="its RTT (default 20ms)")
    p.add_argument("--fairness-loss", default="0%", help="its random loss (default 0%%)")
    p.add_argument("--fairness-time", type=float, default=20.0, metavar="S", help="overlap measured (default 20)")
    p.add_argument("--json", metavar="FILE", help="write every run, the medians and the targets as JSON")
    p.add_argument("--csv", metavar="FILE", help="write the medians as CSV (one line per protocol and scenario)")
    p.add_argument(
        "--plot", metavar="FILE", help="draw goodput vs loss and vs RTT (.png or .svg; needs matplotlib)"
    )
    p.add_argument("--workdir", metavar="DIR", help="where source and received files go (default: a temp dir)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return p


def plan_from_args(args: argparse.Namespace) -> Plan:
    """The Plan: the profile's fields, then every explicit flag on top; UsageError (one line) if a value is bad."""
    if args.quick and args.profile not in (None, "quick"):
        raise UsageError(f"--quick and --profile {args.profile} contradict each other: choose one")
    profile = "quick" if args.quick else (args.profile or "custom")
    if args.repeat is not None and not 1 <= args.repeat <= 100:
        raise UsageError(f"--repeat must be between 1 and 100, not {args.repeat}")
    if args.run_timeout is not None and not 0.5 <= args.run_timeout <= 3600:
        raise UsageError(f"--run-timeout must be between 0.5 and 3600 seconds, not {args.run_timeout:g}")
    if not 1 <= args.fairness_time <= 3600:
        raise UsageError(f"--fairness-time must be between 1 and 3600 seconds, not {args.fairness_time:g}")
    try:
        overrides: dict[str, Any] = {
            "losses": parse_losses(args.loss) if args.loss is not None else None,
            "rtts": parse_rtts(args.rtt) if args.rtt is not None else None,
            "rates": parse_rates(args.rate) if args.rate is not None else None,
            "sizes": parse_sizes(args.size) if args.size is not None else None,
            "protocols": parse_protocols(args.protocols) if args.protocols is not None else None,
            "repeat": args.repeat,
            "run_timeout": args.run_timeout,
            "seed": args.seed,
        }
        fairness = Fairness(
            rate=parse_rate(args.fairness_rate),
            rtt=parse_duration(args.fairness_rtt),
            loss=parse_percent(args.fairness_loss),
            duration=args.fairness_time,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    plan = with_profile(profile, **overrides)
    if args.fairness or plan.fairness is not None:
        plan = replace(plan, fairness=fairness)
    if profile == "fairness" and any(overrides[k] is not None for k in ("losses", "rtts", "rates", "sizes")):
        plan = replace(plan, matrix=True)  # matrix flags given too: run both
    return plan


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before a long run, not after it: output directories exist, matplotlib is there for --plot."""
    for flag in ("json", "csv", "plot"):
        path = getattr(args, flag)
        if path is not None:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
                raise LocalFileError(f"--{flag} {path}: cannot write into {parent}")
    if args.plot is not None:
        if not args.plot.lower().endswith((".png", ".svg", ".pdf")):
            raise UsageError(f"--plot {args.plot}: the file name must end in .png or .svg")
        from rudp.bench.plot import need_matplotlib

        try:
            need_matplotlib()
        except ImportError as exc:
            raise UsageError(str(exc)) from None


def _open_lab() -> Any:
    """The real lab, or NetworkError (exit 8) with one line saying why it cannot be built."""
    if os.geteuid() != 0:
        raise NetworkError(NEEDS_ROOT)
    try:
        from rudp.lab import Lab, LabUnavailable, LinkSpec
    except ImportError as exc:
        raise NetworkError(f"the network lab (rudp.lab) is not available: {exc}") from None
    try:
        return Lab(LinkSpec()).__enter__()  # closed by _close_lab, also on Ctrl-C
    except LabUnavailable as exc:
        raise NetworkError(f"cannot build the network lab: {exc}") from None


def _close_lab(lab: Any) -> None:
    lab.__exit__(None, None, None)


def _make_runner(lab: Any, workdir: Path, plan: Plan, log: Callable[[str], None]) -> Any:
    from rudp.bench.runner import LabRunner

    return LabRunner(lab, workdir, seed=plan.seed, log=log)


def bench(
    argv: Sequence[str] | None,
    *,
    open_lab: Callable[[], Any] = _open_lab,
    close_lab: Callable[[Any], None] = _close_lab,
    make_runner: Callable[..., Any] = _make_runner,
) -> int:
    args = _parser().parse_args(argv)
    plan = plan_from_args(args)
    _check_outputs(args)
    log: Callable[[str], None] = (lambda text: None) if args.quiet else _stderr
    jobs = plan.jobs()
    started = time.monotonic()
    measurements: list[Measurement] = []
    fairness: list[FairnessResult] = []
    lab = open_lab()
    tmp = None
    try:
        if args.workdir:
            workdir = Path(args.workdir)
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            tmp = tempfile.TemporaryDirectory(prefix="rudp-bench-")
            workdir = Path(tmp.name)
        runner = make_runner(lab, workdir, plan, log)
        log(f"rudp-bench: {len(jobs)} runs over {len(plan.scenarios())} scenarios"
            + (", then the fairness scenario" if plan.fairness else ""))  # fmt: skip
        current = None
        for n, job in enumerate(jobs, 1):
            if job.scenario != current:
                current = job.scenario
                runner.set_link(job.scenario.rate, job.scenario.rtt, job.scenario.loss)
            measurements.append(_run_one(runner, job, plan.timeout_for(job.scenario)))
            log(f"[{n}/{len(jobs)}] {_describe(measurements[-1])}")
        if plan.fairness is not None:
            for tcp in plan.fairness.ccs:
                log(f"fairness: rudp + {tcp} across {format_rate(plan.fairness.rate)}, RTT "
                    f"{format_duration(plan.fairness.rtt)}, for {plan.fairness.duration:g} s")  # fmt: skip
                fairness.append(runner.fairness(plan.fairness, tcp))
    finally:
        children.kill_all()
        close_lab(lab)
        if tmp is not None:
            tmp.cleanup()
    rows = aggregate(measurements)
    verdicts = targets(rows, fairness)
    if rows:
        print(format_table(rows))
    if fairness:
        print("\nfairness (share = bytes moved while both ran / (capacity x that interval)):")
        print(format_fairness(fairness))
    print(f"\ntargets (issue 5), {time.monotonic() - started:.0f} s in all:")
    print(format_targets(verdicts), flush=True)
    _write_outputs(args, plan, measurements, fairness, verdicts, rows)
    return ExitCode.OK


def _run_one(runner: Any, job: Job, timeout: float) -> Measurement:
    reason = runner.skip_reason(job.protocol)
    if reason is not None:
        return Measurement(job.protocol, job.scenario, job.repeat, status=FAILED, error=reason,
                           info={"skipped": reason})  # fmt: skip
    return runner.run(job, timeout)


def _describe(m: Measurement) -> str:
    what = f"{m.protocol:<13} {m.scenario.label} #{m.repeat + 1}: "
    if m.goodput is None:
        return what + ("capped with nothing received" if m.status == "capped" else f"FAILED: {m.error}")
    tail = " (capped)" if m.status == "capped" else ""
    return what + f"{m.goodput / 1e6:.2f} Mbit/s in {m.seconds:.2f} s{tail}"


def _write_outputs(
    args: argparse.Namespace,
    plan: Plan,
    measurements: list[Measurement],
    fairness: list[FairnessResult],
    verdicts: list[dict[str, Any]],
    rows: list[Any],
) -> None:
    try:
        if args.json:
            plan_dict = asdict(plan)
            host = {"kernel": platform.release(), "python": platform.python_version(), "cpus": os.cpu_count()}
            with open(args.json, "w") as f:
                json.dump(as_json(plan_dict, measurements, fairness, verdicts, host), f, indent=1, default=str)
                f.write("\n")
        if args.csv:
            with open(args.csv, "w", newline="") as f:
                write_csv(rows, f)
        if args.plot:
            from rudp.bench.plot import plot_rows

            try:
                plot_rows(rows, args.plot, title=f"rudp-bench, profile {plan.profile}")
            except ValueError as exc:
                sys.stderr.write(f"rudp-bench: no plot: {exc}\n")
    except OSError as exc:
        raise LocalFileError(f"cannot write results: {exc}") from None


def _stderr(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def run(argv: Sequence[str] | None) -> int:
    return bench(argv)


main = entry_point(run)
