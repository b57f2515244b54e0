"""Congestion control: the delay-gated policy (selective repeat) and window pacing (go-back-N), each alone and in
the simulator against a bottleneck and random loss."""

from __future__ import annotations

import pytest

from rudp.core.client import WriteClient
from rudp.core.config import TransferConfig
from rudp.core.congestion import (
    BETA,
    DELIVERY_SAMPLE,
    DRAIN,
    GROWTH,
    INITIAL_WINDOW,
    MIN_WINDOW,
    PACING_BURST,
    DelayGatedAimd,
    FixedWindow,
    WindowPacing,
)
from rudp.core.rtt import RttEstimator
from rudp.impair.model import Impairment
from rudp.sim.engine import SimConfig, simulate
from rudp.wire.codec import encode
from rudp.wire.packets import OptionAck


def rtt_with(min_rtt: float, latest: float) -> RttEstimator:
    rtt = RttEstimator(maximum=5.0)
    rtt.sample(min_rtt)
    rtt.sample(latest)
    return rtt


CLEAR = rtt_with(0.050, 0.051)  # 1 ms over the minimum: no queue
QUEUED = rtt_with(0.050, 0.070)  # 20 ms over: a queue (threshold max(2 ms, 50/8 ms))
DEEP = rtt_with(0.050, 0.100)  # 50 ms over: a deep queue


def test_slow_start_doubles_then_growth_is_proportional_and_capped():
    cc = DelayGatedAimd(max_window=1000)
    assert cc.window() == INITIAL_WINDOW
    cc.on_acked(blocks=10, now=1.0, rtt=CLEAR)
    assert cc.window() == 20  # one block per block acknowledged
    # a queue: slow start ends, and its overshoot goes (x min RTT / latest RTT: 50/70)
    cc.on_acked(blocks=5, now=1.1, rtt=QUEUED)
    assert cc.ssthresh == cc.cwnd == pytest.approx(20 * 50 / 70)
    cc.on_acked(blocks=5, now=1.15, rtt=QUEUED)  # after slow start a queue only stops growth
    assert cc.ssthresh == cc.cwnd == pytest.approx(20 * 50 / 70)
    cc.on_acked(blocks=20, now=1.2, rtt=CLEAR)
    assert cc.cwnd == pytest.approx(20 * 50 / 70 + 20 * GROWTH)  # an eighth of the window per round trip
    deep = DelayGatedAimd(max_window=1000)
    deep.on_acked(blocks=10, now=1.0, rtt=rtt_with(0.050, 0.200))
    assert deep.cwnd == pytest.approx(10 / 2)  # at most halved, though 50/200 would say a quarter
    capped = DelayGatedAimd(max_window=12)
    capped.on_acked(blocks=100, now=1.0, rtt=CLEAR)
    assert capped.window() == 12


def test_loss_with_a_queue_shrinks_once_per_episode_and_random_loss_changes_nothing():
    cc = DelayGatedAimd(max_window=1000)
    cc.on_acked(blocks=90, now=1.0, rtt=CLEAR)  # window 100
    cc.on_lost(sent_tx=50, current_tx=120, now=1.1, rtt=CLEAR)
    assert cc.window() == 100 and cc.random_losses == 1  # no queue: radio loss, not congestion
    cc.on_lost(sent_tx=60, current_tx=130, now=1.2, rtt=QUEUED)
    # a shallow queue: shrink to what the path holds without it (x min RTT / latest RTT = 50/70)
    assert cc.cwnd == pytest.approx(100 * 50 / 70) and cc.reductions == 1
    cc.on_lost(sent_tx=125, current_tx=140, now=1.25, rtt=QUEUED)  # sent before the reduction: same episode
    assert cc.cwnd == pytest.approx(100 * 50 / 70) and cc.reductions == 1
    cc.on_lost(sent_tx=131, current_tx=150, now=1.3, rtt=DEEP)  # sent after it: a new episode
    assert cc.cwnd == pytest.approx(100 * 50 / 70 * BETA) and cc.reductions == 2  # a deep one: never below BETA


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
    assert cc.pacing_rate(rtt=RttEstimator(maximum=5.0), now=0.0) is None  # no round trip measured: no pacing yet
    rtt = rtt_with(0.1, 0.1)
    assert cc.pacing_rate(rtt=rtt, now=0.0) == pytest.approx(
        2 * 10 / rtt.srtt
    )  # slow start: twice the window per RTT
    cc.ssthresh = 5
    assert cc.pacing_rate(rtt=rtt, now=0.0) == pytest.approx(1.25 * 10 / rtt.srtt)


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


