"""Medians with min-max over repetitions, the terminal table, JSON and CSV, and the issue's targets.

Only runs that moved data count ("ok" or "capped"); a failed run (error, or a copy whose SHA-256 does not match)
is shown in the table's note and never in a median.  A row with a capped run says so: its goodput is what
arrived by the cap, a lower bound on what the protocol would have taken to finish.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from rudp.bench.matrix import PROTOCOLS, Scenario, human_size
from rudp.bench.results import CAPPED, FAILED, OK, FairnessResult, Measurement
from rudp.impair.spec import format_duration, format_percent, format_rate

__all__ = [
    "Row",
    "Spread",
    "aggregate",
    "format_table",
    "format_fairness",
    "write_csv",
    "as_json",
    "targets",
    "format_targets",
    "TARGETS",
]

# Issue 5's targets, measured at 100 Mbit/s and 50 ms RTT (and a 50 Mbit/s, 20 ms bottleneck for fairness).
TARGETS = {
    "clean_vs_tcp": 0.95,
    "loss2_vs_clean": 0.90,
    "loss2_vs_cubic": 10.0,
    "loss2_vs_bbr": 1.0,
    "share": 0.25,
}
TARGET_RATE, TARGET_RTT = 100e6, 0.050


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float | int | None]) -> Spread | None:
        present = [float(v) for v in values if v is not None]
        if not present:
            return None
        return cls(statistics.median(present), min(present), max(present))

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high}


@dataclass(frozen=True)
class Row:
    scenario: Scenario
    protocol: str
    runs: tuple[Measurement, ...]

    @property
    def counted(self) -> list[Measurement]:
        return [m for m in self.runs if m.counted]

    def spread(self, attr: str) -> Spread | None:
        return Spread.of(getattr(m, attr) for m in self.counted)

    def count(self, status: str) -> int:
        return sum(m.status == status for m in self.runs)

    @property
    def goodput(self) -> Spread | None:
        return self.spread("goodput")

    @property
    def note(self) -> str:
        notes = []
        if self.count(CAPPED):
            notes.append(f"capped {self.count(CAPPED)}/{len(self.runs)} (goodput of what arrived by the cap)")
        failed = [m for m in self.runs if m.status == FAILED]
        if failed:
            notes.append(f"FAILED {len(failed)}/{len(self.runs)}: {failed[0].error}")
        skipped = [m for m in self.runs if m.info.get("skipped")]
        if skipped:
            notes = [f"skipped: {skipped[0].info['skipped']}"]
        return "; ".join(notes)

    def as_dict(self) -> dict[str, Any]:
        def d(s: Spread | None) -> dict[str, float] | None:
            return s.as_dict() if s else None

        return {
            "protocol": self.protocol,
            **self.scenario.as_dict(),
            "runs": len(self.runs),
            "ok": self.count(OK),
            "capped": self.count(CAPPED),
            "failed": self.count(FAILED),
            "goodput_bps": d(self.goodput),
            "seconds": d(self.spread("seconds")),
            "wire_per_payload": d(self.spread("overhead")),
            "retransmissions": d(self.spread("retransmissions")),
            "note": self.note,
        }


def aggregate(measurements: Sequence[Measurement]) -> list[Row]:
    """One row per (scenario, protocol), in the order scenarios were first run and PROTOCOLS' order."""
    groups: dict[tuple[Scenario, str], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.scenario, m.protocol), []).append(m)
    scenarios = list(dict.fromkeys(m.scenario for m in measurements))
    return [Row(s, p, tuple(groups[(s, p)])) for s in scenarios for p in PROTOCOLS if (s, p) in groups]


def _mbit(s: Spread | None) -> str:
    if s is None:
        return "-"
    if s.low == s.high:
        return f"{s.median / 1e6:.2f}"
    return f"{s.median / 1e6:.2f} ({s.low / 1e6:.2f}-{s.high / 1e6:.2f})"


def _num(s: Spread | None, fmt: str) -> str:
    return "-" if s is None else format(s.median, fmt)


def format_table(rows: Sequence[Row]) -> str:
    header = ["protocol", "loss", "RTT", "rate", "size", "goodput Mbit/s (min-max)", "time s", "wire/payload",
              "retrans", "ok/capped/failed", "note"]  # fmt: skip
    body = []
    for r in rows:
        s = r.scenario
        body.append(
            [
                r.protocol,
                format_percent(s.loss),
                format_duration(s.rtt),
                format_rate(s.rate) if s.rate else "unlimited",
                human_size(s.size),
                _mbit(r.goodput),
                _num(r.spread("seconds"), ".2f"),
                _num(r.spread("overhead"), ".3f"),
                _num(r.spread("retransmissions"), ".0f"),
                f"{r.count(OK)}/{r.count(CAPPED)}/{r.count(FAILED)}",
                r.note,
            ]
        )
    return _columns(header, body, right={1, 2, 3, 4, 5, 6, 7, 8, 9})


