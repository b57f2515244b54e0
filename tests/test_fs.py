"""rudp.fs against real files: traversal, symlink escapes, FIFOs, atomic commits, disk full.

Most tests run twice: with openat2(2) (when the kernel has it) and with the forced component-walk fallback.
Each asserts both the refusal and that nothing outside the served directory changed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import rudp.fs.files as files_mod
import rudp.fs.paths as paths_mod
from rudp.fs import AtomicWriter, FsError, PathRefused, Root, WriteFailed, openat2_available, split_name

HELLO = b"hello, world\n"
SECRET = b"top secret\n"


# -- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp_path/root is served; tmp_path/outside must never be read or written through it."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    (root / "adir").mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    (root / "hello.txt").write_bytes(HELLO)
    (root / "sub" / "inner.txt").write_bytes(b"inner\n")
    (root / "a\\b").write_bytes(b"backslash\n")
    (root / "esc_abs").symlink_to(outside / "secret")  # absolute target outside
    (root / "esc_rel").symlink_to("../outside/secret")  # relative target outside
    (root / "esc_dir").symlink_to(outside)  # a directory outside
    (root / "sub" / "esc_up").symlink_to("../../outside/secret")
    (root / "in_link").symlink_to("hello.txt")  # stays inside
    (root / "sub" / "in_up").symlink_to("../hello.txt")  # stays inside, via ".."
    (root / "sub_link").symlink_to("sub")  # a directory inside
    os.mkfifo(root / "fifo")
    return tmp_path


@pytest.fixture(params=["openat2", "fallback"])
def root(request: pytest.FixtureRequest, tree: Path) -> Iterator[Root]:
    if request.param == "openat2" and not openat2_available():
        pytest.skip("openat2(2) not available on this kernel")
    with Root(tree / "root", use_openat2=request.param == "openat2") as r:
        yield r


@pytest.fixture
def root2(tree: Path) -> Iterator[Root]:
    if not openat2_available():
        pytest.skip("openat2(2) not available on this kernel")
    with Root(tree / "root") as r:
        yield r


def snapshot(top: Path) -> dict[str, tuple[str, object]]:
    """Every entry under ``top`` (symlinks not followed) with its kind and contents or target."""
    out: dict[str, tuple[str, object]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = str(p.relative_to(top))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", p.read_bytes())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", None)
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode))
    return out


def refused(code: int, fn: Callable[[], object]) -> PathRefused:
    with pytest.raises(PathRefused) as info:
        fn()
    assert info.value.code == code, str(info.value)
    assert "\n" not in str(info.value)
    return info.value


def write_file(root: Root, name: str, data: bytes, *, overwrite: bool = False) -> None:
    with root.open_for_write(name, overwrite=overwrite) as w:
        w.write(data)
        w.commit()


def temp_files(directory: Path) -> list[str]:
    return [n for n in os.listdir(directory) if n.endswith(files_mod.TEMP_SUFFIX)]


# -- names checked as text --------------------------------------------------------------------------------------

BAD_NAMES = [
    "../outside/secret",
    "a/../../outside/secret",
    "sub/../hello.txt",  # stays inside, but ".." is refused as text before the kernel sees it
    "..",
    "/etc/passwd",
    "a\\b",  # exists in the root under that literal name; refused all the same
    "..\\outside\\secret",
    "",
    ".",
    "./",
    "//",
    "hello.txt\0",
    "\0",
    "\ud800",  # not encodable (not a surrogateescape byte)
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_refused_for_read_with_code_2(root: Root, tree: Path, name: str) -> None:
    before = snapshot(tree)
    refused(2, lambda: root.open_for_read(name))
    assert snapshot(tree) == before


@pytest.mark.parametrize("name", BAD_NAMES + ["../escaped", "sub/../../escaped", "/tmp/escaped"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_bad_names_refused_for_write_with_code_2(root: Root, tree: Path, name: str, overwrite: bool) -> None:
    before = snapshot(tree)
    refused(2, lambda: root.open_for_write(name, overwrite=overwrite))
    assert snapshot(tree) == before
    assert not Path("/tmp/escaped").exists()


def test_split_name_normalises_harmless_components() -> None:
    assert split_name("./sub//inner.txt") == (b"sub", b"inner.txt")
    assert split_name(b"a/b/") == (b"a", b"b")
    assert split_name("caf\udce9") == (b"caf\xe9",)  # surrogateescape from the codec maps back to the byte


def test_normalised_name_opens(root: Root) -> None:
    f, size = root.open_for_read("./sub//inner.txt")
    with f:
        assert (f.read(), size) == (b"inner\n", 6)


# -- symlinks ---------------------------------------------------------------------------------------------------

ESCAPING_READS = ["esc_abs", "esc_rel", "esc_dir/secret", "sub/esc_up"]


@pytest.mark.parametrize("name", ESCAPING_READS)
def test_symlink_escape_refused_for_read(root: Root, tree: Path, name: str) -> None:
    before = snapshot(tree)
    refused(2, lambda: root.open_for_read(name))
    assert snapshot(tree) == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_symlinked_directory_escape_refused_for_write(root: Root, tree: Path, overwrite: bool) -> None:
    before = snapshot(tree)
    refused(2, lambda: root.open_for_write("esc_dir/planted", overwrite=overwrite))
    refused(2, lambda: root.open_for_write("esc_dir/secret", overwrite=overwrite))
    assert snapshot(tree) == before
    assert sorted(os.listdir(tree / "outside")) == ["secret"]


@pytest.mark.parametrize("name", ["esc_abs", "esc_rel", "sub/esc_up"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_symlink_to_outside_file_refused_for_write(root: Root, tree: Path, name: str, overwrite: bool) -> None:
    before = snapshot(tree)
    refused(2, lambda: root.open_for_write(name, overwrite=overwrite))
    assert snapshot(tree) == before  # the target is untouched and the link is not replaced


def test_dangling_link_planted_at_final_name_is_not_written_through(root: Root, tree: Path) -> None:
    (tree / "root" / "late").symlink_to(tree / "outside" / "new")
    refused(2, lambda: root.open_for_write("late", overwrite=True))
    assert not (tree / "outside" / "new").exists()


@pytest.mark.parametrize(
    ("name", "content"), [("in_link", HELLO), ("sub/in_up", HELLO), ("sub_link/inner.txt", b"inner\n")]
)
def test_symlink_inside_root_allowed_for_read_with_openat2(root2: Root, name: str, content: bytes) -> None:
    f, size = root2.open_for_read(name)
    with f:
        assert f.read() == content
        assert size == len(content)


def test_symlinked_directory_inside_root_allowed_for_write_with_openat2(root2: Root, tree: Path) -> None:
    write_file(root2, "sub_link/new.txt", b"via link")
    assert (tree / "root" / "sub" / "new.txt").read_bytes() == b"via link"


@pytest.mark.parametrize("name", ["in_link", "sub/in_up", "sub_link/inner.txt", *ESCAPING_READS])
def test_fallback_refuses_every_symlink(tree: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    # Force the fallback through the detector itself, as a kernel without openat2 would.
    monkeypatch.setattr(paths_mod, "openat2_available", lambda: False)
    before = snapshot(tree)
    with Root(tree / "root") as r:
        assert not r.uses_openat2
        refused(2, lambda: r.open_for_read(name))
        refused(2, lambda: r.open_for_write("esc_dir/planted", overwrite=True))
        refused(2, lambda: r.open_for_write("sub_link/planted", overwrite=True))
    assert snapshot(tree) == before


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(errno.EXDEV, True), (errno.ENOSYS, False), (errno.EPERM, False), (errno.EINVAL, False)],
)
def test_detector_trusts_only_the_exdev_answer(
    monkeypatch: pytest.MonkeyPatch, answer: int, expected: bool
) -> None:
    def probe(dir_fd: int, path: bytes, flags: int, resolve: int) -> int:
        assert path == b"/" and resolve & paths_mod.RESOLVE_BENEATH
        raise OSError(answer, os.strerror(answer))

    monkeypatch.setattr(paths_mod, "_raw_openat2", probe)
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(sys, "platform", "linux")
    paths_mod.openat2_available.cache_clear()
    try:
        assert paths_mod.openat2_available() is expected
    finally:
        paths_mod.openat2_available.cache_clear()


def test_detector_is_cached_and_root_follows_it() -> None:
    assert openat2_available() is openat2_available()
    with tempfile.TemporaryDirectory() as d, Root(d) as r:
        assert r.uses_openat2 == openat2_available()


# -- what may be read -------------------------------------------------------------------------------------------


def test_read_regular_file(root: Root) -> None:
    f, size = root.open_for_read("hello.txt")
    with f:
        assert size == len(HELLO)
        assert f.read() == HELLO
        assert f.name == "hello.txt"
        assert os.get_blocking(f.fileno())  # O_NONBLOCK was cleared after the checks


@pytest.mark.timeout(10)
def test_fifo_refused_without_blocking(root: Root) -> None:
    # Without O_NONBLOCK, opening a FIFO nobody writes to blocks for ever (the timeout fails the test).
    refused(2, lambda: root.open_for_read("fifo"))


@pytest.mark.parametrize("name", ["adir", "sub", "sub/"])
def test_directory_refused_for_read(root: Root, name: str) -> None:
    assert "directory" in str(refused(2, lambda: root.open_for_read(name)))


@pytest.mark.parametrize("name", ["missing", "sub/missing", "nodir/x", "hello.txt/x"])
def test_missing_file_is_code_1(root: Root, name: str) -> None:
    refused(1, lambda: root.open_for_read(name))


def test_closed_root_refuses_to_work(tree: Path) -> None:
    r = Root(tree / "root")
    r.close()
    r.close()
    with pytest.raises(ValueError):
        r.open_for_read("hello.txt")


# -- writing ----------------------------------------------------------------------------------------------------


def test_write_creates_file_only_on_commit(root: Root, tree: Path) -> None:
    served = tree / "root"
    with root.open_for_write("sub/new.bin", overwrite=False) as w:
        assert w.name == "sub/new.bin"
        w.write(b"x" * 100_000)
        w.write(b"y")
        assert not (served / "sub" / "new.bin").exists()
        assert temp_files(served / "sub") == [w.temp_name]
        assert w.temp_name.startswith(".new.bin.")
        w.commit()
        assert w.committed and w.bytes_written == 100_001
    assert (served / "sub" / "new.bin").read_bytes() == b"x" * 100_000 + b"y"
    assert temp_files(served / "sub") == []


def test_missing_parent_directory_is_code_1_and_nothing_created(root: Root, tree: Path) -> None:
    before = snapshot(tree)
    e = refused(1, lambda: root.open_for_write("nodir/x", overwrite=False))
    assert "directory" in str(e)
    refused(1, lambda: root.open_for_write("nodir/deeper/x", overwrite=True))
    refused(1, lambda: root.open_for_write("hello.txt/x", overwrite=True))  # a file is no directory
    assert snapshot(tree) == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_directory_refused_for_write(root: Root, tree: Path, overwrite: bool) -> None:
    before = snapshot(tree)
    refused(2, lambda: root.open_for_write("adir", overwrite=overwrite))
    refused(2, lambda: root.open_for_write("sub/", overwrite=overwrite))
    assert snapshot(tree) == before


def test_existing_file_without_overwrite_is_code_6_and_untouched(root: Root, tree: Path) -> None:
    before = snapshot(tree)
    refused(6, lambda: root.open_for_write("hello.txt", overwrite=False))
    assert snapshot(tree) == before


def test_overwrite_replaces_atomically(root: Root, tree: Path) -> None:
    target = tree / "root" / "hello.txt"
    with open(target, "rb") as old_reader, root.open_for_write("hello.txt", overwrite=True) as w:
        w.write(b"new contents, longer than the old ones\n")
        assert target.read_bytes() == HELLO  # nothing visible before commit
        w.commit()
        assert target.read_bytes() == b"new contents, longer than the old ones\n"
        assert old_reader.read() == HELLO  # a new inode replaced the old: no in-place truncation
    assert temp_files(tree / "root") == []


def test_abort_leaves_neither_temp_nor_final(root: Root, tree: Path) -> None:
    before = snapshot(tree)
    w = root.open_for_write("new.txt", overwrite=False)
    w.write(b"partial" * 100_000)
    assert temp_files(tree / "root") == [w.temp_name]
    w.abort()
    w.abort()  # idempotent
    assert snapshot(tree) == before
    with pytest.raises(ValueError):
        w.write(b"more")
    with pytest.raises(ValueError):
        w.commit()


def test_abort_after_commit_is_a_no_op(root: Root, tree: Path) -> None:
    w = root.open_for_write("kept.txt", overwrite=False)
    w.write(b"kept")
    w.commit()
    w.abort()
    assert (tree / "root" / "kept.txt").read_bytes() == b"kept"


def test_exception_in_with_block_aborts(root: Root, tree: Path) -> None:
    before = snapshot(tree)
    with pytest.raises(RuntimeError), root.open_for_write("new.txt", overwrite=True) as w:
        w.write(b"data")
        raise RuntimeError("transfer failed")
    assert snapshot(tree) == before


def test_leaving_with_block_without_commit_commits_nothing(root: Root, tree: Path) -> None:
    before = snapshot(tree)
    with root.open_for_write("new.txt", overwrite=True) as w:
        w.write(b"data")
    assert snapshot(tree) == before


def test_second_writer_to_same_name_is_refused_at_commit(root: Root, tree: Path) -> None:
    first = root.open_for_write("race.txt", overwrite=False)
    second = root.open_for_write("race.txt", overwrite=False)
    first.write(b"first")
    second.write(b"second")
    first.commit()
    refused(6, second.commit)
    assert (tree / "root" / "race.txt").read_bytes() == b"first"
    assert temp_files(tree / "root") == []


def test_file_appearing_before_commit_is_not_clobbered(root: Root, tree: Path) -> None:
    w = root.open_for_write("late.txt", overwrite=False)
    w.write(b"upload")
    (tree / "root" / "late.txt").write_bytes(b"someone else's")
    refused(6, w.commit)
    assert (tree / "root" / "late.txt").read_bytes() == b"someone else's"
    assert temp_files(tree / "root") == []


def test_temp_file_is_never_a_planted_symlink(root: Root, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = iter(["0" * 16])
    real = secrets.token_hex
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(tokens, None) or real(n))
    planted = tree / "root" / f".new.txt.{'0' * 16}{files_mod.TEMP_SUFFIX}"
    planted.symlink_to(tree / "outside" / "secret")
    with root.open_for_write("new.txt", overwrite=False) as w:
        assert w.temp_name != planted.name  # O_EXCL failed on the planted link; a new name was drawn
        w.write(b"upload")
        w.commit()
    assert (tree / "outside" / "secret").read_bytes() == SECRET
    assert (tree / "root" / "new.txt").read_bytes() == b"upload"
    assert planted.is_symlink()


def test_fsync_commit(root: Root, tree: Path) -> None:
    with root.open_for_write("synced.txt", overwrite=False, fsync=True) as w:
        w.write(b"durable")
        w.commit()
    assert (tree / "root" / "synced.txt").read_bytes() == b"durable"


def test_mode_is_applied(root: Root, tree: Path) -> None:
    old = os.umask(0o022)
    try:
        write_file(root, "m.txt", b"m")
        with root.open_for_write("p.txt", overwrite=False, mode=0o600) as w:
            w.commit()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tree / "root" / "m.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tree / "root" / "p.txt").stat().st_mode) == 0o600


# -- the client side: AtomicWriter.for_path -----------------------------------------------------------------------


def test_for_path_writes_atomically(tmp_path: Path) -> None:
    dest = tmp_path / "download.bin"
    with AtomicWriter.for_path(dest, overwrite=False) as w:
        assert w.name == str(dest)
        w.write(b"abc")
        assert not dest.exists()
        w.commit()
    assert dest.read_bytes() == b"abc"
    refused(6, lambda: AtomicWriter.for_path(dest, overwrite=False))
    with AtomicWriter.for_path(str(dest), overwrite=True) as w:
        w.write(b"xyz")
        w.commit()
    assert dest.read_bytes() == b"xyz"
    assert temp_files(tmp_path) == []


def test_for_path_refusals(tmp_path: Path) -> None:
    refused(1, lambda: AtomicWriter.for_path(tmp_path / "nodir" / "f", overwrite=True))
    refused(2, lambda: AtomicWriter.for_path(tmp_path, overwrite=True))
    refused(2, lambda: AtomicWriter.for_path(f"{tmp_path}/", overwrite=True))
    assert os.listdir(tmp_path) == []


def test_for_path_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with AtomicWriter.for_path("here.txt", overwrite=False) as w:
        w.write(b"here")
        w.commit()
    assert (tmp_path / "here.txt").read_bytes() == b"here"


# -- permissions and disk full ----------------------------------------------------------------------------------


def _as_unprivileged(fn: Callable[[], int]) -> int:
    """Run ``fn`` without root's power to ignore permissions: in a forked child as nobody when we are root."""
    if os.geteuid() != 0:
        return fn()
    pid = os.fork()
    if pid == 0:  # child
        status = 99
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            status = fn()
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status)