# ----------------------------------------------------------------- go-back-N: WindowPacing
def pacer(rtt: RttEstimator) -> WindowPacing:
    cc = WindowPacing(max_window=512)
    assert cc.pacing_rate(rtt=RttEstimator(maximum=5.0), now=0.0) is None  # no round trip yet: unpaced
    assert cc.pacing_rate(rtt=rtt, now=0.0) == pytest.approx(2 * INITIAL_WINDOW / rtt.srtt)
    return cc


def test_window_pacing_ramps_up_with_time_while_a_window_is_sent_not_per_ack():
    rtt = rtt_with(0.050, 0.050)
    cc = pacer(rtt)
    start = 2 * INITIAL_WINDOW / rtt.srtt
    for k in (1, 2, 3):
        assert cc.pacing_rate(rtt=rtt, now=k * rtt.srtt) == pytest.approx(start * 2**k)  # doubles every SRTT
    # capped at a whole window per tenth of a round trip
    assert cc.pacing_rate(rtt=rtt, now=100.0) == pytest.approx(512 * 10 / rtt.srtt)
    cc.on_window(blocks=512, sent_at=0.0, last_sent_at=0.1, now=0.1 + 0.0505, rtt=rtt)  # no queue: ramp on
    assert cc.startup and cc.pacing_rate(rtt=rtt, now=0.1505) == pytest.approx(start * 2 ** (0.1505 / rtt.srtt))


def test_window_pacing_leaves_start_up_at_the_delivery_rate_when_a_queue_shows():
    rtt = rtt_with(0.050, 0.050)
    cc = pacer(rtt)
    # 300 blocks, the first sent at 0.0, acknowledged at 0.4: 300 / (0.4 - 0.05) blocks/s got through
    cc.on_window(blocks=300, sent_at=0.0, last_sent_at=0.3, now=0.4, rtt=rtt)  # 50 ms over the minimum: queue
    assert not cc.startup and cc.rate == pytest.approx(300 / 0.35)
    # too few blocks to measure a rate: half the rate the ramp reached
    cc = pacer(rtt)
    ramped = cc.pacing_rate(rtt=rtt, now=0.4)
    cc.on_window(blocks=DELIVERY_SAMPLE - 1, sent_at=0.3, last_sent_at=0.3, now=0.4, rtt=rtt)
    assert cc.rate == pytest.approx(ramped / 2)


def test_window_pacing_grows_without_a_queue_drains_with_one_and_keeps_a_floor():
    rtt = rtt_with(0.050, 0.050)
    cc = pacer(rtt)
    cc.on_timeout(now=0.0)  # ends start-up
    rate = cc.rate
    cc.on_window(blocks=512, sent_at=1.0, last_sent_at=2.0, now=2.051, rtt=rtt)
    assert cc.rate == pytest.approx(rate * (1 + GROWTH))
    cc.on_window(blocks=512, sent_at=3.0, last_sent_at=4.0, now=4.08, rtt=rtt)  # 30 ms of queue
    assert cc.rate == pytest.approx(rate * (1 + GROWTH) * DRAIN)
    for _ in range(200):
        cc.on_timeout(now=5.0)
    assert cc.pacing_rate(rtt=rtt, now=5.0) == pytest.approx(MIN_WINDOW / rtt.srtt)


