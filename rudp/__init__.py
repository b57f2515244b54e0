"""rudp: reliable file transfer over UDP, speaking TFTP (RFC 1350 with RFC 2347/2348/2349/7440 options)."""

from rudp.api import client_config, get_file, send_file
from rudp.core.config import TransferConfig
from rudp.errors import (
    ExitCode,
    Interrupted,
    LocalFileError,
    NetworkError,
    NothingListening,
    PeerError,
    ProtocolViolation,
    RudpError,
    TimedOut,
    TransferError,
    UsageError,
)
from rudp.net.server import Server, ServerConfig
from rudp.result import TransferResult

__all__ = [
    "send_file",
    "get_file",
    "client_config",
    "Server",
    "ServerConfig",
    "TransferConfig",
    "TransferResult",
    "ExitCode",
    "RudpError",
    "UsageError",
    "LocalFileError",
    "NetworkError",
    "TransferError",
    "PeerError",
    "TimedOut",
    "NothingListening",
    "ProtocolViolation",
    "Interrupted",
]
__version__ = "0.1.0"
