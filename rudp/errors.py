"""The exceptions rudp's API raises, and the process exit code each maps to (the README's exit-code table)."""

from __future__ import annotations

import enum

from rudp.core.events import FailureKind, TransferFailed

__all__ = [
    "ExitCode",
    "RudpError",
    "UsageError",
    "LocalFileError",
    "NetworkError",
    "IntegrityError",
    "TransferError",
    "PeerError",
    "TimedOut",
    "NothingListening",
    "ProtocolViolation",
    "Interrupted",
    "error_for_failure",
]


class ExitCode(enum.IntEnum):
    OK = 0
    INTERNAL = 1  # a bug in rudp: please report it
    USAGE = 2  # bad command line (argparse uses 2 as well)
    LOCAL_FILE = 3  # local file or directory problem: missing, unreadable, exists, disk full
    PEER_ERROR = 4  # the peer answered with a TFTP ERROR packet
    TIMED_OUT = 5  # the peer stopped answering; retry budget exhausted
    NOTHING_LISTENING = 6  # ICMP port unreachable: no TFTP server at that address and port
    PROTOCOL = 7  # the peer broke the protocol (e.g. a bad OACK); we told it with an ERROR
    NETWORK = 8  # unknown host, network unreachable, cannot bind
    INTEGRITY = 9  # the received file's SHA-256 differs from the sender's (rudp's sha256 option); not kept
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class RudpError(Exception):
    exit_code = ExitCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(RudpError):
    exit_code = ExitCode.USAGE


class LocalFileError(RudpError):
    exit_code = ExitCode.LOCAL_FILE


class NetworkError(RudpError):
    exit_code = ExitCode.NETWORK


class TransferError(RudpError):
    """A transfer ended without success.  ``stats`` is the result so far (bytes, retransmissions, ...)."""

    def __init__(self, message: str, *, code: int | None = None, result: object = None) -> None:
        super().__init__(message)
        self.code = code  # TFTP error code received or sent, if any
        self.result = result


class IntegrityError(TransferError):
    """The file received does not match the digest its sender announced; it was discarded and the peer told."""

    exit_code = ExitCode.INTEGRITY


class PeerError(TransferError):
    exit_code = ExitCode.PEER_ERROR


class TimedOut(TransferError):
    exit_code = ExitCode.TIMED_OUT


class NothingListening(TransferError):
    exit_code = ExitCode.NOTHING_LISTENING


class ProtocolViolation(TransferError):
    exit_code = ExitCode.PROTOCOL


class Interrupted(TransferError):
    exit_code = ExitCode.INTERRUPTED


_BY_KIND: dict[FailureKind, type[TransferError]] = {
    FailureKind.PEER_ERROR: PeerError,
    FailureKind.TIMED_OUT: TimedOut,
    FailureKind.UNREACHABLE: NothingListening,
    FailureKind.PROTOCOL_ERROR: ProtocolViolation,
    FailureKind.REFUSED: PeerError,
    FailureKind.ABORTED: Interrupted,
    FailureKind.DAMAGED: IntegrityError,
}


def error_for_failure(failure: TransferFailed, result: object = None) -> TransferError:
    return _BY_KIND[failure.kind](failure.message, code=failure.code, result=result)
