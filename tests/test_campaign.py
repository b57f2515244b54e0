"""The simulation campaign: thousands of seeded random transfers through hostile virtual paths.

Each seed is one scenario from ``tools/campaign.py`` (direction, size, both configurations, go-back-N or
selective repeat, loss up to 50 % with bursts, duplication, reordering, delay, jitter, sometimes corruption, and
a peer that dies at a random moment in a third of them).  ``check`` asserts that every run ends, that every side
still alive ends with an outcome, that a survivor gives up within its retry budget in virtual time, and, when no
datagram was corrupted, that the receiver only ever holds a prefix of the file, holds exactly the file when it
reports complete, and that a sender reporting complete means the receiver completed too.

Corruption: TFTP has no end-to-end digest; rudp's sha256 option (spec 7.7) is one, and the simulator checks it
as the driver does.  So in scenarios with corruption a receiver that negotiated sha256 and reports complete must
hold exactly the file; otherwise only "no crash, no hang, an outcome for everyone" is asserted (see the module doc
of tools/campaign.py).

A failure prints the seed and a one-line reproduction: ``python tools/campaign.py --seed N -v``.
"""

from __future__ import annotations

import pytest
from toolscripts import load_tool

from rudp.core.config import TransferConfig
from rudp.impair.model import Impairment
from rudp.sim.engine import SimConfig, _file, _Run, simulate

campaign = load_tool("campaign")

SCENARIOS = 5000
SLICES = 10


@pytest.mark.parametrize("part", range(SLICES))
def test_campaign_every_scenario_ends_cleanly(part: int) -> None:
    size = SCENARIOS // SLICES
    failures = []
    for seed in range(part * size, (part + 1) * size):
        _, problems, _ = campaign.run_seed(seed)
        if problems:
            failures.append(f"seed {seed}: {'; '.join(problems)} (reproduce: {campaign.reproduce(seed)})")
    print(f"campaign seeds {part * size}..{(part + 1) * size - 1}: {len(failures)} failing")
    assert not failures, "\n".join(failures)


def test_the_campaign_covers_what_it_claims() -> None:
    """The scenario mix really has heavy loss, corruption, peer deaths, both directions, both recovery modes."""
    configs = [campaign.scenario(seed) for seed in range(SCENARIOS)]
    assert max(max(c.up.loss, c.down.loss) for c in configs) > 0.45
    assert sum(c.up.burst is not None for c in configs) > SCENARIOS // 10
    assert sum(c.up.corrupt > 0 for c in configs) > SCENARIOS // 20
    assert {c.dies for c in configs} == {None, "client", "server"}
    assert {c.direction for c in configs} == {"upload", "download"}
    assert {c.client.selective for c in configs} == {True, False}
    assert {c.client.windowsize for c in configs} >= {1, 16}
    assert campaign.scenario(7) == campaign.scenario(7)  # a seed is a scenario


@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.parametrize("direction", ["upload", "download"])
def test_a_dead_peer_hears_and_says_nothing_and_the_survivor_gives_up_in_budget(side: str, direction: str) -> None:
    config = SimConfig(
        size=50_000,
        direction=direction,
        client=TransferConfig(blksize=512, windowsize=4, timeout=1.0, retries=3),
        server=TransferConfig(blksize=512, windowsize=4, timeout=1.0, retries=3),
        up=Impairment(delay=0.01),
        down=Impairment(delay=0.01),
        dies=side,
        dies_at=0.1,
    )
    result = simulate(config)
    survivor = "server" if side == "client" else "client"
    assert getattr(result, f"{side}_outcome") is None  # it died before finishing
    assert getattr(result, f"{survivor}_outcome") == "timed-out"
    assert not result.ok and 0 < result.received < 50_000
    assert config.dies_at + 3.0 <= result.sim_time <= config.dies_at + campaign.budget(config)


def test_a_server_dead_from_the_start_leaves_the_client_timing_out() -> None:
    config = SimConfig(size=1000, dies="server", dies_at=0.0, client=TransferConfig(timeout=1.0, retries=2))
    result = simulate(config)
    assert result.client_outcome == "timed-out" and result.server_outcomes == () and result.received == 0


def test_peer_death_is_validated() -> None:
    with pytest.raises(ValueError, match="dies"):
        SimConfig(dies="router")
    with pytest.raises(ValueError, match="dies_at"):
        SimConfig(dies="client", dies_at=-1.0)


def test_check_catches_a_wrong_file_reported_complete() -> None:
    """The checker itself: a receiver that reports complete with other bytes is a failure."""
    config = SimConfig(size=100, seed=1, direction="upload")
    result = simulate(config)
    assert result.ok
    data = _file(100, 1)
    assert campaign.check(config, result, data, data) == []
    assert campaign.check(config, result, data, data[:50] + b"x" * 50)
    assert campaign.check(config, result, data, data + data[:1])


def test_check_catches_a_damaged_file_kept_despite_sha256() -> None:
    config = SimConfig(size=100, seed=1, direction="upload", up=Impairment(corrupt=0.01))
    result = simulate(config)
    data = _file(100, 1)
    damaged = data[:50] + b"x" * 50
    assert campaign.check(config, result, data, damaged, verified=False) == []  # TFTP alone cannot tell
    if result.server_outcome == "complete":
        assert campaign.check(config, result, data, damaged, verified=True)


@pytest.mark.parametrize(("algorithm", "trailer"), [("xxh128", True), ("sha256", True), ("xxh128", False)])
def test_with_corruption_a_verified_receiver_never_keeps_a_damaged_file(algorithm: str, trailer: bool) -> None:
    # A digest option at work in the simulator, after the data (the session checks it) or in the request (the
    # simulator checks it as the driver's sink does): heavy corruption, many seeds; corrupted DATA certainly gets
    # through to the session, yet no receiver that negotiated a digest completes with other bytes.
    damaged_runs = kept = 0
    digest = {"digest_algorithm": algorithm, "digest_trailer": trailer}
    for seed in range(60):
        for direction in ("upload", "download"):
            path = Impairment(corrupt=0.05, delay=0.002)
            config = SimConfig(
                size=20_000,
                seed=seed,
                direction=direction,
                client=TransferConfig(blksize=512, windowsize=8, timeout=0.5, retries=4, **digest),
                server=TransferConfig(blksize=512, windowsize=8, timeout=0.5, retries=4),
                up=path,
                down=path,
            )
            run = _Run(config, None)
            result = run.run()
            if run.expected_digest is None:
                continue
            assert run.expected_digest.algorithm == algorithm
            if bytes(run.received) != _file(20_000, seed):
                damaged_runs += 1
                receiver = result.server_outcome if direction == "upload" else result.client_outcome
                kept += receiver == "complete"  # it would have renamed the damaged file into place
    print(f"corrupted runs under {algorithm} (trailer {trailer}): {damaged_runs}, kept damaged: {kept}")
    assert damaged_runs > 10 and kept == 0
