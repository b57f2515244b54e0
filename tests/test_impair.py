"""The impairment model: exact mechanics by hand-stepped time, statistics over seeded runs, and the CLI specs.

Every seeded test prints its seed and what it measured (``pytest -s`` shows them; pytest shows them on failure).
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from itertools import groupby, pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rudp.impair.model import DUPLICATE_GAP, HEADER_BYTES, Channel, Counters, Delivery, Impairment
from rudp.impair.spec import (
    add_impairment_arguments,
    describe,
    format_duration,
    format_percent,
    format_rate,
    impairment_from_args,
    parse_burst,
    parse_duration,
    parse_percent,
    parse_rate,
)

N = 100_000  # datagrams for the statistical tests


def channel(seed: int, **kw: object) -> Channel:
    print(f"seed {seed}: {kw}")
    return Channel(Impairment(**kw), random.Random(seed))  # type: ignore[arg-type]


def run(ch: Channel, n: int, *, size: int = 100, spacing: float = 0.001) -> list[list[Delivery]]:
    return [ch.send(i.to_bytes(4, "big") + bytes(size - 4), i * spacing) for i in range(n)]


def bit_distance(a: bytes, b: bytes) -> int:
    assert len(a) == len(b)
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def check_counters(c: Counters) -> None:
    assert c.offered == c.delivered - c.duplicated + c.lost
    assert c.lost == c.lost_random + c.lost_burst + c.lost_queue


# --- Impairment: validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"loss": -0.1}, {"loss": 1.5}, {"loss": float("nan")}, {"dup": 2.0}, {"reorder": -1.0}, {"corrupt": 1.01},
        {"burst": (0.1, 1.5)}, {"burst": (-0.1, 0.5)}, {"burst": (0.1,)}, {"delay": -0.001},
        {"delay": float("inf")}, {"jitter": -1.0}, {"reorder_gap": float("nan")}, {"rate": 0.0}, {"rate": -1e6},
        {"rate": float("inf")}, {"queue": 0}, {"queue": 2.5}, {"queue": True},
    ],
)
def test_out_of_range_values_are_refused(kw):
    with pytest.raises(ValueError):
        Impairment(**kw)


def test_defaults_are_a_clean_path_and_anything_that_acts_is_not():
    assert Impairment().is_clean
    assert Impairment(burst=(0.0, 0.5), queue=3, reorder_gap=1.0).is_clean  # nothing here can act
    for kw in ({"loss": 0.01}, {"burst": (0.01, 0.5)}, {"dup": 0.01}, {"reorder": 0.01}, {"delay": 0.01},
               {"jitter": 0.01}, {"corrupt": 0.01}, {"rate": 1e6}):
        assert not Impairment(**kw).is_clean, kw  # type: ignore[arg-type]


def test_burst_given_as_a_list_becomes_a_hashable_tuple():
    impairment = Impairment(burst=[0.1, 0.5])  # type: ignore[arg-type]
    assert impairment.burst == (0.1, 0.5)
    hash(impairment)
    assert Impairment(burst=(0.02, 0.3)).burst_loss == pytest.approx(0.0625)


# --- Channel: exact mechanics ----------------------------------------------------------------------------------


def test_a_clean_channel_delivers_everything_at_once_unchanged():
    ch = Channel(Impairment(), random.Random(1))
    sent = [b"abc%d" % i for i in range(100)]
    for i, data in enumerate(sent):
        assert ch.send(data, 5.0 + i) == [Delivery(at=5.0 + i, data=data, duplicate=False, corrupted=False,
                                                   reordered=False)]
    total = sum(map(len, sent))
    assert ch.counters.as_dict() == {**Counters().as_dict(), "offered": 100, "delivered": 100,
                                     "bytes_offered": total, "bytes_delivered": total}


def test_certain_effects_behave_exactly():
    assert Channel(Impairment(loss=1.0), random.Random(1)).send(b"x", 0.0) == []
    [original, copy] = Channel(Impairment(dup=1.0, delay=0.5), random.Random(1)).send(b"x", 1.0)
    assert (original.at, original.duplicate, copy.at, copy.duplicate) == (1.5, False, 1.5 + DUPLICATE_GAP, True)
    assert copy.data == original.data == b"x"
    [held] = Channel(Impairment(reorder=1.0, reorder_gap=0.25, delay=0.5), random.Random(1)).send(b"x", 1.0)
    assert (held.at, held.reordered) == (1.75, True)


def test_a_corrupted_duplicate_carries_the_same_damage():
    ch = Channel(Impairment(corrupt=1.0, dup=1.0), random.Random(3))
    original, copy = ch.send(bytes(64), 0.0)
    assert original.corrupted and copy.corrupted and original.data == copy.data != bytes(64)
    assert ch.counters.corrupted == 1 and ch.counters.duplicated == 1
    assert ch.send(b"", 0.0)[0].corrupted is False  # nothing to flip in an empty payload


def test_serialisation_counts_28_header_bytes():
    assert HEADER_BYTES == 28
    ch = Channel(Impairment(rate=8000.0, delay=0.25), random.Random(1))  # 1000 bytes per second
    [first] = ch.send(bytes(972), 10.0)  # 972 + 28 = 1000 bytes: one second on the link
    [second] = ch.send(bytes(472), 10.0)  # 500 bytes, queued behind the first
    assert first.at == pytest.approx(11.25) and second.at == pytest.approx(11.75)
    assert ch.queued(10.0) == 2 and ch.queued(11.0) == 1 and ch.queued(11.5) == 0


@pytest.mark.parametrize("queue", [1, 5, 64])
def test_a_burst_of_queue_datagrams_is_absorbed_and_one_more_is_dropped(queue):
    ch = Channel(Impairment(rate=1e6, queue=queue), random.Random(1))
    serialise = (1000 + HEADER_BYTES) * 8 / 1e6
    out = [ch.send(bytes(1000), 0.0) for _ in range(queue + 1)]
    assert all(len(d) == 1 for d in out[:queue]) and out[queue] == []
    assert [d[0].at for d in out[:queue]] == pytest.approx([serialise * (k + 1) for k in range(queue)])
    assert ch.counters.lost_queue == 1
    # Once the head has left, there is room for exactly one more; once all have left, for a whole burst again.
    assert len(ch.send(bytes(1000), serialise)) == 1 and ch.send(bytes(1000), serialise) == []
    later = serialise * (queue + 2)
    assert all(ch.send(bytes(1000), later) for _ in range(queue))
    check_counters(ch.counters)


def test_traffic_below_the_rate_never_queues():
    ch = Channel(Impairment(rate=1e6, queue=1, delay=0.02), random.Random(1))
    serialise = (500 + HEADER_BYTES) * 8 / 1e6
    for i in range(1000):
        now = i * 2 * serialise
        [d] = ch.send(bytes(500), now)
        assert d.at == pytest.approx(now + serialise + 0.02)
    assert ch.counters.lost == 0


# --- Randomness: reproducible and separated by effect ---------------------------------------------------------

impairments = st.builds(
    Impairment,
    loss=st.sampled_from([0.0, 0.05, 0.3]),
    burst=st.one_of(st.none(), st.tuples(st.floats(0, 0.2), st.floats(0.1, 1))),
    dup=st.sampled_from([0.0, 0.1]),
    reorder=st.sampled_from([0.0, 0.1]),
    reorder_gap=st.floats(0, 0.05),
    delay=st.floats(0, 0.2),
    jitter=st.floats(0, 0.05),
    corrupt=st.sampled_from([0.0, 0.1]),
    rate=st.one_of(st.none(), st.floats(1e4, 1e8)),
    queue=st.integers(1, 16),
)
traffic = st.lists(st.tuples(st.binary(max_size=64), st.floats(0, 0.01)), max_size=60)


def replay(impairment: Impairment, seed: int, sends: list[tuple[bytes, float]]) -> tuple[list, dict]:
    ch, now, out = Channel(impairment, random.Random(seed)), 0.0, []
    for data, gap in sends:
        now += gap
        out.append((now, data, ch.send(data, now)))
    return out, ch.counters.as_dict()


@settings(max_examples=150, deadline=None)
@given(impairment=impairments, seed=st.integers(0, 2**32), sends=traffic)
def test_same_seed_same_inputs_same_outputs(impairment, seed, sends):
    assert replay(impairment, seed, sends) == replay(impairment, seed, sends)


@settings(max_examples=150, deadline=None)
@given(impairment=impairments, seed=st.integers(0, 2**32), sends=traffic)
def test_deliveries_respect_delay_bounds_and_content(impairment, seed, sends):
    out, counters = replay(impairment, seed, sends)
    for now, data, deliveries in out:
        assert len(deliveries) <= 2
        for d in deliveries:
            assert d.at >= now + impairment.delay
            if impairment.rate is None:
                gap = impairment.reorder_gap if d.reordered else 0.0
                assert d.at <= now + impairment.delay + impairment.jitter + gap + DUPLICATE_GAP * d.duplicate
            assert len(d.data) == len(data)
            if d.corrupted:
                assert 1 <= bit_distance(d.data, data) <= 3
            else:
                assert d.data == data
        if len(deliveries) == 2:
            assert deliveries[1].duplicate and deliveries[1].at == deliveries[0].at + DUPLICATE_GAP
            assert deliveries[1].data == deliveries[0].data
    c = Counters(**counters)
    check_counters(c)
    assert c.bytes_offered == sum(len(data) for _, data, _ in out)
    assert c.bytes_delivered == sum(len(d.data) for _, _, ds in out for d in ds)


def test_the_injected_rng_is_used_the_same_way_whatever_the_impairment():
    states = set()
    for impairment in (Impairment(), Impairment(loss=0.5, dup=0.5, jitter=1.0, burst=(0.1, 0.1))):
        rng = random.Random(5)
        Channel(impairment, rng)
        states.add(rng.random())
    assert len(states) == 1


def test_zero_probabilities_and_other_effects_do_not_change_which_datagrams_are_lost():
    seed = 11
    print(f"seed {seed}")

    def lost(**kw: object) -> set[int]:
        ch = Channel(Impairment(**kw), random.Random(seed))  # type: ignore[arg-type]
        return {i for i, d in enumerate(run(ch, 5000)) if not d}

    base = lost(loss=0.05)
    assert base == lost(loss=0.05, dup=0.0, corrupt=0.0, reorder=0.0)
    assert base == lost(loss=0.05, dup=0.2, corrupt=0.1, reorder=0.1, jitter=0.01, delay=0.1)
    assert base < lost(loss=0.10)  # a higher loss rate loses a superset: sweeps are coupled


# --- Statistics -------------------------------------------------------------------------------------------------


def test_bernoulli_loss_rate():
    seed = 20240601
    ch = channel(seed, loss=0.05)
    run(ch, N)
    measured = ch.counters.lost_random / N
    print(f"loss 5%: measured {measured:.4%} over {N} datagrams")
    assert abs(measured - 0.05) < 0.005
    check_counters(ch.counters)


def test_gilbert_elliott_mean_loss_and_burst_length():
    seed = 7
    p, r = 0.02, 0.3
    ch = channel(seed, burst=(p, r))
    out = run(ch, N)
    measured = ch.counters.lost_burst / N
    runs = [len(list(group)) for lost, group in groupby(not d for d in out) if lost]
    mean_run = sum(runs) / len(runs)
    print(f"burst {p}:{r}: loss {measured:.4%} (theory {p / (p + r):.4%}), "
          f"mean burst {mean_run:.3f} (theory {1 / r:.3f})")
    assert abs(measured - p / (p + r)) < 0.01
    assert abs(mean_run - 1 / r) < 0.1 / r


def test_duplication_rate():
    seed = 3
    ch = channel(seed, dup=0.02)
    out = run(ch, N)
    measured = ch.counters.duplicated / N
    print(f"dup 2%: measured {measured:.4%}")
    assert abs(measured - 0.02) < 0.003
    assert sum(len(d) for d in out) == N + ch.counters.duplicated == ch.counters.delivered


def test_corruption_rate_and_damage():
    seed = 4
    ch = channel(seed, corrupt=0.01)
    out = run(ch, N)
    measured = ch.counters.corrupted / N
    flips: Counter[int] = Counter()
    for i, [d] in enumerate(out):
        original = i.to_bytes(4, "big") + bytes(96)
        if d.corrupted:
            flips[bit_distance(d.data, original)] += 1
        else:
            assert d.data == original
    print(f"corrupt 1%: measured {measured:.4%}; datagrams by bits flipped {sorted(flips.items())}")
    assert abs(measured - 0.01) < 0.002
    assert sum(flips.values()) == ch.counters.corrupted and set(flips) == {1, 2, 3}


def test_reordering_makes_later_datagrams_overtake():
    seed = 5
    ch = channel(seed, reorder=0.05, reorder_gap=0.010, delay=0.02)
    out = run(ch, N // 10, spacing=0.001)
    order = [i for _, i in sorted((d.at, i) for i, ds in enumerate(out) for d in ds)]
    overtaken, highest = set(), -1
    for i in order:
        if i < highest:
            overtaken.add(i)  # a datagram sent later arrived first
        highest = max(highest, i)
    displacement = sum(k - i for k, i in enumerate(order) if i in overtaken) / len(overtaken)
    measured = ch.counters.reordered / (N // 10)
    print(f"reorder 5% by 10 ms at 1 ms spacing: {measured:.3%} held back, {len(overtaken)} overtaken, "
          f"by {displacement:.2f} datagrams on average")
    assert abs(measured - 0.05) < 0.01
    assert overtaken == {i for i, ds in enumerate(out) if ds[0].reordered}  # all held back, nothing else
    assert 8 < displacement <= 10


def test_delay_and_jitter_bounds_and_mean():
    seed = 6
    ch = channel(seed, delay=0.02, jitter=0.005)
    out = run(ch, N // 10)
    extra = [ds[0].at - i * 0.001 - 0.02 for i, ds in enumerate(out)]
    print(f"jitter 5 ms: min {min(extra) * 1e3:.4f} ms, max {max(extra) * 1e3:.4f} ms, "
          f"mean {sum(extra) / len(extra) * 1e3:.4f} ms")
    assert all(-1e-12 <= e <= 0.005 + 1e-12 for e in extra)
    assert abs(sum(extra) / len(extra) - 0.0025) < 0.0001
    assert min(extra) < 0.0001 and max(extra) > 0.0049


def test_twice_the_rate_loses_about_half():
    seed = 8
    size, rate, queue = 1000, 1e6, 64
    serialise = (size + HEADER_BYTES) * 8 / rate
    n = 20_000
    ch = channel(seed, rate=rate, queue=queue)
    out = [ch.send(bytes(size), i * serialise / 2) for i in range(n)]
    measured = ch.counters.lost_queue / n
    expected = (n / 2 - queue) / n  # the link carries one in two, the queue holds the rest of the first burst
    print(f"2x overload, queue {queue}: lost {measured:.4%} (expected {expected:.4%})")
    assert abs(measured - expected) < 0.01
    arrivals = [d[0].at for d in out if d]
    assert all(b - a == pytest.approx(serialise) for a, b in pairwise(arrivals))  # link saturated
    assert all(out[i] for i in range(queue))  # the start of the overload is absorbed


# --- Command-line specs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("5%", 0.05), ("0.5%", 0.005), ("0.05", 0.05), ("0.1%", 0.001), ("100%", 1.0), ("0", 0.0), ("0%", 0.0),
     (" 2 % ", 0.02), ("1e-3", 0.001)],
)
def test_parse_percent(text, value):
    assert parse_percent(text) == value


@pytest.mark.parametrize("text", ["", "%", "5x", "-1%", "101%", "1", "5", "1.0", "nan", "inf", "5%%", "1/2"])
def test_parse_percent_refuses(text):
    with pytest.raises(ValueError) as info:
        parse_percent(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [("20ms", 0.02), ("1.5s", 1.5), ("250us", 0.00025), ("250µs", 0.00025), ("0", 0.0), ("0ms", 0.0),
     ("20 ms", 0.02), ("2S", 2.0)],
)
def test_parse_duration(text, value):
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["", "20", "1.5", "-5ms", "5m", "5min", "ms", "1e999s", "inf"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [("10mbit", 10e6), ("100kbit", 100e3), ("1gbit", 1e9), ("500bit", 500.0), ("10Mbit", 10e6),
     ("10 Mbit/s", 10e6), ("2.5mbits", 2.5e6), ("1MB/s", 8e6), ("1.5KB/s", 12e3), ("1kB/s", 8e3),
     ("100B/s", 800.0), ("1GB/s", 8e9)],
)
def test_parse_rate(text, value):
    assert parse_rate(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "1000", "10m", "10mbps", "500kbps", "10mb/s", "10kb/s", "0mbit", "-1mbit", "10furlongs", "1e999gbit"],
)
def test_parse_rate_refuses(text):
    with pytest.raises(ValueError) as info:
        parse_rate(text)
    assert "\n" not in str(info.value)


def test_parse_burst():
    assert parse_burst("2%:30%") == (0.02, 0.30)
    assert parse_burst("0.02:0.3") == (0.02, 0.3)
    assert parse_burst("0%:50%") == (0.0, 0.5)
    for bad in ("2%", "2%:30%:1%", "2%:0%", "x:y", ":"):
        with pytest.raises(ValueError):
            parse_burst(bad)


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-6, 1.0), st.floats(1e-7, 1e4), st.floats(1.0, 1e12))
def test_formatted_values_read_back_within_display_precision(p, seconds, rate):
    assert parse_percent(format_percent(p)) == pytest.approx(p, rel=1e-3)
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-3)
    assert parse_rate(format_rate(rate)) == pytest.approx(rate, rel=1e-3)


def test_describe():
    assert describe(Impairment()) == "clean"
    assert describe(Impairment(loss=0.05, delay=0.02, jitter=0.005, rate=10e6)) == (
        "loss 5%, delay 20 ms, jitter 5 ms, rate 10 Mbit/s (queue 64)"
    )
    assert describe(Impairment(burst=(0.02, 0.3), dup=0.01, reorder=0.02, corrupt=0.001, delay=1.5)) == (
        "burst 2%:30% (~6.25% lost), dup 1%, reorder 2% by 10 ms, delay 1.5 s, corrupt 0.1%"
    )


def parser(**kw: object) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t")
    add_impairment_arguments(p, **kw)  # type: ignore[arg-type]
    return p


def test_arguments_build_the_impairment():
    args = parser().parse_args(
        "--loss 5% --burst 2%:30% --dup 1% --reorder 2% --delay 20ms --jitter 5ms --corrupt 0.1% --rate 10mbit "
        "--queue 32 --seed 7".split()
    )
    assert args.seed == 7
    assert impairment_from_args(args) == Impairment(loss=0.05, burst=(0.02, 0.3), dup=0.01, reorder=0.02,
                                                    delay=0.02, jitter=0.005, corrupt=0.001, rate=10e6, queue=32)


def test_argument_defaults_are_a_clean_path_and_seed_1():
    args = parser().parse_args([])
    assert impairment_from_args(args) == Impairment() and args.seed == 1


def test_prefixed_arguments_for_two_directions():
    p = argparse.ArgumentParser()
    add_impairment_arguments(p, prefix="up-")
    add_impairment_arguments(p, prefix="down-", with_seed=False)
    args = p.parse_args(["--up-loss", "5%", "--down-delay", "10ms", "--up-seed", "3"])
    assert impairment_from_args(args, prefix="up-") == Impairment(loss=0.05)
    assert impairment_from_args(args, prefix="down-") == Impairment(delay=0.01)
    assert args.up_seed == 3 and not hasattr(args, "down_seed")


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--loss", "5"], "'5' is not a probability"), (["--rate", "10mbps"], "ambiguous rate unit"),
     (["--delay", "20"], "needs a unit"), (["--queue", "0"], "at least 1"), (["--burst", "2%"], "p:r")],
)
def test_bad_arguments_give_a_one_line_message(argv, message, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(argv)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    print(err)
    assert f"argument {argv[0]}: " in err and message in err
