"""A two-namespace lab for loss measurements: ns ``a`` (sender) and ns ``b`` (receiver) joined by one veth pair.

Theory of operation
-------------------
* Names carry the owner's pid (``rudpbench-<pid>-a``/``-b``, veth ``rb<pid>a``/``rb<pid>b``), so a later run can
  tell a crashed run's namespaces (pid gone: removed by ``remove_stale``) from a concurrent run's (left alone).
  Both veth ends are created directly inside the namespaces: the root namespace is never touched, and deleting
  the namespaces deletes the pair and the nftables tables with them.
* Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking) only: a = 198.18.0.1/30, b = 198.18.0.2/30.
* Loss is applied where each packet *arrives*: an nftables table in each namespace drops ``numgen random mod 100
  < N`` of the UDP and TCP packets entering it (prerouting, priority raw).  So both directions lose N %, and every
  packet meets exactly one coin toss.
* Per-datagram loss needs packets that are already segmented when the rule sees them.  A UDP_SEGMENT (GSO) send
  or a TSO/GSO TCP send crosses a veth as one super-packet unless the sending device lacks those features, and
  veth GRO would glue arriving packets back together.  So every offload is turned off on both ends (``ethtool -K
  ... tx off sg off tso off gso off gro off``, plus tx-udp-segmentation/rx-gro-list off); the stack then segments
  in software before the packet leaves, and the nft counters count wire packets.  ``check_segmentation`` proves it
  with a UDP_SEGMENT probe of known segment count, and the caller reports the measured drop fraction per row.
* The MTU stays 1500 (Ethernet): rudp's default DATA (1468-byte blocks) is exactly one 1500-byte IP packet.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys

from rudp.lab.lab import pid_alive

__all__ = ["Lab", "LabUnavailable", "remove_stale", "PREFIX", "ADDR_A", "ADDR_B"]

PREFIX = "rudpbench-"
ADDR_A = "198.18.0.1"
ADDR_B = "198.18.0.2"
_TABLE = "rudpbench"
_OFFLOADS = ["tx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off", "ufo", "off"]
_EXTRA_OFFLOADS = ["tx-udp-segmentation", "rx-gro-list", "rx-udp-gro-forwarding", "generic-receive-offload"]


class LabUnavailable(Exception):
    """The loss lab cannot be built here (not root, no ip/nft); the message says why."""


def _run(argv: list[str], *, check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def remove_stale() -> list[str]:
    """Delete ``rudpbench-<pid>-*`` namespaces whose pid no longer runs (a crashed earlier run's)."""
    if shutil.which("ip") is None:
        return []
    removed = []
    listing = _run(["ip", "netns", "list"], check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(re.escape(PREFIX) + r"(\d+)-[ab]", name)
        if match and not pid_alive(int(match.group(1))):
            _run(["ip", "netns", "delete", name], check=False)
            removed.append(name)
    return removed


class Lab:
    """The two namespaces, built by ``up()`` and always torn down by ``down()`` (idempotent)."""

    def __init__(self) -> None:
        pid = os.getpid()
        self.ns_a = f"{PREFIX}{pid}-a"
        self.ns_b = f"{PREFIX}{pid}-b"
        self.veth_a = f"rb{pid}a"[:15]
        self.veth_b = f"rb{pid}b"[:15]
        self.loss_percent = 0
        self.notes: list[str] = []
        self._created: list[str] = []

    # ------------------------------------------------------------------ build / tear down
    def up(self) -> None:
        if os.geteuid() != 0:
            raise LabUnavailable("not root: network namespaces need root")
        for tool in ("ip", "nft"):
            if shutil.which(tool) is None:
                raise LabUnavailable(f"{tool!r} is not installed (apt-get install iproute2 nftables)")
        try:
            for ns in (self.ns_a, self.ns_b):
                _run(["ip", "netns", "add", ns])
                self._created.append(ns)
                _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(
                [
                    "ip",
                    "link",
                    "add",
                    self.veth_a,
                    "netns",
                    self.ns_a,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    self.veth_b,
                    "netns",
                    self.ns_b,
                ]
            )
            for ns, dev, addr in ((self.ns_a, self.veth_a, ADDR_A), (self.ns_b, self.veth_b, ADDR_B)):
                _run(["ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev])
                self._offloads_off(ns, dev)
                _run(["ip", "-n", ns, "link", "set", dev, "up"])
            self.set_loss(0)
        except BaseException:
            self.down()
            raise

    def _offloads_off(self, ns: str, dev: str) -> None:
        if shutil.which("ethtool") is None:
            self.notes.append("ethtool missing: veth offloads left on, GSO super-packets may be dropped whole")
            return
        self.exec(ns, ["ethtool", "-K", dev, *_OFFLOADS], check=False)
        for feature in _EXTRA_OFFLOADS:  # names differ between kernels; absent ones are fine
            self.exec(ns, ["ethtool", "-K", dev, feature, "off"], check=False)
        shown = self.exec(ns, ["ethtool", "-k", dev], check=False).stdout
        still_on = [
            line.split(":")[0].strip()
            for line in shown.splitlines()
            if re.match(
                r"\s*(tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload|"
                r"tx-udp-segmentation|rx-gro-list): on",
                line,
            )
        ]
        if still_on:
            self.notes.append(f"{dev}: could not turn off {', '.join(still_on)}")

    def down(self) -> None:
        while self._created:
            ns = self._created.pop()
            _run(["ip", "netns", "delete", ns], check=False)

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # ------------------------------------------------------------------ use
    def prefix(self, ns: str) -> list[str]:
        """argv prefix running a command inside namespace ``ns`` (ip netns exec execs: same pid)."""
        return ["ip", "netns", "exec", ns]

    def exec(self, ns: str, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
        return _run([*self.prefix(ns), *argv], check=check)

    def set_loss(self, percent: int) -> None:
        """Replace both namespaces' tables: drop ``percent`` % of arriving UDP/TCP packets; zero the counters."""
        if not 0 <= percent <= 100:
            raise ValueError(f"loss must be 0..100 %, not {percent}")
        drop = f"numgen random mod 100 < {percent} counter name dropped drop" if percent else ""
        ruleset = (
            f"table inet {_TABLE} {{\n"
            f"  counter seen {{}}\n  counter dropped {{}}\n"
            f"  chain pre {{\n"
            f"    type filter hook prerouting priority raw; policy accept;\n"
            f"    meta l4proto {{ udp, tcp }} counter name seen\n"
            f"    meta l4proto {{ udp, tcp }} {drop}\n"
            f"  }}\n}}\n"
        )
        for ns in (self.ns_a, self.ns_b):
            self.exec(ns, ["nft", f"destroy table inet {_TABLE}"], check=False)
            self.exec(ns, ["nft", f"delete table inet {_TABLE}"], check=False)
            proc = subprocess.run(
                [*self.prefix(ns), "nft", "-f", "-"], input=ruleset, text=True, capture_output=True, timeout=15
            )
            if proc.returncode != 0:
                raise RuntimeError(f"nft in {ns} refused the ruleset: {proc.stderr.strip()}")
        self.loss_percent = percent

    def counters(self) -> dict[str, int]:
        """Packets seen and dropped on arrival, summed over both namespaces since the last ``set_loss``."""
        total = {"seen": 0, "dropped": 0}
        for ns in (self.ns_a, self.ns_b):
            text = self.exec(ns, ["nft", "list", "counters", "table", "inet", _TABLE]).stdout
            for name in total:
                match = re.search(r"counter " + name + r" \{\s*packets (\d+)", text)
                if match:
                    total[name] += int(match.group(1))
        return total

    def reset_counters(self) -> None:
        for ns in (self.ns_a, self.ns_b):
            self.exec(ns, ["nft", "reset", "counters", "table", "inet", _TABLE], check=False)

    def check_segmentation(self, segments: int = 8, size: int = 1200) -> tuple[bool, str]:
        """Send one UDP_SEGMENT write of ``segments`` datagrams from a to b; True if b counted that many packets.

        Proves the drop rule sees wire datagrams, not GSO super-packets (the rule's granularity)."""
        self.set_loss(0)
        probe = (
            "import socket,sys\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"s.setsockopt(socket.SOL_UDP,103,{size})\n"
            f"s.sendto(bytes({size * segments}),('{ADDR_B}',9))\n"
        )
        proc = self.exec(self.ns_a, [sys.executable, "-c", probe], check=False)
        if proc.returncode != 0:
            return False, f"UDP_SEGMENT probe could not send: {proc.stderr.strip().splitlines()[-1:]}"
        seen = self.counters()["seen"]
        ok = seen == segments
        return ok, f"one UDP_SEGMENT write of {segments} x {size} B arrived as {seen} packet(s)"


def _self_test() -> None:  # pragma: no cover - manual check: python tools/benchlib/netlab.py
    remove_stale()
    with Lab() as lab:
        print(lab.check_segmentation(), lab.notes)
        print(socket.gethostname(), lab.ns_a, lab.ns_b)


if __name__ == "__main__":
    _self_test()
