"""Option negotiation: RFC 2347 (OACK), RFC 2348 (blksize), RFC 2349 (timeout, tsize), RFC 7440 (windowsize),
and rudp's own ``sack`` (selective repeat) and ``sha256`` (end-to-end integrity; spec/protocol.md section 7.7),
which standard peers ignore as RFC 2347 asks.

Theory of operation
-------------------
A client puts the options it wants into its RRQ/WRQ (``request_options``).  A server that knows options answers
with an OACK holding the ones it accepts, possibly with smaller blksize/windowsize (``server_negotiate``); one that
does not answers as plain RFC 1350 would (DATA 1 or ACK 0) and every option falls back to its default.  The client
checks the OACK (``accept_oack``) and refuses, with ERROR 8, an OACK that grants something it did not ask for or a
value outside what it asked for.  Option names compare case-insensitively; values are decimal ASCII integers,
except ``sha256``'s, which is 64 lower-case hex digits (or ``0`` in an RRQ: "tell me the digest").

``sha256`` is offered by the side that has the file: a WRQ carries the file's digest and a server that will verify
echoes it; an RRQ carries ``0`` and a server answers with the digest of the file it sends.  The receiving side
then checks the bytes it stored against it before they reach the final name (``Negotiated.sha256``).
"""

from __future__ import annotations

from dataclasses import dataclass

from rudp.core.config import MAX_WINDOWSIZE, TransferConfig, window_for_buffer
from rudp.core.events import Negotiated
from rudp.wire.packets import DEFAULT_BLKSIZE, MAX_BLKSIZE, MIN_BLKSIZE, ErrorCode, Options, Request, WriteRequest

__all__ = [
    "OptionError",
    "RequestRefused",
    "request_options",
    "accept_oack",
    "defaults",
    "server_negotiate",
    "wants_sha256",
    "is_sha256",
]

BLKSIZE, TIMEOUT, TSIZE, WINDOWSIZE, SACK = "blksize", "timeout", "tsize", "windowsize", "sack"
SHA256 = "sha256"
SHA256_ASK = "0"  # an RRQ's sha256 value: "answer with the file's digest"
_HEX = frozenset("0123456789abcdef")


class OptionError(Exception):
    """The peer's OACK is not acceptable; the client answers ERROR 8 (RFC 2347, Negotiation Protocol)."""


@dataclass(frozen=True)
class RequestRefused(Exception):
    """The server refuses a request outright with this TFTP error."""

    code: int
    message: str


def _int(value: str) -> int | None:
    """A non-negative decimal ASCII integer, or None.  Signs, spaces and "1.0" are not integers."""
    if value.isascii() and value.isdigit():
        return int(value)
    return None


def is_sha256(value: str) -> bool:
    """64 lower-case hex digits: a SHA-256 digest as ``hashlib``'s ``hexdigest`` writes it."""
    return len(value) == 64 and _HEX.issuperset(value)


def wants_sha256(request: Request, config: TransferConfig) -> bool:
    """Whether a server should hash the file it serves for this RRQ (the client asked, octet mode, digest on)."""
    asked = _by_name(request.options).get(SHA256)
    return config.digest and asked is not None and asked[1] == SHA256_ASK and request.mode.lower() == "octet"


def _by_name(options: Options) -> dict[str, tuple[str, str]]:
    """Options by lower-case name -> (name as spelled, value).  RFC 2347, Negotiation Protocol: "an option may
    only be specified once"; should a peer repeat one anyway, the first wins."""
    out: dict[str, tuple[str, str]] = {}
    for name, value in options:
        out.setdefault(name.lower(), (name, value))
    return out


def defaults(config: TransferConfig, *, tsize: int | None = None) -> Negotiated:
    """Plain RFC 1350: the peer did not acknowledge options."""
    return Negotiated(blksize=DEFAULT_BLKSIZE, windowsize=1, timeout=config.timeout, tsize=tsize, oack=False)


