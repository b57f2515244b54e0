"""Path safety beyond tests/test_fs.py: control characters, special files, --mkdirs, and the modes of what is made.

Names with ``..``, absolute paths, backslashes, NUL and symlink escapes are covered by test_fs.py (in memory) and
test_cli.py (over the wire); this file adds what the hardening issue (6) asks on top.  Every test runs with
openat2(2) and with the component-walk fallback where the resolution matters, and checks that nothing outside the
served directory changed.  Root-only cases (device nodes) skip with the reason, or fail when RUDP_REQUIRE_ROOT=1.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cliharness import FAST, RecvServer, assert_one_line_error, command, run, temp_files
from peers import unavailable

import rudp.fs.paths as paths_mod
from rudp.fs import PathRefused, Root, openat2_available

SECRET = b"top secret\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    (root / "hello.txt").write_bytes(b"hello\n")
    (root / "esc_dir").symlink_to(outside)  # a directory outside
    (root / "dangling_out").symlink_to("../outside/newdir")  # would be made outside by a careless mkdir -p
    (root / "dangling_in").symlink_to("newdir")  # dangling, inside: still not followed when creating
    os.mkfifo(root / "fifo")
    return tmp_path


@pytest.fixture(params=["openat2", "fallback"])
def root(request: pytest.FixtureRequest, tree: Path) -> Iterator[Root]:
    if request.param == "openat2" and not openat2_available():
        pytest.skip("openat2(2) not available on this kernel")
    with Root(tree / "root", use_openat2=request.param == "openat2") as r:
        yield r


def snapshot(top: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            body = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
            out[str(p.relative_to(top))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), body)
    return out


def refused(code: int, fn) -> str:
    with pytest.raises(PathRefused) as info:
        fn()
    assert info.value.code == code, str(info.value)
    assert "\n" not in str(info.value)
    return str(info.value)


def write(root: Root, name: str, data: bytes = b"x", **kw) -> None:
    with root.open_for_write(name, overwrite=kw.pop("overwrite", False), **kw) as w:
        w.write(data)
        w.commit()


def require_root(reason: str) -> None:
    if os.geteuid() != 0:
        unavailable(reason, "RUDP_REQUIRE_ROOT")


class umask:
    def __init__(self, mask: int) -> None:
        self.mask = mask

    def __enter__(self) -> None:
        self.old = os.umask(self.mask)

    def __exit__(self, *exc: object) -> None:
        os.umask(self.old)


# -- control characters -----------------------------------------------------------------------------------------

CONTROL_NAMES = ["a\nb", "evil\r", "\x1b[2Jclear", "tab\tname", "sub/\x07bell", "del\x7f"]


@pytest.mark.parametrize("name", CONTROL_NAMES)
def test_control_characters_refused_for_read_and_write(root: Root, tree: Path, name: str) -> None:
    (tree / "root" / name.replace("sub/", "")).write_bytes(b"planted")  # exists: refused all the same
    before = snapshot(tree)
    assert "control character" in refused(2, lambda: root.open_for_read(name))
    assert "control character" in refused(2, lambda: root.open_for_write(name, overwrite=True, mkdirs=True))
    assert snapshot(tree) == before


def test_printable_unicode_names_still_work(root: Root, tree: Path) -> None:
    write(root, "naïve café.txt", b"ok")
    assert (tree / "root" / "naïve café.txt").read_bytes() == b"ok"


# -- special files ----------------------------------------------------------------------------------------------


def test_unix_socket_refused_for_read(root: Root, tree: Path) -> None:
    path = tree / "root" / "sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
        assert "not a regular file" in refused(2, lambda: root.open_for_read("sock"))


@pytest.mark.parametrize("kind", ["fifo", "sock", "chardev"])
def test_special_file_at_the_destination_is_not_replaced(root: Root, tree: Path, kind: str) -> None:
    target = tree / "root" / kind
    if kind == "sock":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(target))
        s.close()
    elif kind == "chardev":
        require_root("making a device node needs root")
        os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
    before = snapshot(tree)
    for overwrite in (False, True):
        assert "not a regular file" in refused(2, lambda o=overwrite: root.open_for_write(kind, overwrite=o))
    assert snapshot(tree) == before
    assert [n for n in os.listdir(tree / "root") if n.endswith(".rudp-part")] == []


@pytest.mark.timeout(10)
def test_device_node_refused_for_read(root: Root, tree: Path) -> None:
    require_root("making a device node needs root")
    os.mknod(tree / "root" / "zero", 0o644 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero: endless
    assert "not a regular file" in refused(2, lambda: root.open_for_read("zero"))


# -- --mkdirs ---------------------------------------------------------------------------------------------------


def test_no_directory_is_made_unless_asked(root: Root, tree: Path) -> None:
    before = snapshot(tree)
    assert refused(1, lambda: root.open_for_write("a/b/c.txt", overwrite=False)) == "directory not found"
    assert snapshot(tree) == before


@pytest.mark.parametrize("mask, dir_mode", [(0o022, 0o755), (0o077, 0o700), (0o000, 0o755)])
def test_mkdirs_makes_missing_parents_beneath_the_root(root: Root, tree: Path, mask: int, dir_mode: int) -> None:
    with umask(mask):
        write(root, "sub/a/b/c.txt", b"deep", mkdirs=True)
        write(root, "sub/a/b/d.txt", b"again", mkdirs=True)  # the parents exist now
    assert (tree / "root" / "sub/a/b/c.txt").read_bytes() == b"deep"
    for d in ("sub/a", "sub/a/b"):
        assert stat.S_IMODE((tree / "root" / d).stat().st_mode) == dir_mode
    assert stat.S_IMODE((tree / "root" / "sub").stat().st_mode) != 0 and not (tree / "outside" / "a").exists()


@pytest.mark.parametrize("name", ["esc_dir/new/x.txt", "dangling_out/x.txt", "dangling_out/deeper/x.txt"])
def test_mkdirs_never_creates_through_a_link_leaving_the_root(root: Root, tree: Path, name: str) -> None:
    before = snapshot(tree)
    refused(2, lambda: root.open_for_write(name, overwrite=True, mkdirs=True))
    assert snapshot(tree) == before
    assert sorted(os.listdir(tree / "outside")) == ["secret"]


def test_mkdirs_does_not_follow_a_dangling_link_inside(root: Root, tree: Path) -> None:
    before = snapshot(tree)
    refused(2, lambda: root.open_for_write("dangling_in/x.txt", overwrite=False, mkdirs=True))
    assert snapshot(tree) == before


def test_mkdirs_through_a_file_is_refused(root: Root, tree: Path) -> None:
    before = snapshot(tree)
    refused(1, lambda: root.open_for_write("hello.txt/x/y", overwrite=False, mkdirs=True))
    assert snapshot(tree) == before


def test_mkdirs_refuses_a_link_swapped_in_after_mkdir(
    root: Root, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: someone replaces the directory just made with a link to outside before it is opened."""
    real_mkdir = os.mkdir
    outside = tree / "outside"

    def racing_mkdir(path, mode=0o777, *, dir_fd=None):
        real_mkdir(path, mode, dir_fd=dir_fd)
        os.rmdir(path, dir_fd=dir_fd)
        os.symlink(str(outside), path, dir_fd=dir_fd)

    monkeypatch.setattr(paths_mod.os, "mkdir", racing_mkdir)
    refused(2, lambda: root.open_for_write("new/x.txt", overwrite=True, mkdirs=True))
    assert sorted(os.listdir(outside)) == ["secret"]


