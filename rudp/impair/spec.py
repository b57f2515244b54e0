"""Human-friendly impairment values for command lines: ``--loss 5%``, ``--delay 20ms``, ``--rate 10mbit``...

The grammar (case-insensitive except where noted, spaces allowed between number and unit):

- **percent** (``--loss``, ``--dup``, ``--reorder``, ``--corrupt``): ``5%``, ``0.5%``, ``100%``; or a bare
  fraction below 1, ``0.05``.  A bare ``1`` or more is refused as ambiguous (one percent, or certain loss?):
  write ``1%`` or ``100%``.
- **duration** (``--delay``, ``--jitter``): a number with ``s``, ``ms``, ``us`` or ``µs``: ``20ms``, ``1.5s``,
  ``250us``.  A bare ``0`` is accepted; any other bare number is refused (seconds or milliseconds?).
- **rate** (``--rate``): bits per second with ``bit``, ``kbit``, ``mbit`` or ``gbit`` (optionally followed by
  ``/s``: ``10mbit``, ``10 Mbit/s``), or bytes per second with ``B/s``, ``KB/s`` (or ``kB/s``), ``MB/s``,
  ``GB/s``, where the ``B`` must be upper case.  All multiples are powers of 1000, as in ``tc``.  ``bps``,
  ``kbps``, ``mbps``, ``kb/s`` and friends are refused: half the world reads them as bits, half as bytes.
- **burst** (``--burst``): two percents ``p:r``, ``2%:30%``: the Gilbert-Elliott probabilities of entering and
  of leaving the bad state (every datagram sent in the bad state is lost; long-run loss p / (p + r)).  r must
  be above 0 when p is, or the first bad period would never end.

Parsers raise ``ValueError`` with a one-line message; ``add_impairment_arguments`` hands argparse the same
parsers wrapped to raise ``argparse.ArgumentTypeError`` so the message reaches the user unchanged.  Values are
computed in decimal, so ``0.1%`` is exactly the float ``0.001`` and ``250us`` exactly ``0.00025``.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rudp.impair.model import Impairment

__all__ = [
    "parse_percent",
    "parse_duration",
    "parse_rate",
    "parse_burst",
    "add_impairment_arguments",
    "impairment_from_args",
    "describe",
    "parse_queue",
    "format_percent",
    "format_duration",
    "format_rate",
]

_VALUE = re.compile(r"^\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?)\s*(\S*?)\s*$")

_OPTIONS = ("loss", "burst", "dup", "reorder", "delay", "jitter", "corrupt", "rate", "queue")
_DURATION_UNITS = {"s": Decimal(1), "ms": Decimal("0.001"), "us": Decimal("0.000001"), "µs": Decimal("0.000001")}
_BIT_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
_BIT_UNITS.update({unit + "s": scale for unit, scale in _BIT_UNITS.items()})  # "mbits" too
_BYTE_UNITS = {"B/s": 8, "KB/s": 8 * 10**3, "kB/s": 8 * 10**3, "MB/s": 8 * 10**6, "GB/s": 8 * 10**9}
_MAX_RATE = Decimal("1e300")
_AMBIGUOUS_RATE_UNITS = {"bps", "kbps", "mbps", "gbps", "b/s", "kb/s", "mb/s", "gb/s", "k", "m", "g", "kb", "mb",
                         "gb"}


def _split(text: str) -> tuple[Decimal, str] | None:
    """A non-negative decimal number and whatever unit follows it, or None if ``text`` is not of that shape."""
    match = _VALUE.match(text)
    if not match:
        return None
    number, unit = match.groups()
    return Decimal(number), unit


def parse_percent(text: str) -> float:
    """A probability from "5%" (0.05), "0.5%" (0.005) or a bare fraction below 1, "0.05"."""
    parts = _split(text)
    if parts is None or parts[1] not in ("", "%"):
        raise ValueError(f"expected a percentage like 5% or 0.5% (or a fraction like 0.05), not {text!r}")
    number, unit = parts
    if unit == "%":
        if number > 100:
            raise ValueError(f"a probability cannot exceed 100%, not {text!r}")
        return float(number / 100)
    if number == 1:
        raise ValueError(f"{text!r} is ambiguous: write 1% for one percent or 100% for certainty")
    if number > 1:
        raise ValueError(f"{text!r} is not a probability: write {text.strip()}% for a percentage, "
                         "or a fraction below 1 such as 0.05")
    return float(number)


def parse_duration(text: str) -> float:
    """Seconds from "20ms" (0.02), "1.5s", "250us" (0.00025) or "0"."""
    parts = _split(text)
    if parts is None:
        raise ValueError(f"expected a duration like 20ms, 1.5s or 250us, not {text!r}")
    number, unit = parts
    if unit == "":
        if number == 0:
            return 0.0
        raise ValueError(f"{text!r} needs a unit: write {text.strip()}ms or {text.strip()}s")
    scale = _DURATION_UNITS.get(unit.lower())
    if scale is None:
        raise ValueError(f"unknown time unit {unit!r} in {text!r}: use s, ms or us")
    value = float(number * scale)
    if not math.isfinite(value):
        raise ValueError(f"a duration must be finite, not {text!r}")
    return value


def parse_rate(text: str) -> float:
    """Bits per second from "10mbit" (10e6), "100kbit", "1gbit", "10 Mbit/s" or "1.5MB/s" (12e6); 1000-based."""
    parts = _split(text)
    if parts is None:
        raise ValueError(f"expected a rate like 10mbit, 100kbit or 2MB/s, not {text!r}")
    number, unit = parts
    lowered = unit.lower().removesuffix("/s")
    if lowered in _BIT_UNITS:
        value = number * _BIT_UNITS[lowered]
    elif unit in _BYTE_UNITS:
        value = number * _BYTE_UNITS[unit]
    elif unit == "":
        raise ValueError(f"{text!r} needs a unit: write {text.strip()}bit, {text.strip()}kbit, "
                         f"{text.strip()}mbit or {text.strip()}MB/s")
    elif unit.lower() in _AMBIGUOUS_RATE_UNITS:
        raise ValueError(f"ambiguous rate unit {unit!r} in {text!r}: write kbit/mbit/gbit for bits per second "
                         "or KB/s / MB/s / GB/s for bytes per second")
    else:
        raise ValueError(f"unknown rate unit {unit!r} in {text!r}: use bit, kbit, mbit, gbit (bits per second) "
                         "or B/s, KB/s, MB/s, GB/s (bytes per second)")
    if not 0 < value < _MAX_RATE:
        raise ValueError(f"a rate must be above zero and finite, not {text!r}")
    return float(value)


def parse_burst(text: str) -> tuple[float, float]:
    """Gilbert-Elliott (p, r) from "2%:30%": P(good -> bad), P(bad -> good)."""
    pieces = text.split(":")
    if len(pieces) != 2:
        raise ValueError(f"expected a burst as p:r (enter and leave the bad state), like 2%:30%, not {text!r}")
    p, r = parse_percent(pieces[0]), parse_percent(pieces[1])
    if p > 0 and r == 0:
        raise ValueError(f"in {text!r} the bad state is never left (r = 0): every datagram after the first "
                         "burst would be lost; give r above 0, like 2%:30%")
    return p, r


def parse_queue(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"queue must be a whole number of datagrams, not {text!r}") from None
    if value < 1:
        raise ValueError(f"queue must be at least 1 datagram, not {value}")
    return value


def _argparse_type(parse: Callable[[str], object], name: str) -> Callable[[str], object]:
    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name  # argparse names the type in some messages
    return convert


def _dest(prefix: str, name: str) -> str:
    return (prefix + name).replace("-", "_")


def add_impairment_arguments(parser: argparse.ArgumentParser, *, prefix: str = "", with_seed: bool = True) -> None:
    """Add --loss, --burst, --dup, --reorder, --delay, --jitter, --corrupt, --rate, --queue and --seed.

    With ``prefix="up-"`` the options are --up-loss and so on (read them back with the same prefix given to
    ``impairment_from_args``).  ``with_seed=False`` leaves out --seed, for a second prefixed set on one parser.
    """
    d = Impairment()
    title = f"network impairment ({prefix.rstrip('-_')})" if prefix else "network impairment"
    group = parser.add_argument_group(title)

    def option(name: str, parse: Callable[[str], object], default: object, metavar: str, help: str) -> None:
        group.add_argument(f"--{prefix}{name}", dest=_dest(prefix, name), type=_argparse_type(parse, name),
                           default=default, metavar=metavar, help=help)

    option("loss", parse_percent, d.loss, "P", "random loss per datagram, e.g. 5%% (default 0)")
    option("burst", parse_burst, d.burst, "P:R",
           "Gilbert-Elliott burst loss, e.g. 2%%:30%%: chance to enter / leave a state that loses everything")
    option("dup", parse_percent, d.dup, "P", "duplicate datagrams with this probability, e.g. 1%%")
    option("reorder", parse_percent, d.reorder, "P",
           f"hold a datagram back {d.reorder_gap * 1000:g} ms with this probability so later ones overtake it")
    option("delay", parse_duration, d.delay, "T", "fixed one-way delay, e.g. 20ms (default 0)")
    option("jitter", parse_duration, d.jitter, "T", "plus a uniformly random 0..T per datagram, e.g. 5ms")
    option("corrupt", parse_percent, d.corrupt, "P", "flip 1-3 bits of a datagram with this probability")
    option("rate", parse_rate, d.rate, "RATE", "bottleneck rate, e.g. 10mbit or 2MB/s (default unlimited)")
    option("queue", parse_queue, d.queue, "N", f"drop-tail queue in front of --{prefix}rate, datagrams "
           f"(default {d.queue})")
    if with_seed:
        group.add_argument(f"--{prefix}seed", dest=_dest(prefix, "seed"), type=int, default=1, metavar="N",
                           help="seed of the random decisions; the same seed repeats a run exactly (default 1)")


def impairment_from_args(args: argparse.Namespace, *, prefix: str = "") -> Impairment:
    """The ``Impairment`` that options added by ``add_impairment_arguments`` (same prefix) describe."""

    values: dict[str, Any] = {name: getattr(args, _dest(prefix, name)) for name in _OPTIONS}
    return Impairment(**values)


def format_percent(value: float) -> str:
    return f"{value * 100:.4g}%"


def format_duration(seconds: float) -> str:
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.4g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.4g} ms"
    return f"{seconds * 1e6:.4g} us"


def format_rate(bits_per_second: float) -> str:
    for scale, unit in ((1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")):
        if bits_per_second >= scale:
            return f"{bits_per_second / scale:.4g} {unit}"
    return f"{bits_per_second:.4g} bit/s"


def describe(impairment: Impairment) -> str:
    """One line for humans: "loss 5%, delay 20 ms, jitter 5 ms, rate 10 Mbit/s (queue 64)", or "clean"."""
    i = impairment
    if i.is_clean:
        return "clean"
    parts = []
    if i.loss:
        parts.append(f"loss {format_percent(i.loss)}")
    if i.burst is not None and i.burst[0] > 0:
        p, r = i.burst
        parts.append(f"burst {format_percent(p)}:{format_percent(r)} (~{format_percent(i.burst_loss)} lost)")
    if i.dup:
        parts.append(f"dup {format_percent(i.dup)}")
    if i.reorder:
        parts.append(f"reorder {format_percent(i.reorder)} by {format_duration(i.reorder_gap)}")
    if i.delay:
        parts.append(f"delay {format_duration(i.delay)}")
    if i.jitter:
        parts.append(f"jitter {format_duration(i.jitter)}")
    if i.corrupt:
        parts.append(f"corrupt {format_percent(i.corrupt)}")
    if i.rate is not None:
        parts.append(f"rate {format_rate(i.rate)} (queue {i.queue})")
    return ", ".join(parts)
