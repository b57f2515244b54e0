"""Seeded random networks (loss, duplication, reordering) against the real sessions, in virtual time.

Every seed must end with the exact bytes delivered, or, only if the retry budget ran out, a clean TIMED_OUT on
both... never a wrong file and never a hang.  The seed of every case is in its test id and printed on failure.
"""

from __future__ import annotations

import random

import pytest
from memlink import download, upload

from rudp.core.config import TransferConfig
from rudp.core.events import FailureKind, TransferComplete, TransferFailed

SEEDS = range(60)


def network(seed: int):
    rng = random.Random(seed)
    loss = rng.choice([0.0, 0.01, 0.05, 0.1, 0.2, 0.3])
    dup = rng.choice([0.0, 0.02, 0.1])
    jitter = rng.choice([0.0, 0.002, 0.05])
    return rng, loss, dup, jitter


@pytest.mark.parametrize("direction", [download, upload], ids=["download", "upload"])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_network_delivers_exact_bytes_or_fails_cleanly(seed, direction):
    rng, loss, dup, jitter = network(seed)
    size = rng.choice([0, 1, 511, 512, 4096, 20_000, 100_003])
    blksize = rng.choice([8, 512, 1468])
    windowsize = rng.choice([1, 2, 8, 32])
    data = rng.randbytes(size)
    print(
        f"seed {seed}: size {size} blksize {blksize} windowsize {windowsize} loss {loss} dup {dup} jitter {jitter}"
    )
    config = TransferConfig(blksize=blksize, windowsize=windowsize, timeout=1.0, retries=12)
    link = direction(
        data,
        config,
        server_config=TransferConfig(blksize=65464, windowsize=64, timeout=1.0, retries=12),
        delay=0.01,
        jitter=jitter,
        rng=rng,
        drop=lambda d, p, i: rng.random() < loss,
        dup=lambda d, p, i: rng.random() < dup,
    )
    receiver = link.client if direction is download else link.server
    sender = link.server if direction is download else link.client
    if isinstance(receiver.outcome, TransferComplete):
        assert bytes(link.received) == data
    else:
        assert isinstance(receiver.outcome, TransferFailed), receiver.outcome
        assert receiver.outcome.kind in (FailureKind.TIMED_OUT, FailureKind.PEER_ERROR)
        assert loss >= 0.2, f"failed at only {loss:.0%} loss: {receiver.outcome}"
    assert receiver.closed and (sender is None or sender.closed)
    if isinstance(sender.outcome if sender else None, TransferComplete):
        assert isinstance(receiver.outcome, TransferComplete)  # a sender never believes in a lost transfer