# -- modes of created files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o000, 0o644), (0o077, 0o600)])
def test_created_files_are_never_executable(root: Root, tree: Path, mask: int, expected: int) -> None:
    exe = tree / "root" / "tool"
    exe.write_bytes(b"#!/bin/sh\n")
    exe.chmod(0o755)
    with umask(mask):
        write(root, "plain.bin")
        write(root, "asked.bin", mode=0o7777)  # even a caller asking for it gets no x, set-id or sticky bit
        write(root, "tool", overwrite=True)  # replacing an executable does not inherit its mode
    assert stat.S_IMODE((tree / "root" / "plain.bin").stat().st_mode) == expected
    assert stat.S_IMODE((tree / "root" / "tool").stat().st_mode) == expected
    assert stat.S_IMODE((tree / "root" / "asked.bin").stat().st_mode) == 0o666 & ~mask


# -- over the wire: rudp-recv -----------------------------------------------------------------------------------


@pytest.fixture
def src(tmp_path: Path) -> Path:
    p = tmp_path / "up.bin"
    p.write_bytes(os.urandom(3000))
    return p


def _recv(tmp_path: Path, *extra: str, mask: int = 0o022) -> RecvServer:
    with umask(mask):  # the server inherits it
        return RecvServer(tmp_path / "served", *extra)


