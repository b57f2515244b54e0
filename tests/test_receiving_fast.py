"""The receiving session's fast path (``ReceivingSession._next_in_order``) changes nothing but speed.

Two copies of the same receiving session, one with the fast path and one forced down the general path
(decode, dispatch, ``_on_data_selective``), are fed the same seeded random traffic: in-order blocks, losses,
late and duplicated blocks, blocks beyond the window, oversized blocks, strangers' datagrams, the final block,
timer expiries.  After every step both must have queued the same datagrams, emitted the same events, counted
the same statistics and armed the same timer.  The test also checks that the fast path took most blocks, so
it cannot pass by never running.  The seed is in each test's id.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from rudp.core.client import ReadClient
from rudp.core.config import TransferConfig
from rudp.core.digests import TRAILER, new_hash
from rudp.core.events import DataReceived
from rudp.core.receiving import ReceivingSession
from rudp.core.server import WriteServer
from rudp.wire.codec import decode, encode, encode_data
from rudp.wire.packets import OptionAck, ReadRequest, WriteRequest

CLIENT = ("198.18.0.1", 4000)
SERVER = ("198.18.0.2", 69)
SERVER_TID = ("198.18.0.2", 5000)
STRANGER = ("198.18.0.3", 4000)
_WIRE = 0x10000


def _options(blksize: int, windowsize: int, trailer: bool, max_size: int | None) -> tuple[tuple[str, str], ...]:
    options = [("blksize", str(blksize)), ("windowsize", str(windowsize)), ("sack", "1")]
    if trailer:
        options.append(("xxh128", TRAILER))
    if max_size is not None:
        options.append(("tsize", "0"))
    return tuple(options)


class Pair:
    """The same receiving session twice: ``fast`` as shipped, ``slow`` with the fast path switched off."""

    def __init__(self, role: str, rng: random.Random, *, blocks: int | None = None) -> None:
        self.rng = rng
        self.blksize = rng.choice([8, 16, 33, 512])
        self.windowsize = rng.choice([2, 4, 8, 16, 64])
        trailer = rng.random() < 0.7  # the digest follows the data (spec 7.7), or no digest at all
        if blocks:
            size = blocks * self.blksize + rng.randrange(self.blksize)
        else:
            size = rng.randrange(0, 120 * self.blksize)
        body = (bytes(rng.getrandbits(8) for _ in range(4096)) * (size // 4096 + 1))[:size]
        if trailer:
            digest = new_hash("xxh128")
            digest.update(body)
            body += digest.hexdigest().encode()
            if rng.random() < 0.1:  # damaged in transit: the trailer check fails at the end
                body = body[:-1] + (b"0" if body[-1:] != b"0" else b"1")
        self.stream = body
        self.final = len(body) // self.blksize + 1  # the short (possibly empty) block that ends the stream
        max_size = None if blocks else rng.choice([None, None, None, size // 2 + 1])  # the size limit (ERROR 3)
        config = TransferConfig(
            blksize=self.blksize, windowsize=self.windowsize, dally=0.5, max_size=max_size, digest=trailer
        )
        self.role = role
        self.sessions: list[ReceivingSession] = []
        for _ in range(2):
            if role == "WriteServer":
                request = WriteRequest("f", "octet", _options(self.blksize, self.windowsize, trailer, None))
                session: ReceivingSession = WriteServer(request, CLIENT, config, now=0.0)
            else:
                session = ReadClient("f", SERVER, config, now=0.0)
            self.sessions.append(session)
        self.fast, self.slow = self.sessions
        self.fast_taken = 0
        original = self.fast._next_in_order

        def counting(datagram: bytes, addr: Any, now: float) -> bool:
            taken = original(datagram, addr, now)
            self.fast_taken += taken
            return taken

        self.fast._next_in_order = counting  # type: ignore[method-assign]
        self.slow._next_in_order = lambda datagram, addr, now: False  # type: ignore[method-assign]
        self.peer = CLIENT if role == "WriteServer" else SERVER_TID
        self.now = 0.0
        first = self.check()
        if role == "ReadClient":  # the server grants every option the request asked for
            request = decode(first["sent"][0][0])
            assert isinstance(request, ReadRequest)
            granted = tuple((name, str(size) if name == "tsize" else value) for name, value in request.options)
            self.feed(encode(OptionAck(granted)), SERVER_TID)

    def block(self, n: int, *, extra: int = 0) -> bytes:
        payload = self.stream[(n - 1) * self.blksize : n * self.blksize]
        return encode_data(n % _WIRE, payload + b"x" * extra)

    def feed(self, datagram: bytes, addr: Any) -> None:
        self.now += self.rng.choice([0.0, 1e-6, 1e-5, 1e-4, 1e-3])
        for session in self.sessions:
            session.receive_datagram(datagram, addr, now=self.now)
        self.check()

    def fire(self) -> None:
        deadline = self.fast.get_timer()
        if deadline is None:
            return
        self.now = max(self.now, deadline) + self.rng.choice([0.0, 1e-6])
        for session in self.sessions:
            session.handle_timer(now=self.now)
        self.check()

    def check(self) -> dict[str, Any]:
        fast, slow = (self._observe(s) for s in self.sessions)
        assert fast == slow
        return fast

    @staticmethod
    def _observe(session: ReceivingSession) -> dict[str, Any]:
        events = []
        while (event := session.next_event()) is not None:
            events.append(("data", bytes(event.data)) if isinstance(event, DataReceived) else event)
        return {
            "sent": session.datagrams_to_send(),
            "events": events,
            "timer": session.get_timer(),
            "state": session.state,
            "stats": session.stats.as_dict(),
            "received": session.bytes_received,
        }


def run_traffic(pair: Pair, steps: int) -> None:
    """A sender that loses, repeats, delays and reorders blocks, meets strangers and, in one case in five, sends
    a block the receiver must refuse (which ends the transfer)."""
    rng = pair.rng
    nxt = 1  # the next new block the simulated sender would send
    lost: set[int] = set()
    fatal = rng.random() < 0.2
    for _ in range(steps):
        if pair.fast.closed:
            return
        roll = rng.random()
        last = min(nxt, pair.final)
        room = nxt <= pair.final and nxt < min(lost, default=nxt) + pair.windowsize  # the sender's window
        if roll < 0.60 and room:
            pair.feed(pair.block(nxt), pair.peer)
            nxt += 1
        elif roll < 0.66 and room:
            lost.add(nxt)  # lost on the way
            nxt += 1
        elif roll < 0.74 and lost:  # the sender resends the oldest lost block (a SACK or its timer told it)
            first = min(lost)
            lost.discard(first)
            pair.feed(pair.block(first), pair.peer)
        elif roll < 0.80:  # late or duplicated: any block the sender has sent
            pair.feed(pair.block(rng.randrange(max(1, last - 2 * pair.windowsize), last + 1)), pair.peer)
        elif roll < 0.82:  # beyond the window: nonsense from this sender
            beyond = last + rng.randrange(pair.windowsize, 3 * pair.windowsize)
            if beyond < pair.final:
                pair.feed(pair.block(beyond), pair.peer)
        elif roll < 0.85:
            pair.feed(pair.block(last), STRANGER)  # another TID
        elif roll < 0.87:
            pair.feed(pair.block(last), (pair.peer[0], pair.peer[1] + 1))
        elif roll < 0.88 and fatal:  # more than blksize: a protocol error
            pair.feed(pair.block(max(1, last - 1), extra=rng.randrange(1, 40)), pair.peer)
        elif roll < 0.89 and fatal:  # a stray short DATA: a second "final" block, or garbage for the digest
            pair.feed(b"\x00\x03" + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 6))), pair.peer)
        elif roll < 0.92:
            pair.fire()
            if lost:  # the sender's timer too
                pair.feed(pair.block(min(lost)), pair.peer)
    while not pair.fast.closed and pair.fast.get_timer() is not None:  # let it end: timeouts, dally
        pair.fire()


@pytest.mark.parametrize("role", ["WriteServer", "ReadClient"])
@pytest.mark.parametrize("seed", range(60))
def test_fast_path_matches_the_general_path(role: str, seed: int) -> None:
    print(f"seed {seed}")
    pair = Pair(role, random.Random(f"{role}-{seed}"))
    run_traffic(pair, steps=600)


@pytest.mark.parametrize("role", ["WriteServer", "ReadClient"])
def test_fast_path_takes_a_clean_transfer_across_the_rollover(role: str) -> None:
    """Block numbers wrap at 65536 (the rollover): the fast path must know block 65536 arrives as 0."""
    rng = random.Random(f"rollover-{role}")
    blocks = 65536 + 40
    pair = Pair(role, rng, blocks=blocks)
    for n in range(1, pair.final + 1):
        pair.feed(pair.block(n), pair.peer)
    assert pair.fast.finished and pair.slow.finished
    assert pair.fast.outcome == pair.slow.outcome
    assert pair.fast_taken >= blocks - 1  # all but the last, short block (and block 1 for a client)


def test_fast_path_does_most_of_the_work() -> None:
    """Guard against a vacuous pass: across the random cases the fast path takes a good share of the blocks."""
    taken = total = 0
    for seed in range(20):
        pair = Pair("WriteServer", random.Random(f"share-{seed}"))
        run_traffic(pair, steps=400)
        taken += pair.fast_taken
        total += pair.fast.stats.blocks
    print(f"fast path took {taken} of {total} in-order blocks")
    assert total > 0 and taken >= total // 3
