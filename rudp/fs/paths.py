"""Safe name resolution beneath a served directory: the server's only way to open files.

Theory of operation
-------------------
A peer's file name is checked as text first, before the filesystem is touched (:func:`split_name`): empty names,
NUL bytes, other control characters (bytes 0x01-0x1f and 0x7f: they hide in terminals and logs), absolute paths,
backslashes and any ``..`` component are refused with code 2; empty and ``.`` components are dropped.  Text
checks alone cannot stop an escape through a symbolic link, nor a race with someone renaming directories, so the
name is then resolved by the kernel relative to a descriptor of the served
directory that :class:`Root` holds open:

* Linux openat2(2) with ``RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`` (Linux 5.6+).  The kernel refuses, with
  EXDEV, any resolution that would leave the directory: absolute symlink targets, ``..`` past the top, at any
  point of the walk, atomically.  Symbolic links that stay inside are followed, because administrators link files
  into TFTP roots.  ``/proc``-style "magic" links are refused outright.
* Fallback (no openat2: ENOSYS or a seccomp filter, an older kernel, another OS or architecture): the name is
  walked one component at a time with ``O_NOFOLLOW`` relative to the previous directory's descriptor.  Every
  symbolic link is refused (code 2), also ones that stay inside: stricter, but just as race-free.

Whether openat2 works is probed once per process (:func:`openat2_available`); ``Root(use_openat2=...)`` overrides
it, which is how the tests exercise the fallback on a modern kernel.

Reading opens with ``O_NONBLOCK`` so that a FIFO cannot block the server, then requires a regular file
(``fstat``) and only then clears ``O_NONBLOCK``.  Writing resolves the *parent* directory the same way and hands
its descriptor to :class:`rudp.fs.files.AtomicWriter`, which never follows a link in the final component.
Directories are created only when asked (``mkdirs=True``, ``rudp-recv --mkdirs``): the deepest existing parent is
resolved as above, then each missing component is made with ``mkdirat`` (mode 0755 minus the umask) relative to
its parent's descriptor and opened with ``O_NOFOLLOW``, so a symlink raced into its place is refused, never
followed.  Otherwise a missing parent directory is code 1 ("directory not found"): nothing by that name exists,
which is what code 1 says, and it tells the user which part of the name to fix.

Error codes (RFC 1350): 1 file not found, 2 access violation (bad name, escape, symlink, permission, not a
regular file), 6 file already exists.  Messages never reveal the served directory's own path.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import io
import os
import platform
import stat
import sys
from types import TracebackType

from rudp.fs.errors import PathRefused, refusal_from_oserror
from rudp.fs.files import AtomicWriter
from rudp.wire.packets import ErrorCode

__all__ = ["Root", "PathRefused", "split_name", "openat2_available"]

# linux/openat2.h
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
# openat2 is 437 on every architecture using the unified syscall table; only these are vouched for here.
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437}
_AT_FDCWD = -100
_EAGAIN_RETRIES = 16  # openat2 returns EAGAIN when a concurrent rename races a ".." walk; the kernel says retry

_O_PATH = getattr(os, "O_PATH", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOCTTY = getattr(os, "O_NOCTTY", 0)
_DIR_FLAGS = (_O_PATH or os.O_RDONLY) | os.O_DIRECTORY | _O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | _O_NOCTTY | _O_CLOEXEC
_DIR_MODE = 0o755  # directories made by mkdirs=True, minus the umask
_CONTROL = bytes(range(1, 0x20)) + b"\x7f"


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _raw_openat2(dir_fd: int, path: bytes, flags: int, resolve: int) -> int:
    libc = _libc()
    how = _OpenHow(flags, 0, resolve)
    number = ctypes.c_long(_SYS_OPENAT2[platform.machine()])
    size = ctypes.c_size_t(ctypes.sizeof(how))
    for _ in range(_EAGAIN_RETRIES):
        fd = libc.syscall(number, ctypes.c_int(dir_fd), ctypes.c_char_p(path), ctypes.byref(how), size)
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err))
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))


@functools.cache
def _libc() -> ctypes.CDLL:
    lib = ctypes.CDLL(None, use_errno=True)
    lib.syscall.restype = ctypes.c_long
    return lib


@functools.cache
def openat2_available() -> bool:
    """True if openat2(2) with RESOLVE_BENEATH works here.  Probed once per process.

    The probe resolves "/" beneath the current directory: a kernel that implements openat2 answers EXDEV,
    without depending on the current directory.  Any other answer (ENOSYS, a seccomp EPERM, ...) means fallback.
    """
    if sys.platform != "linux" or platform.machine() not in _SYS_OPENAT2:
        return False
    try:
        fd = _raw_openat2(_AT_FDCWD, b"/", _DIR_FLAGS, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
    except OSError as exc:
        return exc.errno == errno.EXDEV
    os.close(fd)  # cannot happen on a correct kernel; do not trust it
    return False


def split_name(name: str | bytes) -> tuple[bytes, ...]:
    """Check a peer's file name as text and split it into components; raise :class:`PathRefused` (code 2).

    ``str`` names are encoded with the filesystem encoding (UTF-8 + surrogateescape, matching the codec).
    """
    refuse = ErrorCode.ACCESS_VIOLATION
    if isinstance(name, str):
        try:
            raw = os.fsencode(name)
        except UnicodeEncodeError:
            raise PathRefused(refuse, "file name cannot be encoded") from None
    else:
        raw = bytes(name)
    if not raw:
        raise PathRefused(refuse, "empty file name")
    if b"\0" in raw:
        raise PathRefused(refuse, "NUL byte in file name")
    if raw.translate(None, _CONTROL) != raw:
        raise PathRefused(refuse, "control character in file name")
    if raw.startswith(b"/"):
        raise PathRefused(refuse, "absolute paths are not allowed")
    if b"\\" in raw:
        raise PathRefused(refuse, "backslash in file name")
    parts = tuple(p for p in raw.split(b"/") if p not in (b"", b"."))
    if b".." in parts:
        raise PathRefused(refuse, "'..' in file name")
    if not parts:
        raise PathRefused(refuse, "file name names no file")
    return parts


def _is_symlink(name: bytes, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


class Root:
    """A served directory, held open by descriptor; every name is resolved beneath it.

    ``use_openat2=None`` probes the kernel; ``False`` forces the stricter component walk (every symlink refused);
    ``True`` insists on openat2 and raises ``OSError`` if it is unavailable.
    """

    def __init__(self, directory: str | os.PathLike[str], *, use_openat2: bool | None = None) -> None:
        self.path = os.fspath(directory)
        available = openat2_available()
        if use_openat2 and not available:
            raise OSError(errno.ENOSYS, "openat2(2) is not available on this system")
        self.uses_openat2 = available if use_openat2 is None else use_openat2
        self._fd = os.open(self.path, _DIR_FLAGS)

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("root is closed")
        return self._fd

    # -- resolution ---------------------------------------------------------------------------------------------

    def _open(self, parts: tuple[bytes, ...], flags: int) -> int:
        """Open ``parts`` beneath the root with ``flags``; raises ``OSError`` (ELOOP/EXDEV for an escape)."""
        root_fd = self.fileno()
        if self.uses_openat2:
            resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS
            return _raw_openat2(root_fd, b"/".join(parts), flags | _O_CLOEXEC, resolve)
        dir_fd = root_fd
        try:
            for part in parts[:-1]:
                next_fd = self._open_component(part, _DIR_FLAGS, dir_fd)
                if dir_fd != root_fd:
                    os.close(dir_fd)
                dir_fd = next_fd
            return self._open_component(parts[-1], flags, dir_fd)
        finally:
            if dir_fd != root_fd:
                os.close(dir_fd)

    @staticmethod
    def _open_component(part: bytes, flags: int, dir_fd: int) -> int:
        try:
            return os.open(part, flags | os.O_NOFOLLOW | _O_CLOEXEC, dir_fd=dir_fd)
        except OSError as exc:
            # O_NOFOLLOW|O_DIRECTORY on a symlink says ENOTDIR; make the refusal an access violation.
            if exc.errno == errno.ENOTDIR and _is_symlink(part, dir_fd):
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from exc
            raise

    # -- the two verbs ------------------------------------------------------------------------------------------

    def open_for_read(self, name: str | bytes) -> tuple[io.FileIO, int]:
        """Open a regular file for reading; return an unbuffered binary file and its size in bytes.

        Raises :class:`PathRefused`: 1 missing, 2 bad name / escape / symlink (fallback) / permission /
        directory / not a regular file.
        """
        parts = split_name(name)
        try:
            fd = self._open(parts, _READ_FLAGS)
        except OSError as exc:
            raise refusal_from_oserror(exc) from exc
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise PathRefused(ErrorCode.ACCESS_VIOLATION, "is a directory")
            if not stat.S_ISREG(st.st_mode):
                raise PathRefused(ErrorCode.ACCESS_VIOLATION, "not a regular file")
            os.set_blocking(fd, True)
            file = io.FileIO(fd, "rb", closefd=True)
        except BaseException:
            os.close(fd)
            raise
        file.name = os.fsdecode(b"/".join(parts))  # FileIO.name is writable
        return file, st.st_size

    def _open_parent(self, parts: tuple[bytes, ...], *, mkdirs: bool) -> int:
        """Open the directory ``parts`` (empty: the root) beneath the root, making missing ones if ``mkdirs``."""
        try:
            return self._open(parts or (b".",), _DIR_FLAGS)
        except OSError as exc:
            if not mkdirs or exc.errno != errno.ENOENT:
                raise
        # The deepest existing ancestor, resolved as safely as any name; then one new component at a time,
        # each relative to its parent's descriptor: mkdirat never follows a link in its last component, and
        # O_NOFOLLOW refuses a link someone swapped in between the mkdirat and the open.
        dir_fd = self._open((b".",), _DIR_FLAGS)
        try:
            for depth, part in enumerate(parts, 1):
                try:
                    next_fd = self._open(parts[:depth], _DIR_FLAGS)
                except FileNotFoundError:
                    try:
                        os.mkdir(part, _DIR_MODE, dir_fd=dir_fd)
                    except FileExistsError:
                        pass  # made meanwhile by someone else: the no-follow open below checks what it is
                    next_fd = self._open_component(part, _DIR_FLAGS, dir_fd)
                os.close(dir_fd)
                dir_fd = next_fd
        except BaseException:
            os.close(dir_fd)
            raise
        return dir_fd

    def open_for_write(
        self, name: str | bytes, *, overwrite: bool, mode: int = 0o644, fsync: bool = False, mkdirs: bool = False
    ) -> AtomicWriter:
        """Start writing ``name``; nothing appears under it until :meth:`AtomicWriter.commit`.

        ``mkdirs`` makes missing parent directories (mode 0755 minus the umask), beneath the root only.
        Raises :class:`PathRefused`: 1 parent directory missing, 2 bad name / escape / symlink / permission /
        destination is a directory or a symlink, 6 exists and ``overwrite`` is false (checked again at commit).
        """
        parts = split_name(name)
        try:
            dir_fd = self._open_parent(parts[:-1], mkdirs=mkdirs)
        except OSError as exc:
            raise refusal_from_oserror(exc, not_found="directory not found") from exc
        return AtomicWriter(
            dir_fd=dir_fd,
            name=parts[-1],
            overwrite=overwrite,
            mode=mode,
            fsync=fsync,
            display_name=os.fsdecode(b"/".join(parts)),
        )

    # -- lifetime -----------------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> Root:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "openat2" if self.uses_openat2 else "no-symlinks"
        return f"<Root {self.path!r} {mode}{' closed' if self._fd < 0 else ''}>"
