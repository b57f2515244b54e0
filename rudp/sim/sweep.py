"""Parameter sweeps: the same simulated transfer for each value of one parameter, summarised per value.

A sweep is written ``NAME=V1,V2,...``.  NAME is one of the impairment parameters (``loss``, ``burst``, ``dup``,
``reorder``, ``delay``, ``jitter``, ``corrupt``, ``rate``, ``queue``: set on both directions of the path, as the
command-line options do) or ``size``, ``blksize``, ``windowsize``, ``timeout`` (the client's and the server's)
or ``seed``.  Each value is read by the same parser as the matching command-line option, so ``loss=5%`` means
what ``--loss 5%`` means.  A unit written on the last value applies to every value written without one:
``loss=0,1,2,5%`` is ``0%,1%,2%,5%`` and ``delay=10,20,50ms`` is ``10ms,20ms,50ms``, while ``size=64K,1,2M``
is ``64K,1M,2M``.  (``burst`` values are pairs, ``2%:30%``, and take no shared unit.)

With ``seeds`` = N each value runs N times, with seeds s, s+1, ... s+N-1 from the base configuration's seed s
(or from the value itself when sweeping ``seed``), and a row reports how many of the N runs delivered the file
intact and the median of each measurement over the N runs.  The functions here are pure apart from the CPU
time: no printing, no files; ``rudp.cli.sim`` does the talking, ``rudp.sim.plot`` the drawing.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any

from rudp.impair.spec import (
    parse_burst,
    parse_duration,
    parse_percent,
    parse_queue,
    parse_rate,
)
from rudp.sim.engine import SimConfig, SimResult, simulate

__all__ = [
    "PARAMETERS",
    "MAX_VALUES",
    "Parameter",
    "Sweep",
    "SweepRow",
    "parse_sweep",
    "sweep_configs",
    "run_sweep",
    "format_table",
    "write_csv",
    "as_json",
]

MAX_VALUES = 1000  # values in one sweep


@dataclass(frozen=True)
class Parameter:
    name: str
    parse: Callable[[str], Any]  # text -> value, raising ValueError with a one-line message
    apply: Callable[[SimConfig, Any], SimConfig]  # raises ValueError for a value the configuration refuses
    axis: str  # axis label for a plot
    scale: float | None  # plot x = value * scale; None: the values are categories (burst pairs)
    shared_unit: bool = True  # a unit on the last value applies to the values written without one


def _impairment(name: str) -> Callable[[SimConfig, Any], SimConfig]:
    def apply(config: SimConfig, value: Any) -> SimConfig:
        return replace(config, up=replace(config.up, **{name: value}), down=replace(config.down, **{name: value}))

    return apply


def _client(name: str) -> Callable[[SimConfig, Any], SimConfig]:
    def apply(config: SimConfig, value: Any) -> SimConfig:
        return replace(config, client=replace(config.client, **{name: value}))

    return apply


def _timeout(config: SimConfig, value: float) -> SimConfig:
    return replace(
        config, client=replace(config.client, timeout=value), server=replace(config.server, timeout=value)
    )


def _integer(what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{what} must be a whole number, not {text!r}") from None

    return parse


def _size(text: str) -> int:
    from rudp.cli.common import parse_size  # the --size grammar (64K, 10M), in one place

    try:
        return parse_size(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(str(exc)) from None


def _seconds(text: str) -> float:
    """The --timeout grammar (a bare number of seconds) or a duration with a unit (500ms)."""
    try:
        value = float(text)
    except ValueError:
        value = parse_duration(text)
    if not 0 < value < float("inf"):
        raise ValueError(f"timeout must be a positive number of seconds, not {text!r}")
    return value


PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter("loss", parse_percent, _impairment("loss"), "random loss per datagram (%)", 100.0),
        Parameter("burst", parse_burst, _impairment("burst"), "burst loss p:r", None, shared_unit=False),
        Parameter("dup", parse_percent, _impairment("dup"), "duplication (%)", 100.0),
        Parameter("reorder", parse_percent, _impairment("reorder"), "reordering (%)", 100.0),
        Parameter("delay", parse_duration, _impairment("delay"), "one-way delay (ms)", 1000.0),
        Parameter("jitter", parse_duration, _impairment("jitter"), "jitter (ms)", 1000.0),
        Parameter("corrupt", parse_percent, _impairment("corrupt"), "corruption (%)", 100.0),
        Parameter("rate", parse_rate, _impairment("rate"), "bottleneck rate (Mbit/s)", 1e-6),
        Parameter("queue", parse_queue, _impairment("queue"), "bottleneck queue (datagrams)", 1.0),
        Parameter("size", _size, lambda c, v: replace(c, size=v), "file size (KiB)", 1 / 1024),
        Parameter("blksize", _integer("blksize"), _client("blksize"), "blksize (bytes)", 1.0),
        Parameter("windowsize", _integer("windowsize"), _client("windowsize"), "windowsize (blocks)", 1.0),
        Parameter("timeout", _seconds, _timeout, "retransmission timeout (s)", 1.0),
        Parameter("seed", _integer("seed"), lambda c, v: replace(c, seed=v), "seed", 1.0),
    )
}

_NUMBER_AND_UNIT = re.compile(r"^\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?)\s*(\S*?)\s*$")


@dataclass(frozen=True)
class Sweep:
    name: str
    labels: tuple[str, ...]  # each value as written, with the shared unit filled in
    values: tuple[Any, ...]  # each value parsed

    @property
    def parameter(self) -> Parameter:
        return PARAMETERS[self.name]


def parse_sweep(spec: str) -> Sweep:
    """``"loss=0,1,5%"`` -> Sweep("loss", ("0%", "1%", "5%"), (0.0, 0.01, 0.05)); ValueError, one line, if bad."""
    name, equals, listing = spec.partition("=")
    name = name.strip().lower()
    if not equals or not name:
        raise ValueError(f"a sweep looks like loss=0,1,2,5% (NAME=V1,V2,...), not {spec!r}")
    parameter = PARAMETERS.get(name)
    if parameter is None:
        raise ValueError(f"cannot sweep {name!r}: choose one of {', '.join(PARAMETERS)}")
    texts = [text.strip() for text in listing.split(",")]
    if not listing.strip() or any(not text for text in texts):
        raise ValueError(f"empty value in the sweep {spec!r}: give values separated by commas, like {name}=1,2,3")
    if len(texts) > MAX_VALUES:
        raise ValueError(f"a sweep takes at most {MAX_VALUES} values, not {len(texts)}")
    if parameter.shared_unit:
        texts = share_unit(texts)
    values = []
    for text in texts:
        try:
            values.append(parameter.parse(text))
        except ValueError as exc:
            raise ValueError(f"{name}={text}: {exc}") from None
    return Sweep(name, tuple(texts), tuple(values))


def share_unit(texts: list[str]) -> list[str]:
    last = _NUMBER_AND_UNIT.match(texts[-1])
    unit = last.group(2) if last else ""
    if not unit:
        return texts
    shared = []
    for text in texts:
        match = _NUMBER_AND_UNIT.match(text)
        shared.append(f"{match.group(1)}{unit}" if match and not match.group(2) else text)
    return shared


def sweep_configs(base: SimConfig, sweep: Sweep) -> list[SimConfig]:
    """The configuration of each value, all checked before anything runs (ValueError names the bad value)."""
    configs = []
    for label, value in zip(sweep.labels, sweep.values, strict=True):
        try:
            configs.append(sweep.parameter.apply(base, value))
        except ValueError as exc:
            raise ValueError(f"{sweep.name}={label}: {exc}") from None
    return configs


@dataclass(frozen=True)
class SweepRow:
    """One value of the swept parameter: medians over its runs (one run per seed)."""

    parameter: str
    label: str  # the value as written
    value: float | str  # the value in SI units (a fraction for percentages, seconds, bit/s, bytes), or text
    runs: int
    intact: int  # runs whose receiver holds exactly the file
    time_s: float  # median simulated transfer time
    goodput_mbps: float  # median goodput (0 for a run that did not deliver the file intact)
    datagrams: float  # median datagrams sent, both sides
    retransmissions: float  # median retransmissions by the sending side
    lost: float  # median datagrams lost by the network, both directions
    seeds: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["seeds"] = list(self.seeds)
        return d


def run_sweep(
    base: SimConfig,
    sweep: Sweep,
    *,
    seeds: int = 1,
    on_run: Callable[[SimConfig, SimResult], None] | None = None,
) -> list[SweepRow]:
    """Simulate every value of ``sweep`` ``seeds`` times; ``on_run`` sees each run as it ends (for progress)."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, not {seeds}")
    rows = []
    for label, value, config in zip(sweep.labels, sweep.values, sweep_configs(base, sweep), strict=True):
        results = []
        for k in range(seeds):
            run_config = replace(config, seed=config.seed + k)
            result = simulate(run_config)
            if on_run is not None:
                on_run(run_config, result)
            results.append(result)
        rows.append(_row(sweep.name, label, value, results, tuple(config.seed + k for k in range(seeds)), base))
    return rows


