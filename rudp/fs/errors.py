"""Filesystem failures that a TFTP peer must be told about, each carrying its RFC 1350 error code.

Theory of operation
-------------------
The filesystem layer never lets an ``OSError`` escape towards the protocol driver.  Every failure the peer should
hear about becomes an :class:`FsError` whose ``code`` is the TFTP error code and whose message is one short line,
safe to put in an ERROR packet: it names neither the served directory nor any server-side path.  The errno
translation lives here, in one table per direction (opening vs. writing), so the policy is visible at a glance.

* :class:`PathRefused` -- the request is refused before or at the moment a name is bound: bad name, escape from
  the served directory, missing file (1), permission (2), existing file (6).
* :class:`WriteFailed` -- storing the data failed: disk full or quota (3), permission (2), anything else (0).
"""

from __future__ import annotations

import errno
import os

from rudp.wire.packets import ErrorCode

__all__ = ["FsError", "PathRefused", "WriteFailed", "refusal_from_oserror", "write_failure_from_oserror"]


class FsError(Exception):
    """Base class: ``code`` is the TFTP error code, ``str(exc)`` a one-line message for the ERROR packet."""

    def __init__(self, code: int, message: str) -> None:
        message = " ".join(message.split())  # one line, whatever the caller passed
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message


class PathRefused(FsError):
    """A name could not be bound to a file: refused, escaping, missing, forbidden or already existing."""


class WriteFailed(FsError):
    """Storing received data failed (disk full, permission, I/O error)."""


_EDQUOT = getattr(errno, "EDQUOT", -1)

_OPEN_ERRORS: dict[int, tuple[ErrorCode, str]] = {
    errno.ENOENT: (ErrorCode.FILE_NOT_FOUND, "file not found"),
    errno.ENOTDIR: (ErrorCode.FILE_NOT_FOUND, "file not found"),
    errno.EXDEV: (ErrorCode.ACCESS_VIOLATION, "path leaves the served directory"),
    errno.ELOOP: (ErrorCode.ACCESS_VIOLATION, "symbolic link refused"),
    errno.EACCES: (ErrorCode.ACCESS_VIOLATION, "permission denied"),
    errno.EPERM: (ErrorCode.ACCESS_VIOLATION, "permission denied"),
    errno.EROFS: (ErrorCode.ACCESS_VIOLATION, "read-only file system"),
    errno.EISDIR: (ErrorCode.ACCESS_VIOLATION, "is a directory"),
    errno.ENXIO: (ErrorCode.ACCESS_VIOLATION, "not a regular file"),  # a socket, or a device with no driver
    errno.ENAMETOOLONG: (ErrorCode.ACCESS_VIOLATION, "file name too long"),
    errno.EEXIST: (ErrorCode.FILE_EXISTS, "file already exists"),
    errno.ENOSPC: (ErrorCode.DISK_FULL, "disk full or allocation exceeded"),
    _EDQUOT: (ErrorCode.DISK_FULL, "disk full or allocation exceeded"),
}

_WRITE_ERRORS: dict[int, tuple[ErrorCode, str]] = {
    errno.ENOSPC: (ErrorCode.DISK_FULL, "disk full or allocation exceeded"),
    _EDQUOT: (ErrorCode.DISK_FULL, "disk full or allocation exceeded"),
    errno.EFBIG: (ErrorCode.DISK_FULL, "disk full or allocation exceeded"),
    errno.EACCES: (ErrorCode.ACCESS_VIOLATION, "permission denied"),
    errno.EPERM: (ErrorCode.ACCESS_VIOLATION, "permission denied"),
    errno.EROFS: (ErrorCode.ACCESS_VIOLATION, "read-only file system"),
    errno.EISDIR: (ErrorCode.ACCESS_VIOLATION, "is a directory"),
    errno.EEXIST: (ErrorCode.FILE_EXISTS, "file already exists"),
}


def _lookup(table: dict[int, tuple[ErrorCode, str]], exc: OSError) -> tuple[ErrorCode, str]:
    if exc.errno in table:
        return table[exc.errno]
    # RFC 1350: code 0 "Not defined, see error message (if any)".
    return ErrorCode.NOT_DEFINED, os.strerror(exc.errno) if exc.errno else "file system error"


def refusal_from_oserror(exc: OSError, *, not_found: str | None = None) -> PathRefused:
    """Translate an error from opening or resolving a name; ``not_found`` overrides the ENOENT message."""
    code, message = _lookup(_OPEN_ERRORS, exc)
    if code == ErrorCode.FILE_NOT_FOUND and not_found is not None:
        message = not_found
    return PathRefused(code, message)


def write_failure_from_oserror(exc: OSError) -> WriteFailed:
    """Translate an error from writing, flushing or syncing received data."""
    return WriteFailed(*_lookup(_WRITE_ERRORS, exc))
