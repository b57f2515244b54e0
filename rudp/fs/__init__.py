"""Filesystem access for rudp: safe name resolution beneath a served directory, and atomic writes.

* :class:`Root` -- the server's only way to open files (:mod:`rudp.fs.paths`).
* :class:`AtomicWriter` -- temp file + atomic move; also for the client's downloads (:mod:`rudp.fs.files`).
* :class:`FsError` and its subclasses carry the TFTP error code to send (:mod:`rudp.fs.errors`).
"""

from __future__ import annotations

from rudp.fs.errors import FsError, PathRefused, WriteFailed
from rudp.fs.files import AtomicWriter
from rudp.fs.paths import Root, openat2_available, split_name

__all__ = ["AtomicWriter", "FsError", "PathRefused", "Root", "WriteFailed", "openat2_available", "split_name"]