def test_window_pacing_answers_loss_with_a_queue_once_per_episode_and_ignores_random_loss():
    rtt = rtt_with(0.050, 0.050)
    cc = pacer(rtt)
    cc.on_timeout(now=0.0)
    rate = cc.rate
    cc.on_window(blocks=100, sent_at=1.0, last_sent_at=1.1, now=1.151, rtt=rtt)  # no queue
    rate *= 1 + GROWTH
    cc.on_lost(sent_tx=150, current_tx=200, now=1.2, rtt=rtt)  # random loss: nothing changes
    assert cc.rate == pytest.approx(rate) and cc.random_losses == 1 and cc.reductions == 0
    cc.on_window(blocks=100, sent_at=2.0, last_sent_at=2.1, now=2.2, rtt=rtt)  # a queue
    rate *= DRAIN
    cc.on_lost(sent_tx=250, current_tx=300, now=2.2, rtt=rtt)
    assert cc.rate == pytest.approx(rate * BETA) and cc.reductions == 1
    cc.on_lost(sent_tx=260, current_tx=310, now=2.3, rtt=rtt)  # a block at or below 300: the same episode
    assert cc.rate == pytest.approx(rate * BETA) and cc.reductions == 1
    cc.on_lost(sent_tx=301, current_tx=400, now=2.4, rtt=rtt)  # beyond it: a new one
    assert cc.rate == pytest.approx(rate * BETA * BETA) and cc.reductions == 2


def test_a_go_back_n_sender_waits_longer_than_the_rto_for_the_queue_its_probing_builds():
    config = TransferConfig(blksize=512, windowsize=64, selective=False, timeout=5.0)
    client = WriteClient("f.bin", ("127.0.0.1", 69), config, tsize=None, now=0.0)
    client.datagrams_to_send()
    client.receive_datagram(encode(OptionAck((("windowsize", "64"),))), ("127.0.0.1", 4000), now=0.05)
    assert isinstance(client.congestion, WindowPacing)
    client.feed(b"q" * 512 * 200, now=0.05)
    client.datagrams_to_send()
    deadline = client.get_timer()
    assert deadline is not None
    rate = client.congestion.rate
    assert rate is not None
    allowance = 2 * GROWTH * 64 / rate
    assert client.congestion.timer_allowance() == pytest.approx(allowance)
    # armed when the last block of the window left (the pacing wake-ups come first)
    assert client._deadline is not None
    assert client._deadline - client._last_tx_at[max(client._last_tx_at)] == pytest.approx(
        client.rtt.rto + allowance
    )


def gbn_bottleneck(policy: str) -> SimConfig:
    path = Impairment(delay=0.025, rate=10e6, queue=64)
    config = TransferConfig(
        blksize=1468, windowsize=512, timeout=2.0, retries=20, congestion=policy, selective=False
    )
    return SimConfig(size=6 * 1024 * 1024, client=config, server=config, up=path, down=path, seed=1)


def test_go_back_n_through_a_short_bottleneck_queue_is_paced_not_collapsed():
    controlled, uncontrolled = simulate(gbn_bottleneck("delay")), simulate(gbn_bottleneck("none"))
    print(
        f"paced: {controlled.goodput_bps / 1e6:.2f} Mbit/s, {controlled.up['lost_queue']} queue drops; "
        f"none: {uncontrolled.goodput_bps / 1e6:.2f} Mbit/s, {uncontrolled.up['lost_queue']} queue drops"
    )
    assert controlled.ok and uncontrolled.ok
    assert controlled.goodput_bps >= 0.7 * 10e6
    assert controlled.up["lost_queue"] <= 0.1 * controlled.up["offered"]
    # the whole window at once: most of it dies in the queue, every window is resent, goodput collapses
    assert (
        uncontrolled.goodput_bps < 0.2 * 10e6 and uncontrolled.up["lost_queue"] > 0.5 * uncontrolled.up["offered"]
    )


@pytest.mark.parametrize("loss", [0.0, 0.005])
def test_go_back_n_pacing_costs_nothing_on_a_fast_path_with_random_loss(loss):
    def run(policy: str):
        path = Impairment(delay=0.025, loss=loss, rate=100e6, queue=1000)
        config = TransferConfig(
            blksize=1468, windowsize=2048, timeout=2.0, retries=20, congestion=policy, selective=False
        )
        return simulate(SimConfig(size=16 * 1024 * 1024, client=config, server=config, up=path, seed=2))

    controlled, uncontrolled = run("delay"), run("none")
    print(
        f"loss {loss}: paced {controlled.goodput_bps / 1e6:.1f} Mbit/s ({controlled.up['lost_queue']} dropped), "
        f"none {uncontrolled.goodput_bps / 1e6:.1f} ({uncontrolled.up['lost_queue']})"
    )
    assert controlled.ok and controlled.goodput_bps >= 0.9 * uncontrolled.goodput_bps
    assert controlled.up["lost_queue"] < 0.1 * uncontrolled.up["lost_queue"]
