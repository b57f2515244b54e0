"""rudp-shim: a lossy UDP relay for real TFTP peers (see ``relay`` for how it keeps TFTP's transfer IDs)."""

from rudp.shim.relay import (
    DOWN,
    LISTEN,
    UP,
    CloseSocket,
    OpenSocket,
    Relay,
    RelayConfig,
    Role,
    Shim,
    Transmit,
)

__all__ = [
    "DOWN",
    "LISTEN",
    "UP",
    "CloseSocket",
    "OpenSocket",
    "Relay",
    "RelayConfig",
    "Role",
    "Shim",
    "Transmit",
]
