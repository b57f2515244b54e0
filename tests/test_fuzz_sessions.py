"""Stateful fuzzing of the four sessions: any datagram sequence and any timer firing, no crash, invariants hold.

Each case is a seeded random sequence (the seed is in the test id and printed on failure).  A fake peer drives
one real session (``ReadClient``, ``WriteClient``, ``ReadServer`` or ``WriteServer``) with the driver's ritual
(feed, drain events, transmit, re-arm), choosing at each step among:

* a valid packet of any kind (RRQ, WRQ, DATA, ACK, SACK, OACK, ERROR) with block numbers near the transfer's
  position or anywhere in 0..65535, and options drawn from real, extreme and garbage values;
* garbage bytes and mutated packets;
* the right TID, another port on the peer's host, another host;
* the timer firing at its deadline (or later), a premature ``handle_timer``, time passing.

The fake peer is honest about file contents: any DATA it sends from the peer's TID carries the true bytes of
that block for the blksize in force (or the true bytes plus extra, which must be refused).  So whatever the
session does, these must hold after every step:

* no exception escapes (only the documented ``RequestRefused`` from a server session's constructor);
* a receiver delivers a prefix of the file: never out of order, never twice, never a stranger's bytes;
* a sender only sends the true bytes of each block and never has a block in flight outside its window
  ``base .. base + windowsize - 1``;
* a session that has closed stays closed and sends nothing more;
* at most one terminal event;
* every queued datagram decodes, and anything sent anywhere but the peer is an ERROR 5 (or a client's request
  to the server's well-known port): a session is no reflector;
* ``get_timer()`` is never in the past right after ``handle_timer(now)``.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from rudp.core.client import ReadClient, WriteClient
from rudp.core.config import TransferConfig
from rudp.core.digests import TRAILER, new_hash
from rudp.core.events import TransferComplete, TransferFailed
from rudp.core.server import ReadServer, RequestRefused, WriteServer
from rudp.core.session import Session, State
from rudp.wire.codec import decode, encode
from rudp.wire.packets import (
    DEFAULT_BLKSIZE,
    MAX_BLKSIZE,
    Ack,
    Data,
    Error,
    ErrorCode,
    OptionAck,
    ReadRequest,
    SelectiveAck,
    WriteRequest,
)

CLIENT = ("10.0.0.1", 4000)
SERVER = ("10.0.0.2", 69)
SERVER_TID = ("10.0.0.2", 5000)
ROLES = ("ReadClient", "WriteClient", "ReadServer", "WriteServer")
SEEDS = 300  # per role
STEPS = 150
_WIRE = 0x10000
KINDS = ("data", "ack", "answer", "sack", "oack", "error", "rrq", "wrq", "garbage")
WEIGHTS = (10, 8, 3, 3, 1, 0.4, 0.5, 0.5, 3)  # an ERROR from the peer ends the transfer: rarely, to get far

OPTION_VALUES = {
    "blksize": ["8", "512", "1428", "65464", "7", "65465", "0", "-1", "abc", "99999999999999999999"],
    "windowsize": ["1", "4", "16", "65535", "0", "65536", "x"],
    "tsize": ["0", "100", "5000", "18446744073709551616", "-5", "nope"],
    "timeout": ["1", "5", "255", "0", "256", "1.5"],
    "sack": ["1", "0", "yes"],
    "sha256": ["0", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "z" * 64, "", "trailer"],
    "xxh128": ["0", "trailer", "99aa06d3014798d86001c324468d497f", "z" * 32, "", "TRAILER"],
}


def random_options(rng: random.Random) -> tuple[tuple[str, str], ...]:
    options = []
    for _ in range(rng.randrange(0, 5)):
        name = rng.choice([*OPTION_VALUES, "BLKSIZE", "unknown", ""])
        values = OPTION_VALUES.get(name.lower(), ["1", "", "\xff"])
        options.append((name, rng.choice(values)))
    return tuple(options)


def good_options(rng: random.Random) -> tuple[tuple[str, str], ...]:
    """What a real rudp peer asks for: a blksize, a window, sometimes selective repeat."""
    options = [("blksize", rng.choice(["8", "512", "1428"])), ("windowsize", rng.choice(["2", "4", "8"]))]
    if rng.random() < 0.5:
        options.append(("sack", "1"))
    return tuple(options)


def random_config(rng: random.Random) -> TransferConfig:
    return TransferConfig(
        blksize=rng.choice([8, 512, 1428]),
        windowsize=rng.choice([1, 2, 4, 16]),
        timeout=rng.choice([0.5, 1.0, 5.0]),
        fixed_timeout=rng.random() < 0.3,
        retries=rng.choice([0, 1, 3]),
        options=rng.random() < 0.9,
        selective=rng.random() < 0.5,
        mode="octet",
    )


class Fuzz:
    """One session, its fake peer and the invariants' bookkeeping."""

    def __init__(self, role: str, seed: int) -> None:
        self.rng = rng = random.Random(f"fuzz-sessions:{role}:{seed}")
        self.role = role
        self.file = rng.randbytes(rng.choice([0, 1, 7, 8, 511, 512, 513, rng.randrange(0, 6000)]))
        self.now = 0.0
        self.delivered = bytearray()
        self.offset = 0
        self.eof = False
        self.terminal = 0
        self.closed_seen = False
        self.peer_tid = SERVER_TID if role in ("ReadClient", "WriteClient") else CLIENT
        config = random_config(rng)
        if role == "ReadClient":
            self.session: Session = ReadClient("f", SERVER, config, now=0.0)
        elif role == "WriteClient":
            self.session = WriteClient("f", SERVER, config, tsize=len(self.file), now=0.0)
        elif role == "ReadServer":
            options = good_options(rng) if rng.random() < 0.5 else random_options(rng)
            request = ReadRequest("f", rng.choice(["octet", "OCTET"]), options)
            self.session = ReadServer(request, CLIENT, config, file_size=len(self.file), now=0.0)
        else:
            options = good_options(rng) if rng.random() < 0.5 else random_options(rng)
            request = WriteRequest("f", "octet", options)
            self.session = WriteServer(request, CLIENT, config, now=0.0)
        self.sending = role in ("WriteClient", "ReadServer")
        # Half the sequences come from a mostly cooperative peer (so transfers get far, often to the end), half
        # from a hostile one (errors, garbage, strangers, timer firings).
        self.hostility = rng.choice([0.02, 1.0])
        self.weights = [
            w if k in ("data", "ack", "answer") else w * self.hostility
            for k, w in zip(KINDS, WEIGHTS, strict=True)
        ]
        self.requested: tuple[tuple[str, str], ...] | None = None  # a client's request options, once seen
        self.highest_data = 0  # highest DATA block the session sent (a sender) or that it delivered (a receiver)
        self.after_step()

    # ----------------------------------------------------------------- the fake peer's datagrams
    def blksize(self) -> int:
        negotiated = self.session.negotiated
        return negotiated.blksize if negotiated is not None else DEFAULT_BLKSIZE

    def stream(self) -> bytes:
        """The DATA stream: the file, then its digest if ``trailer`` was agreed (spec 7.7)."""
        negotiated = self.session.negotiated
        digest = negotiated.digest if negotiated is not None else None
        if digest is None or digest.value != TRAILER:
            return self.file
        hashed = new_hash(digest.algorithm)
        hashed.update(self.file)
        return self.file + hashed.hexdigest().encode("ascii")

    def content(self, block: int) -> bytes:
        size = self.blksize()
        return self.stream()[(block - 1) * size : block * size] if block >= 1 else b""

    def near_block(self) -> int:
        rng = self.rng
        if rng.random() < 0.1:
            return rng.randrange(_WIRE)
        base = len(self.delivered) // self.blksize() if not self.sending else self.highest_data
        return max(0, base + rng.randint(-3, 18)) % _WIRE

    def packet(self) -> bytes:
        rng = self.rng
        kind = rng.choices(KINDS, weights=self.weights)[0]
        if kind == "data":
            block = self.near_block()
            payload = self.content(block)
            too_long = self.blksize() + rng.randint(1, 8)
            if rng.random() < 0.05 and too_long <= MAX_BLKSIZE:
                payload = b"!" * too_long  # longer than blksize: must be refused, never delivered
            return encode(Data(block, payload))
        if kind == "ack":
            if self.sending and rng.random() < 0.7:  # acknowledge something sent, as a real receiver does
                return encode(Ack(max(0, self.highest_data - rng.randint(0, 2))))
            return encode(Ack(self.near_block()))
        if kind == "sack":
            return encode(SelectiveAck(self.near_block(), rng.randbytes(rng.randrange(0, 6))))
        if kind == "oack":
            return encode(OptionAck(random_options(self.rng)))
        if kind == "answer" and self.requested is not None:  # a cooperative server grants what was asked
            granted = [(k, str(len(self.file)) if k == "tsize" else v) for k, v in self.requested if k != "sha256"]
            return encode(OptionAck(tuple(granted)))
        if kind == "error":
            return encode(Error(rng.choice([0, 1, 2, 3, 5, 8, 0xFFFF]), rng.choice(["", "boom", "x" * 300])))
        if kind in ("rrq", "wrq"):
            cls = ReadRequest if kind == "rrq" else WriteRequest
            return encode(cls("f", "octet", random_options(self.rng)))
        data = bytearray(rng.randbytes(rng.randrange(0, 40)))
        if data and rng.random() < 0.5:
            data[:2] = rng.choice([b"\x00\x03", b"\x00\x04", b"\x00\x06", b"\x01\x00"])[: len(data)]
        return bytes(data)

    def source(self) -> tuple[Any, ...]:
        roll = self.rng.random()
        if roll < 1 - 0.2 * self.hostility:
            return self.peer_tid
        if roll < 0.9:
            return (self.peer_tid[0], self.peer_tid[1] + 1)  # another port on the peer's host
        return ("10.0.0.9", self.peer_tid[1])  # another host

    # ----------------------------------------------------------------- one step
    def step(self) -> None:
        rng = self.rng
        session = self.session
        roll = rng.random()
        if roll < 0.9 - 0.2 * self.hostility:
            datagram, source = self.packet(), self.source()
            # A client takes any port on the server's host as the server's TID until it has heard from one.
            claimable = (
                session.peer is None and self.role in ("ReadClient", "WriteClient") and source[0] == SERVER[0]
            )
            if source != session.peer and not claimable and datagram[:2] == b"\x00\x03":
                datagram = datagram[:4] + b"stranger's bytes"[: len(datagram) - 4]
            self.now += rng.choice([0.0, 0.0001, 0.01])
            session.receive_datagram(datagram, source, now=self.now)
        elif roll < 0.9:
            deadline = session.get_timer()
            self.now = max(self.now, deadline) + rng.choice([0.0, 0.0, 0.5]) if deadline is not None else self.now
            session.handle_timer(now=self.now)
            after = session.get_timer()
            assert after is None or after >= self.now, (
                f"timer {after} in the past right after handle_timer({self.now})"
            )
        elif roll < 0.95:
            session.handle_timer(now=self.now)  # early: must change nothing harmful
        else:
            self.now += rng.choice([0.001, 0.2, 3.0])
        self.after_step()

    def after_step(self) -> None:
        session = self.session
        was_closed = self.closed_seen
        if self.sending:
            while session.bytes_wanted > 0 and not self.eof:  # type: ignore[attr-defined]
                chunk = self.file[self.offset : self.offset + session.bytes_wanted]  # type: ignore[attr-defined]
                self.offset += len(chunk)
                if chunk:
                    session.feed(chunk, now=self.now)  # type: ignore[attr-defined]
                else:
                    self.eof = True
                    session.feed_eof(now=self.now)  # type: ignore[attr-defined]
        while (event := session.next_event()) is not None:
            data = getattr(event, "data", None)
            if data is not None:
                self.delivered += data
            if isinstance(event, (TransferComplete, TransferFailed)):
                self.terminal += 1
        out = session.datagrams_to_send()
        if was_closed:
            assert not out, f"a closed session sent {out!r}"
            assert session.state is State.CLOSED
        for datagram, addr in out:
            packet = decode(datagram)  # raises if the session queued garbage
            is_request = isinstance(packet, (ReadRequest, WriteRequest))
            to_peer = addr == session.peer or (addr == SERVER and is_request and session.state is State.REQUESTING)
            if not to_peer:
                assert isinstance(packet, Error) and packet.code == ErrorCode.UNKNOWN_TID, (packet, addr)
            if isinstance(packet, Data):
                self.check_data(packet)
            if isinstance(packet, (ReadRequest, WriteRequest)) and self.requested is None:
                self.requested = packet.options
        assert self.terminal <= 1
        assert self.file.startswith(self.delivered), "the receiver delivered bytes out of order, twice or foreign"
        if self.sending and session.negotiated is not None and hasattr(session, "_base"):
            span = getattr(session, "_highest_sent", 0) - session._base + 1  # type: ignore[attr-defined]
            if session.state is State.TRANSFERRING:
                assert span <= session.negotiated.windowsize, f"{span} blocks in flight"
        self.closed_seen = session.state is State.CLOSED
        if session.peer is not None:
            self.peer_tid = session.peer

    def check_data(self, packet: Data) -> None:
        assert self.sending, "a receiver sent DATA"
        assert self.session.negotiated is not None
        block = packet.block if packet.block else _WIRE
        self.highest_data = max(self.highest_data, block)
        assert bytes(packet.data) == self.content(block), f"DATA {packet.block} carries the wrong bytes"
        base = self.session._base  # type: ignore[attr-defined]
        assert block < base + self.session.negotiated.windowsize, f"DATA {block} beyond the window from {base}"