def test_recv_mkdirs_flag(tmp_path: Path, src: Path) -> None:
    plain = _recv(tmp_path, "--timeout", "0.5")
    try:
        proc = run("rudp-send", src, "127.0.0.1", "--port", plain.port, "--name", "x/y/up.bin", *FAST)
        assert_one_line_error(proc, 4, "ERROR 1")
        assert os.listdir(plain.dir) == []
    finally:
        plain.stop()
    srv = _recv(tmp_path, "--mkdirs", "--timeout", "0.5", mask=0o000)
    try:
        proc = run("rudp-send", src, "127.0.0.1", "--port", srv.port, "--name", "x/y/up.bin", *FAST)
        assert proc.returncode == 0, proc.stderr
        assert (srv.dir / "x/y/up.bin").read_bytes() == src.read_bytes()
        assert stat.S_IMODE((srv.dir / "x/y").stat().st_mode) == 0o755  # umask 0 still gives 0755 and 0644
        assert stat.S_IMODE((srv.dir / "x/y/up.bin").stat().st_mode) == 0o644
        proc = run("rudp-send", src, "127.0.0.1", "--port", srv.port, "--name", "x/../../up.bin", *FAST)
        assert_one_line_error(proc, 4, "ERROR 2")
        assert not (tmp_path / "up.bin.1").exists() and sorted(os.listdir(srv.dir)) == ["x"]
    finally:
        srv.stop()
    assert "--mkdirs" in run("rudp-recv", "--help").stdout


def test_recv_refuses_control_characters_over_the_wire(tmp_path: Path, src: Path) -> None:
    srv = _recv(tmp_path, "--timeout", "0.5")
    try:
        proc = run("rudp-send", src, "127.0.0.1", "--port", srv.port, "--name", "two\nlines", *FAST)
        assert proc.returncode == 4 and "ERROR 2" in proc.stderr, proc.stderr
        assert os.listdir(srv.dir) == [] and temp_files(srv.dir) == []
    finally:
        srv.stop()


@pytest.mark.timeout(30)
def test_serving_a_fifo_does_not_block_the_server(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    os.mkfifo(served / "pipe")
    (served / "ok.txt").write_bytes(b"still serving\n")
    srv = _recv(tmp_path, "--serve", "--timeout", "0.5")
    try:
        proc = run("rudp-get", "127.0.0.1", "pipe", "-o", tmp_path / "p", "--port", srv.port, *FAST, timeout=15)
        assert_one_line_error(proc, 4, "ERROR 2")
        assert not (tmp_path / "p").exists()
        proc = subprocess.run(
            [
                command("rudp-get"),
                "127.0.0.1",
                "ok.txt",
                "-o",
                str(tmp_path / "ok"),
                "--port",
                str(srv.port),
                *FAST,
            ],
            capture_output=True,
            text=True,
            timeout=15,
        )
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "ok").read_bytes() == b"still serving\n"
    finally:
        srv.stop()
