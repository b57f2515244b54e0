"""The Python API: ``send_file`` (upload, WRQ) and ``get_file`` (download, RRQ).

Both run one transfer to completion on a fresh UDP socket and return a ``TransferResult``, or raise a
``rudp.errors.RudpError`` subclass whose ``exit_code`` the commands use.  ``on_progress(done, total)`` is called
as file bytes move (``total`` is None until the size is known); ``on_complete(result)`` is called as soon as the
transfer succeeds, before the short dally that protects the final ACK.
"""

from __future__ import annotations

import io
import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import replace

from rudp.core.client import ReadClient, WriteClient
from rudp.core.config import DEFAULT_RETRIES, DEFAULT_TIMEOUT, TransferConfig, window_for_buffer
from rudp.core.events import TransferComplete
from rudp.errors import Interrupted, LocalFileError, UsageError, error_for_failure
from rudp.fs import AtomicWriter, FsError
from rudp.fs.digests import file_digest
from rudp.net.driver import Transfer, run
from rudp.net.sockets import Address, blksize_for_mtu, path_mtu, receive_buffer, resolve, udp_socket
from rudp.result import TransferResult

__all__ = [
    "send_file",
    "get_file",
    "client_config",
    "fit_to_path",
    "DEFAULT_BLKSIZE",
    "DEFAULT_WINDOWSIZE",
    "MAX_FITTED_WINDOW",
    "CLIENT_DALLY",
]

DEFAULT_BLKSIZE = 1468  # fills a 1500-byte Ethernet frame over IPv4 (1500 - 20 IP - 8 UDP - 4 TFTP)
DEFAULT_WINDOWSIZE = 8  # where the path cannot be measured
MAX_FITTED_WINDOW = 2048  # the most a fitted window asks: 100 Mbit/s x 50 ms is ~425 blocks of 1468 bytes, and
# selective repeat under loss wants a few times that (a hole holds the window back for a round trip or two)
CLIENT_DALLY = 1.0  # at most this long a client lingers after its final ACK (RFC 1350 section 6 "dallying")

Progress = Callable[[int, "int | None"], None]