def _row(
    name: str, label: str, value: Any, results: list[SimResult], seeds: tuple[int, ...], base: SimConfig
) -> SweepRow:
    sender = "client" if base.direction == "upload" else "server"

    def median(measure: Callable[[SimResult], float]) -> float:
        return statistics.median(measure(r) for r in results)

    return SweepRow(
        parameter=name,
        label=label,
        value=value if isinstance(value, (int, float)) else ":".join(f"{x:g}" for x in value),
        runs=len(results),
        intact=sum(r.ok for r in results),
        time_s=median(lambda r: r.transfer_time),
        goodput_mbps=median(lambda r: r.goodput_bps / 1e6),
        datagrams=median(lambda r: r.client.get("datagrams_sent", 0) + r.server.get("datagrams_sent", 0)),
        retransmissions=median(lambda r: getattr(r, sender).get("retransmissions", 0)),
        lost=median(lambda r: _lost(r.up) + _lost(r.down)),
        seeds=seeds,
    )


def _lost(counters: dict[str, int]) -> int:
    return counters.get("lost_random", 0) + counters.get("lost_burst", 0) + counters.get("lost_queue", 0)


_COLUMNS = ("intact", "time s", "goodput Mbit/s", "datagrams", "retransmitted", "lost")


def format_table(rows: Sequence[SweepRow]) -> str:
    """The rows as an aligned text table, one line per value (medians over the seeds)."""
    if not rows:
        return ""
    name = rows[0].parameter
    cells = [
        (
            row.label,
            f"{row.intact}/{row.runs}",
            f"{row.time_s:.3f}",
            f"{row.goodput_mbps:.3f}",
            f"{row.datagrams:g}",
            f"{row.retransmissions:g}",
            f"{row.lost:g}",
        )
        for row in rows
    ]
    header = (name, *_COLUMNS)
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in [header, *cells]
    )


_CSV_FIELDS = (
    "parameter",
    "label",
    "value",
    "runs",
    "intact",
    "time_s",
    "goodput_mbps",
    "datagrams",
    "retransmissions",
    "lost",
    "seeds",
)


def write_csv(rows: Sequence[SweepRow], stream: IO[str]) -> None:
    """One header line, then one line per row; ``seeds`` is written as space-separated numbers."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(_CSV_FIELDS)
    for row in rows:
        d = row.as_dict()
        d["seeds"] = " ".join(map(str, row.seeds))
        writer.writerow([d[field] for field in _CSV_FIELDS])


def as_json(base: SimConfig, sweep: Sweep, rows: Sequence[SweepRow], seeds: int) -> dict[str, Any]:
    """A JSON-ready record of the whole sweep: what was swept, the base configuration and the rows."""
    return {
        "parameter": sweep.name,
        "values": list(sweep.labels),
        "seeds_per_value": seeds,
        "base": dataclasses.asdict(base),
        "rows": [row.as_dict() for row in rows],
    }
