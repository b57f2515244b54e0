"""The network impairment model (loss, bursts, duplication, reordering, delay, corruption, a bottleneck), shared by
the simulator, the UDP shim and the network lab.  ``model`` is the pure, seeded model; ``spec`` reads and writes
its parameters in human units for command lines."""

from __future__ import annotations

from rudp.impair.model import DUPLICATE_GAP, HEADER_BYTES, Channel, Counters, Delivery, Impairment
from rudp.impair.spec import (
    add_impairment_arguments,
    describe,
    impairment_from_args,
    parse_burst,
    parse_duration,
    parse_percent,
    parse_rate,
)

__all__ = [
    "Impairment",
    "Delivery",
    "Channel",
    "Counters",
    "HEADER_BYTES",
    "DUPLICATE_GAP",
    "parse_percent",
    "parse_duration",
    "parse_rate",
    "parse_burst",
    "add_impairment_arguments",
    "impairment_from_args",
    "describe",
]
