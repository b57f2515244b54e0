"""What a bench run is made of: scenarios (loss x RTT x rate x size), protocols, repetitions, and the profiles.

A ``Plan`` is pure data, built from the command line (``rudp.cli.bench``) and expanded into ``Job``s in a fixed
order (scenario, then repetition, then protocol), so protocols of one scenario run back to back on the same link.
Values are parsed with rudp's own impairment grammar (``rudp.impair.spec``): ``2%``, ``50ms``, ``100mbit``; a unit
on the last value of a list applies to every value written without one (``0,1,2%``), as in ``rudp-sim --sweep``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from rudp.cli.common import parse_size
from rudp.impair.spec import (
    format_duration,
    format_percent,
    format_rate,
    parse_duration,
    parse_percent,
    parse_rate,
)
from rudp.sim.sweep import share_unit

__all__ = [
    "PROTOCOLS",
    "TCP_CC",
    "Scenario",
    "Job",
    "Fairness",
    "Plan",
    "PROFILES",
    "parse_list",
    "parse_losses",
    "parse_rtts",
    "parse_rates",
    "parse_sizes",
    "parse_protocols",
    "with_profile",
    "default_timeout",
    "human_size",
]

# The order is the table's and the plot's order.
PROTOCOLS = ("tcp-cubic", "tcp-bbr", "rudp", "rudp-lockstep", "tftp-hpa")
TCP_CC = {"tcp-cubic": "cubic", "tcp-bbr": "bbr"}
MAX_VALUES = 20

T = TypeVar("T")


@dataclass(frozen=True)
class Scenario:
    """One link and one file: ``loss`` a probability, ``rtt`` seconds (twice the one-way delay), ``rate`` bit/s."""

    loss: float
    rtt: float
    rate: float | None
    size: int

    @property
    def label(self) -> str:
        rate = format_rate(self.rate) if self.rate else "unlimited"
        return (
            f"loss {format_percent(self.loss)}, RTT {format_duration(self.rtt)}, {rate}, {human_size(self.size)}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "rtt": self.rtt, "rate": self.rate, "size": self.size}


@dataclass(frozen=True)
class Job:
    scenario: Scenario
    protocol: str
    repeat: int


@dataclass(frozen=True)
class Fairness:
    """One rudp and one TCP transfer started together across one bottleneck, once per TCP congestion control."""

    rate: float = 50e6
    rtt: float = 0.020
    loss: float = 0.0
    duration: float = 20.0  # seconds of overlap measured (both flows are given more than they can send in it)
    ccs: tuple[str, ...] = ("tcp-cubic", "tcp-bbr")


@dataclass(frozen=True)
class Plan:
    losses: tuple[float, ...] = (0.0,)
    rtts: tuple[float, ...] = (0.050,)
    rates: tuple[float | None, ...] = (100e6,)
    sizes: tuple[int, ...] = (16 << 20,)
    protocols: tuple[str, ...] = PROTOCOLS
    repeat: int = 3
    run_timeout: float | None = None  # None: default_timeout(scenario)
    matrix: bool = True  # False: only the fairness scenario (--profile fairness)
    fairness: Fairness | None = None
    profile: str = "custom"
    seed: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def scenarios(self) -> list[Scenario]:
        if not self.matrix:
            return []
        return [
            Scenario(loss, rtt, rate, size)
            for size, rate, rtt, loss in itertools.product(self.sizes, self.rates, self.rtts, self.losses)
        ]

    def jobs(self) -> list[Job]:
        return [
            Job(scenario, protocol, repeat)
            for scenario in self.scenarios()
            for repeat in range(self.repeat)
            for protocol in self.protocols
        ]

    def timeout_for(self, scenario: Scenario) -> float:
        return self.run_timeout if self.run_timeout is not None else default_timeout(scenario)


# Each profile is a set of Plan fields; explicit flags override them.
PROFILES: dict[str, dict[str, Any]] = {
    # Under two minutes with lab set-up: two loss rates on a short path, small files, one repetition; the
    # lockstep and TFTP rows are capped (at 512 or 1468 bytes a round trip they cannot finish 2 MiB in time).
    "quick": dict(
        losses=(0.0, 0.02),
        rtts=(0.010,),
        rates=(50e6,),
        sizes=(2 << 20,),
        repeat=1,
        run_timeout=6.0,
    ),
    # The targets: 100 Mbit/s, 50 ms RTT, 0-5 % random loss.
    "wan": dict(losses=(0.0, 0.005, 0.01, 0.02, 0.05), rtts=(0.050,), rates=(100e6,), sizes=(16 << 20,), repeat=3),
    # Only the shared-bottleneck scenario.
    "fairness": dict(matrix=False, fairness=Fairness()),
}


def default_timeout(scenario: Scenario) -> float:
    """Cap a run at 4x its ideal time on the link (+ 5 s of start-up and 20 round trips), at most 60 s.

    TCP CUBIC at 2 % loss crawls (about 1.4 Mbit/s of 100): such a run is cut at the cap and reported "capped",
    with the goodput of what had arrived by then, rather than stalling the whole bench.
    """
    ideal = scenario.size * 8 / scenario.rate if scenario.rate else scenario.size * 8 / 1e9
    return min(60.0, 5.0 + 20 * scenario.rtt + 4 * ideal)


def parse_list(text: str, parse: Callable[[str], T], what: str) -> tuple[T, ...]:
    """``"0,1,2%"`` -> (0.0, 0.01, 0.02) with ``parse``; ValueError with a one-line message if any is bad."""
    texts = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in texts):
        raise ValueError(f"empty value in --{what} {text!r}: give values separated by commas")
    if len(texts) > MAX_VALUES:
        raise ValueError(f"--{what} takes at most {MAX_VALUES} values, not {len(texts)}")
    values = []
    for t in share_unit(texts):
        try:
            values.append(parse(t))
        except ValueError as exc:
            raise ValueError(f"--{what} {t}: {exc}") from None
        except Exception as exc:  # argparse.ArgumentTypeError from parse_size
            raise ValueError(f"--{what} {t}: {exc}") from None
    return tuple(values)


def parse_losses(text: str) -> tuple[float, ...]:
    values = parse_list(text, parse_percent, "loss")
    if any(v >= 1 for v in values):
        raise ValueError("--loss must stay below 100% (nothing would ever arrive)")
    return values


def parse_rtts(text: str) -> tuple[float, ...]:
    values = parse_list(text, parse_duration, "rtt")
    if any(v > 10 for v in values):
        raise ValueError("--rtt above 10 s is not a path this bench can measure")
    return values


def parse_rates(text: str) -> tuple[float | None, ...]:
    if text.strip().lower() in ("none", "unlimited"):
        return (None,)
    values = parse_list(text, parse_rate, "rate")
    if any(v < 64e3 for v in values):
        raise ValueError("--rate below 64kbit is too slow to bench")
    return values


def parse_sizes(text: str) -> tuple[int, ...]:
    values = parse_list(text, parse_size, "size")
    if any(v < 1 for v in values):
        raise ValueError("--size must be at least 1 byte")
    return values


def parse_protocols(text: str) -> tuple[str, ...]:
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    aliases = {"tcp": ("tcp-cubic", "tcp-bbr"), "tftp": ("tftp-hpa",), "all": PROTOCOLS}
    out: list[str] = []
    for name in names:
        expanded = aliases.get(name, (name,))
        for p in expanded:
            if p not in PROTOCOLS:
                raise ValueError(f"unknown protocol {name!r}: choose from {', '.join(PROTOCOLS)} (or tcp, all)")
            if p not in out:
                out.append(p)
    if not out:
        raise ValueError("--protocols needs at least one protocol")
    return tuple(p for p in PROTOCOLS if p in out)


def with_profile(name: str, **overrides: Any) -> Plan:
    """The named profile's plan, with ``overrides`` (explicit flags; None means "not given") applied on top."""
    base = replace(Plan(), profile=name, **PROFILES.get(name, {}))
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(base, **given)


def human_size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % (scale // 16) == 0:
            return f"{n / scale:g} {unit}"
    return f"{n} B"
