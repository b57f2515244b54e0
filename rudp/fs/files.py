"""Atomic file writing: the final name never holds a partial file.

Theory of operation
-------------------
An :class:`AtomicWriter` owns a file descriptor of the destination's parent directory.  All its filesystem calls
are relative to that descriptor (``*at`` system calls), so once the directory has been resolved safely (by
:class:`rudp.fs.paths.Root`, beneath the served directory) nothing a peer names can redirect the writes.

1. A temporary file ``.<name>.<16 random hex digits>.rudp-part`` is created in the same directory with
   ``O_CREAT | O_EXCL | O_NOFOLLOW``: it is always a new inode of ours, never a pre-planted file or symlink.
2. :meth:`AtomicWriter.write` appends to it.  Chunks are gathered (by reference when they are immutable: ``bytes``
   or a view of ``bytes``, such as a received DATA payload; mutable buffers are copied) and written together with
   one ``writev`` once ``buffer_size`` bytes are pending, so 512-byte blocks do not cost a system call each and
   64 KiB blocks are not copied in user space on their way to the file.
3. :meth:`AtomicWriter.commit` flushes, optionally ``fsync``\\ s, checks the digest if one is expected
   (:meth:`AtomicWriter.expect_digest`: every byte written was hashed on its way in, so a mismatch, data damaged
   in transit, aborts with :class:`DigestMismatch` and the file never reaches its final name), and moves the file
   into place in one step:

   * ``overwrite=False``: ``link(temp, final)`` then ``unlink(temp)``.  ``link`` fails with EEXIST rather than
     replace anything, so a file that appeared after the request was accepted is never clobbered
     (:class:`PathRefused` code 6).
   * ``overwrite=True``: ``rename(temp, final)``, which atomically replaces the old file; readers see either the
     old or the new contents, never a mix.

4. :meth:`AtomicWriter.abort` (idempotent; a no-op after a commit) closes and unlinks the temporary file.  A failed
   write aborts at once, which frees the disk space of a full file system immediately.  Leaving the ``with``
   block without a commit aborts: nothing is ever committed implicitly.

``fsync`` is off by default: a TFTP transfer is cheap to repeat and syncing costs far more than the transfer on
fast links.  With ``fsync=True`` the file is synced before the move and the directory after it.

A destination that is a directory is refused (code 2), and so is one that is a symbolic link: replacing the link
would silently detach whatever the administrator linked there, and writing through it could leave the directory.
The file is created with ``mode`` (default ``0o644``) filtered by the process umask, like ``open(2)``, and never
with an execute, set-id or sticky bit (``mode & 0o666``): a peer's upload must not become a program.  A
destination that is not a regular file (a FIFO, socket or device node) is refused too (code 2).
"""

from __future__ import annotations

import ctypes
import enum
import errno
import os
import secrets
import stat
from collections.abc import Callable
from types import TracebackType

from rudp.core.digests import Hash, new_hash
from rudp.core.events import Digest
from rudp.fs.errors import FsError, PathRefused, refusal_from_oserror, write_failure_from_oserror
from rudp.wire.packets import ErrorCode

__all__ = ["AtomicWriter", "DigestMismatch", "TEMP_SUFFIX"]

TEMP_SUFFIX = ".rudp-part"
_TEMP_NAME_KEEP = 200  # bytes of the final name kept in the temporary name (NAME_MAX is 255)
_O_PATH = getattr(os, "O_PATH", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DEFAULT_BUFFER = 1024 * 1024  # per writev: 4 MiB spills the cache, 256 KiB makes ext4 work more
_IOV_MAX = 1024  # chunks per writev (Linux's IOV_MAX)
_FILE_MODE_MASK = 0o666  # created files are never executable, set-id or sticky
# Disk space is reserved (fallocate) at most this far ahead of the bytes written, up to the announced size: the
# file system then allocates in large extents instead of page by page (a third less CPU per byte written here),
# yet a peer that announces a huge tsize and sends nothing cannot make us reserve more than this per transfer.
RESERVE_AHEAD = 16 * 1024 * 1024
_NO_FALLOCATE = frozenset({errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENODEV})


def _fallocate() -> Callable[[int, int, int], None] | None:
    """Linux's fallocate(2) with mode 0, not glibc's posix_fallocate, which on a file system that cannot
    allocate falls back to writing zeros over the whole range; None where there is no such call."""
    try:
        call = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    call.argtypes, call.restype = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64], ctypes.c_int

    def fallocate(fd: int, offset: int, length: int) -> None:
        if call(fd, 0, offset, length) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return fallocate