def request_options(config: TransferConfig, *, tsize: int | None, sha256: str | None = None) -> Options:
    """The options a client puts in its request.  ``tsize`` is the file size for a WRQ, 0 for an RRQ, or None;
    ``sha256`` is the file's hex digest for a WRQ, ``"0"`` for an RRQ, or None (not offered)."""
    if not config.options:
        return ()
    opts: list[tuple[str, str]] = []
    if config.blksize != DEFAULT_BLKSIZE:
        opts.append((BLKSIZE, str(config.blksize)))
    if config.timeout_option is not None:
        opts.append((TIMEOUT, str(config.timeout_option)))
    # RFC 2349, Transfer Size Option: the size is "in octets", which only octet mode carries unchanged.
    if tsize is not None and config.mode == "octet":
        opts.append((TSIZE, str(tsize)))
    if config.windowsize != 1:
        opts.append((WINDOWSIZE, str(config.windowsize)))
        if config.selective:
            opts.append((SACK, "1"))
    # Like tsize, a digest of the file as stored is only meaningful when octet mode carries it unchanged.
    if sha256 is not None and config.digest and config.mode == "octet":
        opts.append((SHA256, sha256))
    return tuple(opts)


def accept_oack(requested: Options, oack: Options, config: TransferConfig) -> Negotiated:
    """Check a server's OACK against what we asked for; raise OptionError to refuse it."""
    asked = {key: value for key, (_, value) in _by_name(requested).items()}
    seen: set[str] = set()
    blksize, windowsize, timeout, tsize = DEFAULT_BLKSIZE, 1, config.timeout, None
    selective = False
    sha256 = None
    for name, value in oack:
        key = name.lower()
        # RFC 2347, Negotiation Protocol: "The server must not include in the OACK any option which had not been
        # specifically requested by the client" and "If the client receives an OACK containing an unrequested
        # option, it should respond with an ERROR packet, with error code 8, and terminate the transfer."
        if key not in asked:
            raise OptionError(f"server acknowledged option {name!r} that was not requested")
        if key in seen:
            raise OptionError(f"server acknowledged option {name!r} twice")
        seen.add(key)
        if key == SHA256:
            if asked[key] == SHA256_ASK:  # RRQ: the server's digest of the file it is about to send
                if not is_sha256(value):
                    raise OptionError(f"server sent sha256 {value[:80]!r}, not 64 lower-case hex digits")
            elif value != asked[key]:  # WRQ: the server echoes our digest to say it will verify it
                raise OptionError(f"server answered sha256 {value[:80]!r}, not the digest requested")
            sha256 = value
            continue
        number = _int(value)
        if number is None:
            raise OptionError(f"server sent a non-integer {name}={value!r}")
        if key == BLKSIZE:
            # RFC 2348: "The specified value must be less than or equal to the value specified by the client."
            if not MIN_BLKSIZE <= number <= int(asked[key]):
                raise OptionError(f"server granted blksize {number}, outside {MIN_BLKSIZE}..{asked[key]}")
            blksize = number
        elif key == WINDOWSIZE:
            if not 1 <= number <= int(asked[key]):
                raise OptionError(f"server granted windowsize {number}, outside 1..{asked[key]}")
            windowsize = number
        elif key == TIMEOUT:
            # RFC 2349, Timeout Interval Option: "The specified timeout value must match the value specified by
            # the client."
            if number != int(asked[key]):
                raise OptionError(f"server answered timeout {number}, not the {asked[key]} requested")
            timeout = float(number)
        elif key == TSIZE:
            tsize = number
        elif key == SACK:
            if number != 1:
                raise OptionError(f"server answered sack {number}, not the 1 requested")
            selective = True
    return Negotiated(
        blksize=blksize,
        windowsize=windowsize,
        timeout=timeout,
        tsize=tsize,
        oack=True,
        selective=selective,
        sha256=sha256,
    )


