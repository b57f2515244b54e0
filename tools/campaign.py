#!/usr/bin/env python3
"""A seeded random simulation campaign: many small transfers through hostile virtual paths.

Each seed picks one scenario (direction, file size, both ends' configurations, go-back-N or selective repeat,
loss up to 50 % with or without bursts, duplication, reordering, delay and jitter, sometimes corruption, and
sometimes a peer that dies at a random moment) and runs it in ``rudp.sim``.  ``check`` then states what must
hold whatever happened:

* the simulation ends (no step or virtual-time overrun, no exception out of a session);
* every side still alive ends with an outcome: ``complete`` or a clean failure, never stuck without a timer;
* nobody gives up late: after a peer dies the survivor ends within its retry budget (virtual time);
* without corruption: the receiver never holds bytes that are not a prefix of the file, a receiver that
  reports ``complete`` holds exactly the file, and a sender that reports ``complete`` means the receiver did too.

Corruption: TFTP has no end-to-end digest, so a payload with flipped bits is accepted as data (RFC 1350 relies
on the UDP checksum).  Between rudp peers the digest option (spec 7.7) closes that gap, and the simulator checks
it as the driver does: in scenarios with corruption, a receiver that negotiated a digest and reports ``complete``
must hold exactly the file.  One that did not (a request whose option names were damaged in transit, or options
off) is checked only for the first three properties.

Usage::

    python tools/campaign.py --scenarios 100000 --jobs 2       # the long campaign
    python tools/campaign.py --seed 1234 -v                     # one scenario, described
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import random
import sys
import time
from dataclasses import asdict

from rudp.core.config import TransferConfig
from rudp.core.digests import DIGESTS
from rudp.core.rtt import INITIAL_RTO
from rudp.impair.model import Impairment
from rudp.sim import engine
from rudp.sim.engine import SimConfig, SimResult

__all__ = ["scenario", "budget", "check", "run_seed", "main"]

_BLKSIZES = (8, 64, 512, 1024, 1468)
_WINDOWS = (1, 1, 2, 4, 8, 16)


def _impairment(rng: random.Random, corrupt: bool) -> Impairment:
    burst = None
    if rng.random() < 0.25:
        burst = (rng.uniform(0.01, 0.2), rng.uniform(0.2, 0.8))
    return Impairment(
        loss=rng.choice((0.0, rng.uniform(0, 0.2), rng.uniform(0, 0.5))),
        burst=burst,
        dup=rng.choice((0.0, rng.uniform(0, 0.2))),
        reorder=rng.choice((0.0, rng.uniform(0, 0.3))),
        reorder_gap=rng.uniform(0.001, 0.05),
        delay=rng.choice((0.0, rng.uniform(0, 0.1))),
        jitter=rng.choice((0.0, rng.uniform(0, 0.02))),
        corrupt=rng.uniform(0, 0.1) if corrupt else 0.0,
    )


def _transfer_config(rng: random.Random) -> TransferConfig:
    return TransferConfig(
        blksize=rng.choice(_BLKSIZES),
        windowsize=rng.choice(_WINDOWS),
        timeout=rng.choice((0.5, 1.0, 2.0)),
        fixed_timeout=rng.random() < 0.3,
        retries=rng.choice((1, 2, 3, 5)),
        options=rng.random() < 0.9,
        selective=rng.random() < 0.5,
        congestion=rng.choice(("delay", "none")),
        digest_algorithm=rng.choice(sorted(DIGESTS)),
        digest_trailer=rng.random() < 0.7,  # where the digest travels: after the data, or in the request
    )


def scenario(seed: int) -> SimConfig:
    """The scenario of ``seed``: a pure function of it."""
    rng = random.Random(f"rudp-campaign:{seed}")
    corrupt = rng.random() < 0.1
    client = _transfer_config(rng)
    size = rng.choice((0, 1, client.blksize, client.blksize * 3, rng.randrange(0, 6000)))
    dies = rng.choice((None, None, "client", "server"))
    return SimConfig(
        size=size,
        direction=rng.choice(("upload", "download")),
        client=client,
        server=_transfer_config(rng),
        up=_impairment(rng, corrupt),
        down=_impairment(rng, corrupt),
        seed=seed,
        dies=dies,
        dies_at=rng.uniform(0, 3.0) if dies else 0.0,
    )


def budget(config: SimConfig) -> float:
    """Virtual seconds a session may wait without progress before it must have given up, plus a receiver's
    dally and the time a datagram already sent may still spend on the path: the retry budget of
    ``rudp.core.session`` (backed-off short waits, then ``retries + 1`` full timeouts), for the slower end."""
    timeout = max(config.client.timeout, config.server.timeout)
    min_rto = min(config.client.min_rto, config.server.min_rto)
    doublings = math.ceil(math.log2(max(timeout / min(min_rto, INITIAL_RTO), 1))) + 1
    retries = max(config.client.retries, config.server.retries)
    path = max(p.delay + p.jitter + p.reorder_gap for p in (config.up, config.down))
    return (doublings + retries + 1) * timeout + 2 * timeout + 2 * path + 1e-6


def check(config: SimConfig, result: SimResult, data: bytes, received: bytes, verified: bool = False) -> list[str]:
    """What went wrong in one run (empty: nothing).  ``verified``: the receiver negotiated a digest option."""
    problems = []
    corrupt = config.up.corrupt > 0 or config.down.corrupt > 0
    upload = config.direction == "upload"
    receiver, sender = ("server", "client") if upload else ("client", "server")
    outcomes = {"client": result.client_outcome, "server": result.server_outcome}
    if outcomes["client"] is None and config.dies != "client":
        problems.append("the client ended without an outcome (stuck)")
    if config.dies != "server":  # no server session at all: no request ever arrived
        for number, outcome in enumerate(result.server_outcomes, 1):
            if outcome is None:
                problems.append(f"server session {number} ended without an outcome (stuck)")
    if config.dies is not None and result.sim_time - config.dies_at > budget(config):
        problems.append(
            f"the survivor took {result.sim_time - config.dies_at:.3f} s after the {config.dies} died "
            f"(budget {budget(config):.3f} s)"
        )
    if not corrupt:
        if not data.startswith(received):
            problems.append(f"the receiver holds {len(received)} bytes that are not a prefix of the file")
        if outcomes[receiver] == "complete" and received != data:
            problems.append(
                f"the receiver reported complete with {len(received)} of {len(data)} bytes, or wrong ones"
            )
        if outcomes[sender] == "complete" and outcomes[receiver] != "complete" and config.dies != receiver:
            problems.append(f"the sender reported complete but the receiver ended {outcomes[receiver]}")
    elif verified and outcomes[receiver] == "complete" and received != data:
        # With a digest option (spec 7.7) a damaged file is never kept, corruption or not.
        kept = f"{len(received)} of {len(data)} bytes"
        problems.append(f"the receiver kept a damaged file ({kept}) despite its digest")
    return problems


def run_seed(seed: int) -> tuple[int, list[str], str]:
    """Run one scenario; (seed, problems, outcome).  An exception is a problem too."""
    config = scenario(seed)
    data = engine._file(config.size, config.seed)  # the file, exactly as the engine makes it
    received = bytearray()
    try:
        run = engine._Run(config, None)  # not simulate(): the bytes received are checked too
        result = run.run()
        received = run.received
        verified = run.expected_digest is not None
    except Exception as exc:  # noqa: BLE001 - any escape is a finding, reported with its seed
        return seed, [f"{type(exc).__name__}: {exc}"], "exception"
    return seed, check(config, result, data, bytes(received), verified), result.outcome.split(":")[0]


def reproduce(seed: int) -> str:
    return f"python tools/campaign.py --seed {seed} -v"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", type=int, default=10_000, help="how many seeds (default 10000)")
    parser.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--seed", type=int, help="run this one seed only")
    parser.add_argument("--jobs", type=int, default=multiprocessing.cpu_count(), help="worker processes")
    parser.add_argument("-v", "--verbose", action="store_true", help="describe each scenario run")
    args = parser.parse_args(argv)
    if args.seed is not None:
        seeds = range(args.seed, args.seed + 1)
    else:
        seeds = range(args.start, args.start + args.scenarios)
    started = time.monotonic()
    outcomes: dict[str, int] = {}
    failures = 0
    with multiprocessing.Pool(max(1, args.jobs)) as pool:
        for seed, problems, outcome in pool.imap_unordered(run_seed, seeds, chunksize=64):
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if args.verbose:
                print(f"seed {seed}: {outcome}; {asdict(scenario(seed))}")
            if problems:
                failures += 1
                print(f"FAIL seed {seed}: {'; '.join(problems)}\n  reproduce: {reproduce(seed)}", flush=True)
    elapsed = time.monotonic() - started
    summary = ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items()))
    print(f"{len(seeds)} scenarios in {elapsed:.1f} s ({args.jobs} jobs): {failures} failing; outcomes: {summary}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
