"""Congestion control: the delay-gated policy alone, and in the simulator against a bottleneck and random loss."""

from __future__ import annotations

import pytest

from rudp.core.config import TransferConfig
from rudp.core.congestion import BETA, INITIAL_WINDOW, MIN_WINDOW, PACING_BURST, DelayGatedAimd, FixedWindow
from rudp.core.rtt import RttEstimator
from rudp.impair.model import Impairment
from rudp.sim.engine import SimConfig, simulate


def rtt_with(min_rtt: float, latest: float) -> RttEstimator:
    rtt = RttEstimator(maximum=5.0)
    rtt.sample(min_rtt)
    rtt.sample(latest)
    return rtt


CLEAR = rtt_with(0.050, 0.051)  # 1 ms over the minimum: no queue
QUEUED = rtt_with(0.050, 0.070)  # 20 ms over: a queue (threshold max(2 ms, 50/8 ms))


def test_slow_start_doubles_then_growth_is_proportional_and_capped():
    cc = DelayGatedAimd(max_window=1000)
    assert cc.window() == INITIAL_WINDOW
    cc.on_acked(blocks=10, now=1.0, rtt=CLEAR)
    assert cc.window() == 20  # one block per block acknowledged
    cc.on_acked(blocks=5, now=1.1, rtt=QUEUED)  # a queue: slow start ends, no growth
    assert cc.window() == 20 and cc.ssthresh == 20
    cc.on_acked(blocks=20, now=1.2, rtt=CLEAR)
    assert cc.window() == 22  # 20 + 20/8: an eighth of the window per round trip
    capped = DelayGatedAimd(max_window=12)
    capped.on_acked(blocks=100, now=1.0, rtt=CLEAR)
    assert capped.window() == 12


def test_loss_with_a_queue_shrinks_once_per_episode_and_random_loss_changes_nothing():
    cc = DelayGatedAimd(max_window=1000)
    cc.on_acked(blocks=90, now=1.0, rtt=CLEAR)  # window 100
    cc.on_lost(sent_tx=50, current_tx=120, now=1.1, rtt=CLEAR)
    assert cc.window() == 100 and cc.random_losses == 1  # no queue: radio loss, not congestion
    cc.on_lost(sent_tx=60, current_tx=130, now=1.2, rtt=QUEUED)
    assert cc.window() == int(100 * BETA) and cc.reductions == 1
    cc.on_lost(sent_tx=125, current_tx=140, now=1.25, rtt=QUEUED)  # sent before the reduction: same episode
    assert cc.window() == 70 and cc.reductions == 1
    cc.on_lost(sent_tx=131, current_tx=150, now=1.3, rtt=QUEUED)  # sent after it: a new episode
    assert cc.window() == 49 and cc.reductions == 2


def test_a_timeout_halves_but_never_below_the_minimum():
    cc = DelayGatedAimd(max_window=1000)
    cc.on_timeout(now=1.0)
    assert cc.window() == 5
    cc.on_timeout(now=2.0)
    assert cc.window() == MIN_WINDOW
    assert FixedWindow(max_window=64).window() == 64


def bottleneck(policy: str) -> SimConfig:
    path = Impairment(delay=0.025, rate=10e6, queue=64)
    return SimConfig(
        size=4 * 1024 * 1024,
        client=TransferConfig(blksize=1468, windowsize=512, timeout=2.0, retries=20, congestion=policy),
        server=TransferConfig(blksize=65464, windowsize=65535, timeout=2.0, retries=20),
        up=path,
        down=path,
        seed=1,
    )


def test_a_rate_limited_bottleneck_with_a_short_queue_is_filled_not_flooded():
    controlled, uncontrolled = simulate(bottleneck("delay")), simulate(bottleneck("none"))
    print(
        f"delay: {controlled.goodput_bps / 1e6:.2f} Mbit/s, {controlled.up['lost_queue']} queue drops; "
        f"none: {uncontrolled.goodput_bps / 1e6:.2f} Mbit/s, {uncontrolled.up['lost_queue']} queue drops"
    )
    assert controlled.ok and uncontrolled.ok
    assert controlled.goodput_bps >= 0.8 * 10e6  # the link kept full...
    assert controlled.up["lost_queue"] <= 0.01 * controlled.up["offered"]  # ...without overflowing its queue
    # The whole window at once floods it: selective repeat still gets the file through, but most of what it
    # sends is thrown away at the bottleneck (and with a larger file it stalls in timeouts).
    assert uncontrolled.up["lost_queue"] > 0.2 * uncontrolled.up["offered"]
    blocks = controlled.client["blocks"]
    assert (
        controlled.client["datagrams_sent"]
        <= 1.01 * blocks + 1
        < 1.5 * blocks
        <= uncontrolled.client["datagrams_sent"]
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_random_loss_alone_does_not_throttle_the_transfer(seed):
    def run(policy: str):
        path = Impairment(delay=0.025, loss=0.02, rate=100e6, queue=1000)
        return simulate(
            SimConfig(
                size=16 * 1024 * 1024,
                client=TransferConfig(blksize=1468, windowsize=2048, timeout=2.0, retries=20, congestion=policy),
                server=TransferConfig(blksize=65464, windowsize=65535, timeout=2.0, retries=20),
                up=path,
                down=path,
                seed=seed,
            )
        )

    controlled, uncontrolled = run("delay"), run("none")
    print(
        f"seed {seed}: delay {controlled.goodput_bps / 1e6:.1f} Mbit/s, none {uncontrolled.goodput_bps / 1e6:.1f}"
    )
    assert controlled.ok and controlled.goodput_bps >= 0.9 * uncontrolled.goodput_bps


def test_pacing_spreads_new_blocks_at_the_rate_in_bursts_of_at_most_ten():
    cc = DelayGatedAimd(max_window=1000)
    assert cc.pacing_rate(rtt=RttEstimator(maximum=5.0)) is None  # no round trip measured: no pacing yet
    rtt = rtt_with(0.1, 0.1)
    assert cc.pacing_rate(rtt=rtt) == pytest.approx(2 * 10 / rtt.srtt)  # slow start: twice the window per RTT
    cc.ssthresh = 5
    assert cc.pacing_rate(rtt=rtt) == pytest.approx(1.25 * 10 / rtt.srtt)


def test_a_paced_sender_leaves_gaps_between_bursts():
    path = Impairment(delay=0.025)
    records: list[dict] = []
    simulate(
        SimConfig(
            size=3 * 1024 * 1024,
            client=TransferConfig(blksize=1468, windowsize=2048, timeout=2.0),
            up=path,
            down=path,
            seed=3,
        ),
        trace=records.append,
    )
    data = [r for r in records if r["event"] == "send" and r["dir"] == "c>s" and r["packet"].startswith("DATA")]
    sends = [r["t"] for r in data]
    instants: dict[float, int] = {}
    for t in sends:
        instants[t] = instants.get(t, 0) + 1
    assert max(instants.values()) <= PACING_BURST + 1  # never more than a burst at once (no loss: no resends)
    assert len(instants) > len(sends) / 10  # the sends are spread over many instants
