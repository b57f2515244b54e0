"""RTT-adaptive retransmission: the RFC 6298 estimator against hand-computed numbers, and the sessions using it."""

from __future__ import annotations

import pytest
from memlink import CLIENT, SERVER, download, once, upload

from rudp.core.client import ReadClient, WriteClient
from rudp.core.config import TransferConfig
from rudp.core.events import FailureKind
from rudp.core.rtt import MIN_RTO, RttEstimator
from rudp.core.server import ReadServer
from rudp.wire.codec import decode, encode
from rudp.wire.packets import Ack, Data, OptionAck, ReadRequest

DATA = bytes(range(256)) * 40  # 10240 bytes


def sent(session):
    return [decode(d) for d, _ in session.datagrams_to_send()]


# ---------------------------------------------------------------------------------------------- the estimator
def test_first_and_second_sample_follow_rfc_6298_sections_2_2_and_2_3():
    rtt = RttEstimator(maximum=5.0)
    assert rtt.rto == 1.0  # section 2.1: 1 s before any sample
    rtt.sample(0.100)
    # 2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, 4 RTTVAR) = 0.1 + 0.2
    assert (rtt.srtt, rtt.rttvar) == (0.100, 0.050) and rtt.rto == pytest.approx(0.300)
    rtt.sample(0.200)
    # 2.3: RTTVAR = 3/4 * 0.05 + 1/4 * |0.1 - 0.2| = 0.0625 (with the old SRTT); SRTT = 7/8 * 0.1 + 1/8 * 0.2
    assert rtt.rttvar == pytest.approx(0.0625) and rtt.srtt == pytest.approx(0.1125)
    assert rtt.rto == pytest.approx(0.1125 + 0.25)


def test_backoff_doubles_up_to_the_maximum_and_a_new_sample_ends_it():
    rtt = RttEstimator(maximum=5.0)
    rtt.sample(0.100)
    for expected in (0.6, 1.2, 2.4, 4.8, 5.0, 5.0):  # section 5.5, bounded by the TFTP timeout
        rtt.backoff()
        assert rtt.rto == pytest.approx(expected)
    rtt.sample(0.100)  # section 5.7: RTO recomputed from the estimates
    assert rtt.rto == pytest.approx(0.1 * 7 / 8 + 0.1 / 8 + 4 * 0.05 * 3 / 4)
    assert rtt.stats.backoffs == 6 and rtt.stats.samples == 2


def test_rto_is_clamped_between_the_floor_and_the_tftp_timeout():
    rtt = RttEstimator(maximum=5.0)
    rtt.sample(0.0001)  # loopback: 0.0001 + max(G = 1 ms, 0.0002) = 1.1 ms, below the floor
    assert rtt.rto == MIN_RTO
    rtt = RttEstimator(maximum=2.0)
    rtt.sample(3.0)  # a slow path: 3 + 6 = 9 s, above the timeout
    assert rtt.rto == 2.0
    rtt.set_maximum(1.0)  # a smaller negotiated timeout bounds it at once
    assert rtt.rto == 1.0
    with pytest.raises(ValueError):
        RttEstimator(minimum=0.0, maximum=1.0)


# ---------------------------------------------------------------------------------------------- in the sessions
def test_a_lost_block_is_resent_after_a_few_round_trips_not_after_the_timeout():
    link = download(
        DATA,
        TransferConfig(blksize=512, windowsize=1),
        drop=once(lambda p: isinstance(p, Data) and p.block == 10),
        delay=0.010,
    )
    assert bytes(link.received) == DATA
    sends = [d.time for d in link.packets("s>c", Data) if d.packet.block == 10]
    assert len(sends) == 2
    # 20 ms round trips measured: RTO = SRTT + 4 RTTVAR ~ 20 ms + a little, nowhere near the 5 s timeout
    assert 0.020 <= sends[1] - sends[0] < 0.1
    assert link.server.rtt.stats.samples >= 8 and link.server.rtt.srtt == pytest.approx(0.020, rel=0.05)


def test_the_fixed_timeout_keeps_classic_timing():
    classic = TransferConfig(blksize=512, windowsize=1, fixed_timeout=True)
    link = download(
        DATA,
        classic,
        server_config=TransferConfig(fixed_timeout=True),
        drop=once(lambda p: isinstance(p, Data) and p.block == 10),
        delay=0.010,
    )
    sends = [d.time for d in link.packets("s>c", Data) if d.packet.block == 10]
    assert sends[1] - sends[0] == pytest.approx(5.0)
    assert link.server.rtt.stats.samples == 0