@pytest.mark.parametrize("role", ROLES)
def test_any_datagram_sequence_keeps_the_invariants(role: str) -> None:
    outcomes: dict[str, int] = {}
    for seed in range(SEEDS):
        try:
            fuzz = Fuzz(role, seed)
        except RequestRefused:
            continue  # a server may refuse a request outright (the driver answers it with one ERROR)
        try:
            for _ in range(STEPS):
                fuzz.step()
        except Exception:
            print(f"fuzz-sessions: role {role} seed {seed} failed at virtual time {fuzz.now}")
            raise
        outcome = fuzz.session.outcome
        name = "open" if outcome is None else type(outcome).__name__
        outcomes[name] = outcomes.get(name, 0) + 1
    print(f"fuzz-sessions {role}: {SEEDS} seeds x {STEPS} steps, outcomes {outcomes}")
    # The fuzzer must reach deep: some sequences complete a transfer, some fail.
    assert outcomes.get("TransferComplete", 0) >= SEEDS // 20, outcomes
    assert outcomes.get("TransferFailed", 0) >= SEEDS // 20, outcomes


def test_a_read_client_takes_only_data_1_as_the_answer_to_its_request() -> None:
    """Found by the fuzzer: DATA 0 as the first answer looked like a repeat of the block the request "ACKed", so
    the client sent its request again to the server's well-known port while a transfer was open."""
    client = ReadClient("f", SERVER, TransferConfig(), now=0.0)
    client.datagrams_to_send()
    client.receive_datagram(encode(Data(0, b"x" * 512)), SERVER_TID, now=0.1)
    assert client.datagrams_to_send() == []
    assert client.state is State.REQUESTING
    client.receive_datagram(encode(Data(1, b"hi")), SERVER_TID, now=0.2)
    assert [decode(d) for d, _ in client.datagrams_to_send()] == [Ack(1)]
    assert client.state is State.DALLYING