_FALLOCATE = _fallocate()


class DigestMismatch(FsError):
    """The bytes written do not have the digest the sender announced (rudp's digest option): damaged in transit.
    RFC 1350 error 0 with this message goes to the peer; nothing is kept."""

    def __init__(self, algorithm: str, expected: str, actual: str) -> None:
        super().__init__(
            ErrorCode.NOT_DEFINED,
            f"{algorithm} mismatch: file damaged in transit, not kept "
            f"(expected {expected[:12]}..., got {actual[:12]}...)",
        )
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual


class _State(enum.Enum):
    OPEN = "open"
    COMMITTED = "committed"
    ABORTED = "aborted"


class AtomicWriter:
    """Write a file under a temporary name and move it into place on :meth:`commit`.

    Build one with :meth:`rudp.fs.paths.Root.open_for_write` (server side, beneath a served directory) or
    :meth:`for_path` (client side, a destination the local user chose).  The writer takes ownership of
    ``dir_fd`` from the moment it is called, also when the constructor raises.
    """

    def __init__(
        self,
        *,
        dir_fd: int,
        name: str | bytes,
        overwrite: bool,
        mode: int = 0o644,
        fsync: bool = False,
        display_name: str | None = None,
        buffer_size: int = _DEFAULT_BUFFER,
    ) -> None:
        self._dir_fd = dir_fd
        self._fd = -1
        self._state = _State.ABORTED  # until the temporary file exists there is nothing to clean up but dir_fd
        try:
            self._final = os.fsencode(name)
            if not self._final or b"/" in self._final or self._final in (b".", b".."):
                raise ValueError(f"not a single file name: {name!r}")
            self.name = display_name if display_name is not None else os.fsdecode(self._final)
            self._overwrite = overwrite
            self._fsync = fsync
            self._chunks: list[bytes | memoryview] = []  # written, not yet handed to the kernel
            self._pending = 0  # their total size
            self._buffer_size = max(0, buffer_size)
            self.bytes_written = 0
            self._size: int | None = None  # the size the peer announced, if any: space is reserved toward it
            self._reserved = 0  # bytes of the file's space reserved so far (the file is this long, at least)
            self._hash: Hash | None = None  # hashes every byte written once a digest is expected
            self._expected: Digest | None = None
            self._check_destination()
            self._temp, self._fd = self._create_temp(mode)
        except BaseException:
            os.close(self._dir_fd)
            self._dir_fd = -1
            raise
        self._state = _State.OPEN

    # -- construction -------------------------------------------------------------------------------------------

    @classmethod
    def for_path(
        cls,
        path: str | bytes | os.PathLike[str],
        *,
        overwrite: bool,
        mode: int = 0o644,
        fsync: bool = False,
        buffer_size: int = _DEFAULT_BUFFER,
    ) -> AtomicWriter:
        """Client side: write to ``path`` chosen by the local user (its directory is trusted and must exist)."""
        raw = os.fsencode(path)
        head, tail = os.path.split(raw)
        if tail in (b"", b".", b".."):
            raise PathRefused(ErrorCode.ACCESS_VIOLATION, "destination is a directory")
        try:
            dir_fd = os.open(head or b".", _O_PATH | os.O_DIRECTORY | _O_CLOEXEC)
        except OSError as exc:
            raise refusal_from_oserror(exc, not_found="directory not found") from exc
        return cls(
            dir_fd=dir_fd,
            name=tail,
            overwrite=overwrite,
            mode=mode,
            fsync=fsync,
            display_name=os.fsdecode(raw),
            buffer_size=buffer_size,
        )

    def _check_destination(self) -> None:
        # Early, friendly refusal; commit() re-checks atomically (link's EEXIST, rename's EISDIR).
        try:
            st = os.stat(self._final, dir_fd=self._dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise refusal_from_oserror(exc) from exc
        if stat.S_ISDIR(st.st_mode):
            raise PathRefused(ErrorCode.ACCESS_VIOLATION, "is a directory")
        if stat.S_ISLNK(st.st_mode):
            raise PathRefused(ErrorCode.ACCESS_VIOLATION, "will not replace a symbolic link")
        if not stat.S_ISREG(st.st_mode):
            raise PathRefused(ErrorCode.ACCESS_VIOLATION, "not a regular file")
        if not self._overwrite:
            raise PathRefused(ErrorCode.FILE_EXISTS, "file already exists")

    def _create_temp(self, mode: int) -> tuple[bytes, int]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
        for _ in range(8):
            token = secrets.token_hex(8).encode()
            temp = b".%s.%s%s" % (self._final[:_TEMP_NAME_KEEP], token, TEMP_SUFFIX.encode())
            try:
                return temp, os.open(temp, flags, mode & _FILE_MODE_MASK, dir_fd=self._dir_fd)
            except FileExistsError:
                continue  # 64 random bits collided (or someone planted the name): draw again
            except OSError as exc:
                raise refusal_from_oserror(exc) from exc
        raise PathRefused(ErrorCode.NOT_DEFINED, "cannot create a temporary file")

    # -- the data -----------------------------------------------------------------------------------------------

    @property
    def temp_name(self) -> str:
        """Name of the temporary file inside the destination directory (for diagnostics and tests)."""
        return os.fsdecode(self._temp)

    @property
    def committed(self) -> bool:
        return self._state is _State.COMMITTED

    def expect_digest(self, algorithm: str, hexdigest: str) -> None:
        """Verify at :meth:`commit` that the file's digest by ``algorithm`` (a digest option's name, spec 7.7) is
        ``hexdigest`` (lower-case hex); call it before the first write.  The bytes are hashed as they are written,
        so the check costs no second read."""
        self._require_open()
        if self.bytes_written:
            raise ValueError("expect_digest must come before the first write")
        self._hash = new_hash(algorithm)
        self._expected = Digest(algorithm, hexdigest.lower())

    def expect_size(self, size: int) -> None:
        """The peer announced the file's size (RFC 2349 tsize): reserve disk space toward it as the bytes come,
        at most ``RESERVE_AHEAD`` beyond them, so a full disk shows at once (ERROR 3) and the file system
        allocates in large pieces.  The file ends where the bytes do, whatever was announced."""
        self._require_open()
        if size > 0 and _FALLOCATE is not None:
            self._size = size

    def _reserve(self, end: int) -> None:
        """Have space up to ``end`` reserved (an OSError such as ENOSPC propagates: disk full)."""
        assert self._size is not None and _FALLOCATE is not None
        target = min(self._size, end + RESERVE_AHEAD)
        if target <= self._reserved:
            return
        try:
            _FALLOCATE(self._fd, self._reserved, target - self._reserved)
        except OSError as exc:
            if exc.errno not in _NO_FALLOCATE:
                raise
            self._size = None  # this file system cannot: write as usual
            return
        self._reserved = target

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``.  On failure the writer aborts and raises :class:`WriteFailed` (3: disk full)."""
        self._require_open()
        size = len(data)
        if not size:
            return
        self.bytes_written += size
        if type(data) is not bytes and not (type(data) is memoryview and type(data.obj) is bytes):
            data = bytes(data)  # the caller may change a mutable buffer once we return
        if self._hash is not None:
            self._hash.update(data)
        self._chunks.append(data)
        self._pending += size
        if self._pending >= self._buffer_size:
            self._flush_or_abort()

    def _flush(self) -> None:
        if self._size is not None and self._chunks:
            self._reserve(self.bytes_written)
        chunks = self._chunks
        while chunks:
            batch = chunks[:_IOV_MAX]
            written = os.writev(self._fd, batch)
            if not written:
                raise OSError(errno.EIO, "the file took no bytes")  # never loop on a write that makes no progress
            self._pending -= written
            done = 0  # chunks written whole
            for chunk in batch:
                if written < len(chunk):
                    break
                written -= len(chunk)
                done += 1
            del chunks[:done]
            if written:  # a short write ended inside a chunk (rare): keep its unwritten rest
                chunks[0] = memoryview(chunks[0])[written:]

    def _flush_or_abort(self) -> None:
        try:
            self._flush()
        except OSError as exc:
            self.abort()
            raise write_failure_from_oserror(exc) from exc

    def commit(self) -> None:
        """Flush and move the file into place; raises :class:`PathRefused` (6) if ``overwrite`` is off and the
        name exists by now, :class:`DigestMismatch` if a digest was expected and the bytes do not have it.  Any
        failure aborts, so the temporary file is gone whatever happens."""
        self._require_open()
        self._flush_or_abort()
        try:
            if self._reserved > self.bytes_written:  # reserved toward a size the peer announced, not all sent
                os.ftruncate(self._fd, self.bytes_written)
            if self._fsync:
                os.fsync(self._fd)
            fd, self._fd = self._fd, -1
            os.close(fd)  # close() can report a deferred write error (NFS, quotas)
        except OSError as exc:
            self.abort()
            raise write_failure_from_oserror(exc) from exc
        if self._hash is not None and self._expected is not None:
            actual = self._hash.hexdigest()
            if actual != self._expected.value:
                self.abort()
                raise DigestMismatch(self._expected.algorithm, self._expected.value, actual)
        try:
            if self._overwrite:
                os.rename(self._temp, self._final, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            else:
                d = self._dir_fd
                os.link(self._temp, self._final, src_dir_fd=d, dst_dir_fd=d, follow_symlinks=False)
        except OSError as exc:
            self.abort()
            if exc.errno == errno.EEXIST:
                raise PathRefused(ErrorCode.FILE_EXISTS, "file already exists") from exc
            raise refusal_from_oserror(exc) from exc
        self._state = _State.COMMITTED
        try:
            if not self._overwrite:
                try:
                    os.unlink(self._temp, dir_fd=self._dir_fd)
                except OSError:
                    pass  # the data is safely in place; a stray second name is not worth failing the transfer
            if self._fsync:
                self._sync_directory()
        finally:
            self._close_dir()

    def _sync_directory(self) -> None:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC, dir_fd=self._dir_fd)
        try:
            os.fsync(fd)
        except OSError as exc:
            raise write_failure_from_oserror(exc) from exc
        finally:
            os.close(fd)

    def abort(self) -> None:
        """Discard the temporary file.  Idempotent, and a no-op after a successful :meth:`commit`."""
        if self._state is not _State.OPEN:
            return
        self._state = _State.ABORTED
        self._chunks = []
        self._pending = 0
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.unlink(self._temp, dir_fd=self._dir_fd)
        except OSError:
            pass  # already gone, or nothing more can be done
        finally:
            self._close_dir()

    def _close_dir(self) -> None:
        if self._dir_fd >= 0:
            fd, self._dir_fd = self._dir_fd, -1
            os.close(fd)

    def _require_open(self) -> None:
        if self._state is not _State.OPEN:
            raise ValueError(f"writer for {self.name!r} is already {self._state.value}")

    # -- context manager ----------------------------------------------------------------------------------------

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()  # no-op after commit(); otherwise nothing is committed implicitly

    def __del__(self) -> None:
        # A leaked writer must not leave a temporary file behind for ever.
        try:
            self.abort()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<AtomicWriter {self.name!r} {self._state.value} {self.bytes_written} bytes>"