def test_karn_retransmitted_blocks_give_no_sample():
    server = ReadServer(ReadRequest("f", "octet"), CLIENT, TransferConfig(), file_size=None, now=0.0)
    server.feed(b"x" * 600, now=0.0)
    server.feed_eof(now=0.0)
    assert [p.block for p in sent(server)] == [1]
    server.handle_timer(now=server.get_timer())  # block 1 resent
    assert [p.block for p in sent(server)] == [1]
    server.receive_datagram(encode(Ack(1)), CLIENT, now=1.5)  # for which copy? no sample
    assert server.rtt.stats.samples == 0
    server.receive_datagram(encode(Ack(2)), CLIENT, now=1.6)
    assert server.rtt.stats.samples == 1 and server.rtt.srtt == pytest.approx(0.1)


def test_backoff_then_give_up_only_after_retries_full_timeouts():
    client = ReadClient("f", SERVER, TransferConfig(timeout=2.0, retries=2), now=0.0)
    waits, now = [], 0.0
    while not client.finished:
        deadline = client.get_timer()
        waits.append(round(deadline - now, 6))
        now = deadline
        client.handle_timer(now=now)
    # initial 1 s, doubled to the 2 s timeout; then two more full timeouts, then the end
    assert waits == [1.0, 2.0, 2.0, 2.0]
    assert client.outcome.kind is FailureKind.TIMED_OUT


def test_negotiated_timeout_bounds_the_rto():
    client = WriteClient("f", SERVER, TransferConfig(timeout=5.0, timeout_option=2), tsize=10, now=0.0)
    sent(client)
    client.receive_datagram(encode(OptionAck((("timeout", "2"),))), ("127.0.0.1", 50001), now=0.5)
    assert client.rtt.maximum == 2.0 and client.rtt.rto <= 2.0


def test_a_receiver_whose_window_tail_is_late_acknowledges_what_arrived():
    """A classic client (fixed 5 s timer, like curl or tftp-hpa) uploading to rudp: when the window's last block
    is lost, rudp's receiver times out first, acknowledges blocks 1-7, and the client goes on at once."""
    link = upload(
        DATA,
        TransferConfig(blksize=512, windowsize=8, fixed_timeout=True, selective=False),
        server_config=TransferConfig(windowsize=64),
        drop=once(lambda p: isinstance(p, Data) and p.block == 8),
        delay=0.010,
    )
    assert bytes(link.received) == DATA
    acks = [d.packet.block for d in link.packets("s>c", Ack)]
    assert acks[:2] == [7, 15]  # ACK 7 from the receiver's timer; the next window starts at block 8
    sent_blocks = [d.packet.block for d in link.packets("c>s", Data)]
    assert sent_blocks.count(1) == 1 and sent_blocks.count(8) == 2
    assert link.client.stats.timeouts == 0 and link.server.stats.timeouts == 1


def test_a_lossy_random_path_still_delivers_with_adaptive_timers():
    seed = 11
    print("seed", seed)
    import random

    rng = random.Random(seed)
    link = download(
        DATA * 4,
        TransferConfig(blksize=512, windowsize=8, retries=30),
        drop=lambda d, p, i: rng.random() < 0.1,
        delay=0.005,
        jitter=0.002,
    )
    assert bytes(link.received) == DATA * 4


def test_karn_a_receiver_repeating_its_ack_takes_no_sample_from_the_next_data():
    client = ReadClient("f", SERVER, TransferConfig(options=False, fixed_timeout=False), now=0.0)
    sent(client)
    tid = (SERVER[0], 50001)
    client.receive_datagram(encode(Data(1, bytes(512))), tid, now=0.1)  # answers the RRQ: one sample
    assert client.rtt.stats.samples == 1
    sent(client)
    client.receive_datagram(encode(Data(1, bytes(512))), tid, now=0.2)  # repeat: our ACK 1 is sent again
    assert [p for p in sent(client)] == [Ack(1)]
    client.receive_datagram(encode(Data(2, bytes(10))), tid, now=0.9)  # answers which ACK 1? no sample
    assert client.rtt.stats.samples == 1
