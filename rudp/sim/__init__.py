"""Deterministic simulations in virtual time: the real sessions over the impairment model."""

from rudp.sim.engine import SimConfig, SimResult, simulate

__all__ = ["SimConfig", "SimResult", "simulate"]