def client_config(
    *,
    blksize: int | None = None,
    windowsize: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    mode: str = "octet",
    options: bool = True,
    fixed_timeout: bool = False,
    digest: str | None = "xxh128",
    digest_trailer: bool = True,
) -> TransferConfig:
    """A client's settings.  A whole-second ``timeout`` of 1..255 is also asked of the server (RFC 2349).
    ``blksize`` / ``windowsize`` None: fitted to the path when the transfer starts (``fit_to_path``).
    ``digest``: the digest option offered ("xxh128" or "sha256", spec 7.7), or None for no end-to-end check;
    ``digest_trailer``: it follows the data (default), or False: it travels in the request (an upload hashes the
    file in a pre-pass)."""
    timeout_option = int(timeout) if float(timeout).is_integer() and 1 <= timeout <= 255 else None
    if timeout == DEFAULT_TIMEOUT:
        timeout_option = None  # the classic default: leave the server's own timer alone
    try:
        return TransferConfig(
            blksize=DEFAULT_BLKSIZE if blksize is None else blksize,
            windowsize=DEFAULT_WINDOWSIZE if windowsize is None else windowsize,
            fit_blksize=blksize is None,
            fit_windowsize=windowsize is None,
            timeout=timeout,
            retries=retries,
            mode=mode,
            options=options,
            timeout_option=timeout_option,
            fixed_timeout=fixed_timeout,
            dally=min(timeout, CLIENT_DALLY),
            digest=digest is not None,
            digest_algorithm=digest or "xxh128",
            digest_trailer=digest_trailer,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def fit_to_path(config: TransferConfig, family: int, server: Address, sock: socket.socket) -> TransferConfig:
    """Replace a fitted blksize by the largest block one packet on the route to ``server`` carries (65464 on
    loopback, 1468 on IPv4 Ethernet) and a fitted windowsize by what ``sock``'s receive buffer holds."""
    blksize, windowsize = config.blksize, config.windowsize
    if config.fit_blksize:
        mtu = path_mtu(family, server)
        if mtu is not None:
            blksize = blksize_for_mtu(mtu, family)
    if config.fit_windowsize:
        held = window_for_buffer(receive_buffer(sock), blksize)
        windowsize = min(MAX_FITTED_WINDOW, max(DEFAULT_WINDOWSIZE, held))
    return replace(config, blksize=blksize, windowsize=windowsize)


def send_file(
    path: str | os.PathLike[str],
    host: str,
    *,
    port: int = 69,
    remote_name: str | None = None,
    config: TransferConfig | None = None,
    on_progress: Progress | None = None,
    on_complete: Callable[[TransferResult], None] | None = None,
) -> TransferResult:
    config = config or client_config()
    local = os.fspath(path)
    remote = remote_name if remote_name is not None else os.path.basename(local)
    source, info = _open_regular(local)
    try:
        family, server = resolve(host, port)
        with udp_socket(family) as sock:
            config = fit_to_path(config, family, server, sock)
            # The transfer's time includes a digest's pre-pass: the user waits for it as for any datagram.
            started = time.monotonic()
            # A digest in the request (spec 7.7) needs a pre-pass over the file; by default it follows the data.
            digest = None
            if config.digest and not config.digest_trailer and config.options and config.mode == "octet":
                try:
                    digest = file_digest(source, config.digest_algorithm)
                except OSError as exc:
                    raise LocalFileError(f"cannot read {local}: {exc.strerror}") from None
            try:
                session = WriteClient(
                    remote, server, config, tsize=info.st_size, now=time.monotonic(), digest=digest
                )
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            transfer = Transfer(session, sock, source=source, started=started)
            return _drive(transfer, "send", local, remote, host, port, info.st_size, on_progress, on_complete)
    finally:
        source.close()


def get_file(
    host: str,
    remote: str,
    local: str | os.PathLike[str] | None = None,
    *,
    port: int = 69,
    overwrite: bool = False,
    config: TransferConfig | None = None,
    on_progress: Progress | None = None,
    on_complete: Callable[[TransferResult], None] | None = None,
) -> TransferResult:
    config = config or client_config()
    target = os.fspath(local) if local is not None else remote.replace("\\", "/").rsplit("/", 1)[-1]
    if target in ("", ".", ".."):
        raise UsageError(f"cannot derive a local file name from {remote!r}; give one with -o")
    family, server = resolve(host, port)
    try:
        writer = AtomicWriter.for_path(target, overwrite=overwrite)
    except FsError as exc:
        raise LocalFileError(f"cannot write {target}: {exc.message}") from None
    try:
        with udp_socket(family) as sock:
            config = fit_to_path(config, family, server, sock)
            try:
                session = ReadClient(remote, server, config, now=time.monotonic())
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            transfer = Transfer(session, sock, sink=writer, started=time.monotonic())
            return _drive(transfer, "get", target, remote, host, port, None, on_progress, on_complete)
    finally:
        writer.abort()  # no-op once committed; removes the temporary file otherwise


def _drive(transfer, direction, local, remote, host, port, total, on_progress, on_complete) -> TransferResult:
    state = {"total": total}

    if on_progress is not None:

        def progress(n: int) -> None:
            if transfer.negotiated is not None and transfer.negotiated.tsize is not None:
                state["total"] = transfer.negotiated.tsize
            on_progress(n, state["total"])

        transfer.on_progress = progress

    peer = _peer_text(host, port)

    def reported(t: Transfer) -> None:
        if on_complete is not None and isinstance(t.outcome, TransferComplete):
            on_complete(t.result(direction, local, remote, peer))

    try:
        run(transfer, on_outcome=reported)
    except KeyboardInterrupt:
        transfer.abort("interrupted by user")
        raise Interrupted("interrupted", result=transfer.result(direction, local, remote, peer)) from None
    result = transfer.result(direction, local, remote, peer)
    if transfer.local_error is not None:
        raise transfer.local_error
    if not isinstance(transfer.outcome, TransferComplete):
        assert transfer.outcome is not None
        raise error_for_failure(transfer.outcome, result)
    return result


def _open_regular(path: str) -> tuple[io.FileIO, os.stat_result]:
    """Open a local file to send; O_NONBLOCK so that a FIFO or device cannot hang us before the type check."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise LocalFileError(f"cannot read {path}: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise LocalFileError(f"cannot send {path}: not a regular file")
    os.set_blocking(fd, True)
    return io.FileIO(fd, "rb"), info


def _peer_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