def format_fairness(results: Sequence[FairnessResult]) -> str:
    header = ["bottleneck", "TCP", "interval s", "rudp share", "TCP share", "rudp Mbit/s", "TCP Mbit/s", "note"]
    body = []
    for f in results:
        mbit = {k: v * 8 / f.interval / 1e6 for k, v in f.bytes.items()} if f.interval > 0 else {}
        body.append(
            [
                f"{format_rate(f.rate)}, RTT {format_duration(f.rtt)}, loss {format_percent(f.loss)}",
                f.tcp,
                f"{f.interval:.1f}",
                _pct(f.share("rudp")),
                _pct(f.share("tcp")),
                f"{mbit['rudp']:.2f}" if "rudp" in mbit else "-",
                f"{mbit['tcp']:.2f}" if "tcp" in mbit else "-",
                f.error or "",
            ]
        )
    return _columns(header, body, right={2, 3, 4, 5, 6})


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _columns(header: list[str], body: list[list[str]], *, right: set[int]) -> str:
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: list[str]) -> str:
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *map(fmt, body)])


CSV_FIELDS = ["protocol", "loss", "rtt", "rate", "size", "runs", "ok", "capped", "failed", "goodput_bps_median",
              "goodput_bps_min", "goodput_bps_max", "seconds_median", "wire_per_payload_median",
              "retransmissions_median", "note"]  # fmt: skip


def write_csv(rows: Sequence[Row], stream: IO[str]) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in rows:
        g, secs, over, retx = r.goodput, r.spread("seconds"), r.spread("overhead"), r.spread("retransmissions")
        s = r.scenario
        writer.writerow(
            [
                r.protocol, s.loss, s.rtt, "" if s.rate is None else s.rate, s.size, len(r.runs), r.count(OK),
                r.count(CAPPED), r.count(FAILED), *(("", "", "") if g is None else (g.median, g.low, g.high)),
                "" if secs is None else secs.median, "" if over is None else over.median,
                "" if retx is None else retx.median, r.note,
            ]
        )  # fmt: skip


def as_json(
    plan: dict[str, Any],
    measurements: Sequence[Measurement],
    fairness: Sequence[FairnessResult],
    verdicts: Sequence[dict[str, Any]],
    host: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "plan": plan,
        "host": host or {},
        "rows": [r.as_dict() for r in aggregate(measurements)],
        "runs": [m.as_dict() for m in measurements],
        "fairness": [f.as_dict() for f in fairness],
        "targets": list(verdicts),
    }


# --------------------------------------------------------------------------- targets
def _median_goodput(rows: Sequence[Row], protocol: str, loss: float) -> float | None:
    for r in rows:
        s = r.scenario
        if (r.protocol == protocol and s.rate == TARGET_RATE and abs(s.rtt - TARGET_RTT) < 1e-9
                and abs(s.loss - loss) < 1e-9 and r.goodput is not None):  # fmt: skip
            return r.goodput.median
    return None


def targets(rows: Sequence[Row], fairness: Sequence[FairnessResult]) -> list[dict[str, Any]]:
    """Issue 5's targets as verdicts: PASS/FAIL with the ratio, N/A (and why) when a run needed is missing."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    rudp0, rudp2 = _median_goodput(rows, "rudp", 0.0), _median_goodput(rows, "rudp", 0.02)
    tcp0 = [g for g in (_median_goodput(rows, p, 0.0) for p in ("tcp-cubic", "tcp-bbr")) if g is not None]
    missing = "needs rudp and TCP rows at 100 Mbit/s, 50 ms RTT, {} loss (run --profile wan)"
    out = [
        _verdict("rudp / better TCP goodput, 0% loss, 100 Mbit/s 50 ms", ratio(rudp0, max(tcp0, default=None)),
                 TARGETS["clean_vs_tcp"], missing.format("0%")),
        _verdict("rudp goodput 2% loss / 0% loss, 100 Mbit/s 50 ms", ratio(rudp2, rudp0),
                 TARGETS["loss2_vs_clean"], missing.format("0% and 2%")),
        _verdict("rudp / TCP CUBIC goodput, 2% loss, 100 Mbit/s 50 ms",
                 ratio(rudp2, _median_goodput(rows, "tcp-cubic", 0.02)), TARGETS["loss2_vs_cubic"],
                 missing.format("2%")),
        _verdict("rudp / TCP BBR goodput, 2% loss, 100 Mbit/s 50 ms",
                 ratio(rudp2, _median_goodput(rows, "tcp-bbr", 0.02)), TARGETS["loss2_vs_bbr"],
                 missing.format("2%")),
    ]  # fmt: skip
    for cc, name in (("tcp-cubic", "CUBIC"), ("tcp-bbr", "BBR")):
        found = [f for f in fairness if f.tcp == cc and f.share("tcp") is not None]
        where = f"{format_rate(found[0].rate)} {format_duration(found[0].rtt)}" if found else "50 Mbit/s 20 ms"
        out.append(
            _verdict(f"TCP {name} share of a {where} bottleneck shared with rudp",
                     found[0].share("tcp") if found else None, TARGETS["share"],
                     "needs the fairness scenario (--fairness)")
        )  # fmt: skip
    return out


def _verdict(name: str, value: float | None, limit: float, why_missing: str) -> dict[str, Any]:
    verdict = "N/A" if value is None else ("PASS" if value >= limit else "FAIL")
    return {"target": name, "value": value, "limit": limit, "verdict": verdict,
            "why_missing": why_missing if value is None else None}  # fmt: skip


def format_targets(verdicts: Sequence[dict[str, Any]]) -> str:
    lines = []
    for v in verdicts:
        value = "n/a" if v["value"] is None else f"{v['value']:.2f}"
        tail = f"  ({v['why_missing']})" if v["why_missing"] else ""
        lines.append(f"{v['verdict']:<5} {v['target']:<66} {value:>7}  (target >= {v['limit']:g}){tail}")
    return "\n".join(lines)
