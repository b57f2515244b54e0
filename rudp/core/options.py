"""Option negotiation: RFC 2347 (OACK), RFC 2348 (blksize), RFC 2349 (timeout, tsize), RFC 7440 (windowsize),
and rudp's own ``sack`` (selective repeat) and digest options ``xxh128`` / ``sha256`` (end-to-end integrity;
spec/protocol.md section 7.7), which standard peers ignore as RFC 2347 asks.

Theory of operation
-------------------
A client puts the options it wants into its RRQ/WRQ (``request_options``).  A server that knows options answers
with an OACK holding the ones it accepts, possibly with smaller blksize/windowsize (``server_negotiate``); one that
does not answers as plain RFC 1350 would (DATA 1 or ACK 0) and every option falls back to its default.  The client
checks the OACK (``accept_oack``) and refuses, with ERROR 8, an OACK that grants something it did not ask for or a
value outside what it asked for.  Option names compare case-insensitively; values are decimal ASCII integers,
except a digest option's (``rudp.core.digests``): ``trailer`` (the digest follows the file in the DATA stream;
echoed), or in the request itself lower-case hex (32 digits for ``xxh128``, 64 for ``sha256``) in a WRQ (echoed)
and ``0`` in an RRQ (answered with the file's digest).  A client offers one algorithm
(``TransferConfig.digest_algorithm``); a server takes up the first it knows, in request order.  The receiving side
keeps the file only if it has that digest (``Negotiated.digest``).
"""

from __future__ import annotations

from dataclasses import dataclass

from rudp.core.config import MAX_WINDOWSIZE, TransferConfig, window_for_buffer
from rudp.core.digests import DIGEST_ASK, DIGESTS, TRAILER
from rudp.core.events import Digest, Negotiated
from rudp.wire.packets import DEFAULT_BLKSIZE, MAX_BLKSIZE, MIN_BLKSIZE, ErrorCode, Options, Request, WriteRequest

__all__ = [
    "OptionError",
    "RequestRefused",
    "request_options",
    "accept_oack",
    "defaults",
    "server_negotiate",
    "wanted_digest",
    "is_digest",
    "DIGESTS",
    "DIGEST_ASK",
    "TRAILER",
]

BLKSIZE, TIMEOUT, TSIZE, WINDOWSIZE, SACK = "blksize", "timeout", "tsize", "windowsize", "sack"
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


def is_digest(algorithm: str, value: str) -> bool:
    """``value`` is a digest of ``algorithm`` as ``hexdigest`` writes it: its number of lower-case hex digits."""
    return len(value) == DIGESTS[algorithm] and _HEX.issuperset(value)


def _digest_option(request: Request, config: TransferConfig) -> str | None:
    """The digest option a server takes up for this request: the first one it knows, in request order, if the
    digest is on and the mode is octet (a digest of the file as stored means nothing once netascii changed it)."""
    if not config.digest or request.mode.lower() != "octet":
        return None
    for name, _ in request.options:
        if name.lower() in DIGESTS:
            return name.lower()
    return None


def wanted_digest(request: Request, config: TransferConfig) -> str | None:
    """The algorithm a server must hash the file it serves with for this RRQ (None: the client did not ask)."""
    algorithm = _digest_option(request, config)
    if algorithm is None or _by_name(request.options)[algorithm][1] != DIGEST_ASK:
        return None
    return algorithm


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


def request_options(config: TransferConfig, *, tsize: int | None, digest: str | None = None) -> Options:
    """The options a client puts in its request.  ``tsize`` is the file size for a WRQ, 0 for an RRQ, or None;
    ``digest`` is the file's hex digest (``config.digest_algorithm``) for a WRQ, ``"0"`` for an RRQ, or None (not
    offered)."""
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
    if digest is not None and config.digest and config.mode == "octet":
        opts.append((config.digest_algorithm, digest))
    return tuple(opts)


def accept_oack(requested: Options, oack: Options, config: TransferConfig) -> Negotiated:
    """Check a server's OACK against what we asked for; raise OptionError to refuse it."""
    asked = {key: value for key, (_, value) in _by_name(requested).items()}
    seen: set[str] = set()
    blksize, windowsize, timeout, tsize = DEFAULT_BLKSIZE, 1, config.timeout, None
    selective = False
    digest = None
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
        if key in DIGESTS:
            if asked[key] == DIGEST_ASK:  # RRQ: the server's digest of the file it is about to send
                if not is_digest(key, value):
                    raise OptionError(
                        f"server sent {key} {value[:80]!r}, not {DIGESTS[key]} lower-case hex digits"
                    )
            elif value != asked[key]:  # a WRQ's digest, or ``trailer``: echoed to say the server will verify it
                raise OptionError(f"server answered {key} {value[:80]!r}, not the {asked[key][:80]!r} requested")
            digest = Digest(key, value)
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
    if selective and digest is None and any(key in DIGESTS for key in asked):
        # Only a rudp server grants ``sack``, and a rudp server always takes up a digest it can read (spec 7.7).
        # Without it, the request lost its digest option on the way (bits flipped past the UDP checksum), and
        # going on would leave the file unverified exactly when the path damages data.
        raise OptionError("server granted sack but not the digest requested: the request was damaged in transit")
    return Negotiated(
        blksize=blksize,
        windowsize=windowsize,
        timeout=timeout,
        tsize=tsize,
        oack=True,
        selective=selective,
        digest=digest,
    )


def server_negotiate(
    request: Request, config: TransferConfig, *, file_size: int | None, file_digest: str | None = None
) -> tuple[Options, Negotiated]:
    """Decide the OACK for a request.  ``file_size`` is the size to announce for an RRQ (None: don't), and
    ``file_digest`` the file's digest to announce when the RRQ asks for one (``wanted_digest`` names the
    algorithm; None: don't).

    Returns the OACK options (empty: answer as plain RFC 1350) and the parameters in force.  Unknown options and
    malformed values are ignored, as RFC 2347 asks of a server that does not support them, except a malformed
    digest (the one we take up): that request is refused (ERROR 4), since ignoring it would turn a damaged request
    into an unverified transfer (spec section 7.7).
    """
    asked = _by_name(request.options)
    algorithm = _digest_option(request, config)
    writing = isinstance(request, WriteRequest)
    if algorithm is not None:
        offered = asked[algorithm][1]
        in_request = is_digest(algorithm, offered) if writing else offered == DIGEST_ASK
        if not (in_request or offered == TRAILER):
            raise RequestRefused(ErrorCode.ILLEGAL_OPERATION, f"malformed {algorithm} option {offered[:80]!r}")
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
    digest = None
    if algorithm is not None:
        # ``trailer`` and a WRQ's digest are echoed ("I will verify the file against it"); an RRQ gets the file's.
        hexdigest = asked[algorithm][1] if writing or asked[algorithm][1] == TRAILER else file_digest
        if hexdigest is not None:
            digest = Digest(algorithm, hexdigest)
            granted.append((asked[algorithm][0], hexdigest))
    negotiated = Negotiated(
        blksize=blksize,
        windowsize=windowsize,
        timeout=timeout,
        tsize=tsize,
        oack=bool(granted),
        selective=selective,
        digest=digest,
    )
    return tuple(granted), negotiated
