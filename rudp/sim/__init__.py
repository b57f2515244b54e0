"""Deterministic simulations in virtual time: the real sessions over the impairment model.

``engine`` runs one transfer (with RTT statistics and an optional trace), ``ladder`` draws a trace as a
time-sequence diagram, ``sweep`` runs one transfer per value of a parameter, ``plot`` draws a sweep (matplotlib).
"""

from rudp.sim.engine import SimConfig, SimResult, simulate

__all__ = ["SimConfig", "SimResult", "simulate"]