@pytest.fixture
def world_dir() -> Iterator[Path]:
    # tmp_path's parents are private to root; an unprivileged child must be able to reach this one.
    d = Path(tempfile.mkdtemp(prefix="rudp-perm-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        for p in d.iterdir():
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(d)


def _code_of(fn: Callable[[], object]) -> int:
    try:
        fn()
    except FsError as e:
        return int(e.code)
    return 50  # not refused


@pytest.mark.parametrize("use_openat2", [True, False])
def test_permission_denied_is_code_2(world_dir: Path, use_openat2: bool) -> None:
    if use_openat2 and not openat2_available():
        pytest.skip("openat2(2) not available on this kernel")
    (world_dir / "private").write_bytes(b"private")
    (world_dir / "private").chmod(0o000)
    (world_dir / "locked").mkdir(mode=0o555)
    (world_dir / "locked").chmod(0o555)

    def attempt() -> int:
        with Root(world_dir, use_openat2=use_openat2) as r:
            a = _code_of(lambda: r.open_for_read("private"))
            b = _code_of(lambda: r.open_for_write("locked/new", overwrite=True))
            return 0 if (a, b) == (2, 2) else 10 + a + 3 * b

    assert _as_unprivileged(attempt) == 0
    assert os.listdir(world_dir / "locked") == []


@contextlib.contextmanager
def tiny_tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("disk-full test needs root to mount a tiny tmpfs")
    mountpoint.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        # Lazy: a descriptor leaked by a failing test must not leave the mount behind.
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=True)


@pytest.mark.parametrize("chunk", [512, 8192, 200_000])
def test_disk_full_is_code_3_and_leaves_no_temp_file(tmp_path: Path, chunk: int) -> None:
    with tiny_tmpfs(tmp_path / "mnt", "64k") as mnt, Root(mnt) as r:
        w = r.open_for_write("big.bin", overwrite=False)
        with pytest.raises(WriteFailed) as info:
            for _ in range(1 + 512 * 1024 // chunk):
                w.write(b"\xaa" * chunk)
            w.commit()
        assert info.value.code == 3
        assert "disk full" in str(info.value)
        assert os.listdir(mnt) == []
        w.abort()  # still safe after the failure
        # The space came back: a small file fits again.
        write_file(r, "small.bin", b"ok")
        assert os.listdir(mnt) == ["small.bin"]


def test_errors_map_to_codes() -> None:
    from rudp.fs.errors import refusal_from_oserror, write_failure_from_oserror

    assert refusal_from_oserror(OSError(errno.EXDEV, "x")).code == 2
    assert refusal_from_oserror(OSError(errno.ENOENT, "x"), not_found="directory not found").message == (
        "directory not found"
    )
    assert write_failure_from_oserror(OSError(errno.EDQUOT, "x")).code == 3
    assert write_failure_from_oserror(OSError(errno.EIO, "x")).code == 0
    assert PathRefused(2, "two\nlines").message == "two lines"


# -- gathered writes --------------------------------------------------------------------------------------------


def test_writes_are_gathered_and_mutable_buffers_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_writev = os.writev

    def counting_writev(fd: int, buffers: list) -> int:
        calls.append(len(buffers))
        return real_writev(fd, buffers)

    monkeypatch.setattr(files_mod.os, "writev", counting_writev)
    reused = bytearray(b"m" * 100)
    datagram = b"\x00\x03\x00\x01" + b"v" * 300
    expected = b""
    with AtomicWriter.for_path(tmp_path / "out.bin", overwrite=False, buffer_size=1000) as w:
        for _ in range(3):
            w.write(b"b" * 100)  # kept by reference
            w.write(memoryview(datagram)[4:])  # a received payload: kept by reference
            w.write(reused)  # copied: the caller may change it once write() returns
            reused[:] = b"x" * 100
            w.write(b"")  # nothing to keep
            expected += b"b" * 100 + b"v" * 300 + b"m" * 100
            reused[:] = b"m" * 100
        assert calls == [6]  # 2 x 500 bytes reached buffer_size: one system call for six chunks
        w.commit()
    assert calls == [6, 3] and (tmp_path / "out.bin").read_bytes() == expected
    assert w.bytes_written == len(expected)


def test_short_gathered_writes_resume_where_they_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_writev = os.writev

    def stingy_writev(fd: int, buffers: list) -> int:  # at most 7 bytes a call, as a file system may do
        head = b"".join(bytes(b) for b in buffers)[:7]
        return real_writev(fd, [head])

    monkeypatch.setattr(files_mod.os, "writev", stingy_writev)
    chunks = [bytes([65 + i]) * (i * 3 + 1) for i in range(12)]
    with AtomicWriter.for_path(tmp_path / "out.bin", overwrite=False, buffer_size=40) as w:
        for chunk in chunks:
            w.write(chunk)
        w.commit()
    assert (tmp_path / "out.bin").read_bytes() == b"".join(chunks)


def test_more_chunks_than_one_writev_takes(tmp_path: Path) -> None:
    chunks = [i.to_bytes(2, "big") for i in range(3000)]  # > IOV_MAX (1024) chunks pending at once
    with AtomicWriter.for_path(tmp_path / "out.bin", overwrite=False, buffer_size=1 << 20) as w:
        for chunk in chunks:
            w.write(chunk)
        w.commit()
    assert (tmp_path / "out.bin").read_bytes() == b"".join(chunks)


# ----------------------------------------------------------------- reserving the announced size (fallocate)
def _allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def _reserving_dir(tmp_path: Path) -> Path:
    probe = tmp_path / "probe"
    with open(probe, "wb") as f:
        try:
            assert files_mod._FALLOCATE is not None
            files_mod._FALLOCATE(f.fileno(), 0, 4096)
        except (AssertionError, OSError) as exc:
            pytest.skip(f"this file system cannot reserve space (fallocate): {exc}")
    probe.unlink()
    return tmp_path


def _temp_of(directory: Path) -> Path:
    (temp,) = [p for p in directory.iterdir() if p.name.endswith(files_mod.TEMP_SUFFIX)]
    return temp


def test_space_is_reserved_ahead_of_the_writes_but_never_more_than_the_bound(tmp_path: Path) -> None:
    d = _reserving_dir(tmp_path)
    huge = 1 << 40  # a peer may announce anything: 1 TiB
    writer = AtomicWriter.for_path(d / "f", overwrite=False, buffer_size=0)
    writer.expect_size(huge)
    writer.write(b"x" * 1_000_000)
    allocated = _allocated(_temp_of(d))
    assert files_mod.RESERVE_AHEAD <= allocated <= 1_000_000 + files_mod.RESERVE_AHEAD + 65536
    writer.commit()
    assert (d / "f").read_bytes() == b"x" * 1_000_000  # the file ends where the bytes do
    assert _allocated(d / "f") < 2_000_000  # and the space reserved beyond them was given back


def test_a_small_announced_size_reserves_just_that_and_a_short_file_ends_where_its_bytes_do(
    tmp_path: Path,
) -> None:
    d = _reserving_dir(tmp_path)
    writer = AtomicWriter.for_path(d / "f", overwrite=False, buffer_size=0)
    writer.expect_size(3 * 1024 * 1024)
    writer.write(b"y" * 100)
    assert 3 * 1024 * 1024 <= _allocated(_temp_of(d)) < 4 * 1024 * 1024
    writer.commit()
    assert (d / "f").read_bytes() == b"y" * 100 and _allocated(d / "f") <= 65536