def server_negotiate(
    request: Request, config: TransferConfig, *, file_size: int | None, file_sha256: str | None = None
) -> tuple[Options, Negotiated]:
    """Decide the OACK for a request.  ``file_size`` is the size to announce for an RRQ (None: don't), and
    ``file_sha256`` the file's digest to announce when the RRQ asks for it (None: don't).

    Returns the OACK options (empty: answer as plain RFC 1350) and the parameters in force.  Unknown options and
    malformed values are ignored, as RFC 2347 asks of a server that does not support them, except a malformed
    ``sha256``: that request is refused (ERROR 4), since ignoring it would turn a damaged request into an
    unverified transfer (spec section 7.7).
    """
    asked = _by_name(request.options)
    sha256 = None
    if SHA256 in asked and config.digest:
        offered = asked[SHA256][1]
        writing = isinstance(request, WriteRequest)
        if not (is_sha256(offered) if writing else offered == SHA256_ASK):
            raise RequestRefused(ErrorCode.ILLEGAL_OPERATION, f"malformed sha256 option {offered[:80]!r}")
    granted: list[tuple[str, str]] = []
    blksize, windowsize, timeout, tsize = DEFAULT_BLKSIZE, 1, config.timeout, None

    def value_of(key: str) -> int | None:
        return _int(asked[key][1]) if key in asked else None

    def grant(key: str, value: int) -> None:
        # RFC 2347, Packet Formats: the OACK's option names are "copied from the original request".
        granted.append((asked[key][0], str(value)))

    value = value_of(BLKSIZE)
    if value is not None and value >= MIN_BLKSIZE:
        # RFC 2348: "The specified value must be less than or equal to the value specified by the client."
        blksize = min(value, config.blksize, MAX_BLKSIZE)
        grant(BLKSIZE, blksize)
    value = value_of(TIMEOUT)
    if value is not None and 1 <= value <= 255:  # RFC 2349: "between "1" and "255" seconds, inclusive"
        timeout = float(value)
        grant(TIMEOUT, value)  # "must match the value specified by the client"
    value = value_of(TSIZE)
    if value is not None:
        if isinstance(request, WriteRequest):
            if config.max_size is not None and value > config.max_size:
                # RFC 2349, Transfer Size Option: "If the file is too large for the server to handle, it may
                # abort the transfer with an Error packet (error code 3)."
                raise RequestRefused(
                    ErrorCode.DISK_FULL, f"file of {value} bytes exceeds the {config.max_size}-byte limit"
                )
            tsize = value
            grant(TSIZE, value)  # "the size of the file ... is specified in the request and echoed back"
        elif file_size is not None:
            tsize = file_size
            grant(TSIZE, file_size)
    value = value_of(WINDOWSIZE)
    if value is not None and 1 <= value <= MAX_WINDOWSIZE:
        # Memory: a window's blocks are held by the sender until acknowledged and by a selective-repeat receiver
        # beyond a gap, so a client asking 65464-byte blocks times 65535 cannot make us hold 4 GiB.
        windowsize = min(value, config.windowsize, max(1, config.max_window_bytes // blksize))
        if isinstance(request, WriteRequest) and config.receive_buffer is not None:
            # We receive: never grant more blocks in flight than our socket can hold (RFC 7440 section 4 warns
            # that a window the receiver cannot buffer turns into loss).
            windowsize = min(windowsize, window_for_buffer(config.receive_buffer, blksize))
        grant(WINDOWSIZE, windowsize)
    selective = value_of(SACK) == 1 and config.selective and windowsize > 1
    if selective:
        grant(SACK, 1)
    if SHA256 in asked and config.digest and request.mode.lower() == "octet":
        if isinstance(request, WriteRequest):
            sha256 = asked[SHA256][1]  # echoed: "I will verify the file against this digest"
        else:
            sha256 = file_sha256
        if sha256 is not None:
            granted.append((asked[SHA256][0], sha256))
    negotiated = Negotiated(
        blksize=blksize,
        windowsize=windowsize,
        timeout=timeout,
        tsize=tsize,
        oack=bool(granted),
        selective=selective,
        sha256=sha256,
    )
    return tuple(granted), negotiated
