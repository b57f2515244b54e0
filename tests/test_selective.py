"""Selective repeat between rudp peers (the ``sack`` option): negotiation, SACK bitmaps, what gets resent."""

from __future__ import annotations

import random

import pytest
from memlink import SERVER, download, once, upload

from rudp.core.client import WriteClient
from rudp.core.config import TransferConfig
from rudp.core.options import OptionError, accept_oack, request_options, server_negotiate
from rudp.core.receiving import MAX_ACK_DELAY, PAUSE_GAPS
from rudp.core.sack import MAX_REPORTED, build_bitmap, held_blocks
from rudp.core.server import WriteServer
from rudp.wire.codec import decode, encode
from rudp.wire.packets import Ack, Data, OptionAck, ReadRequest, SelectiveAck, WriteRequest

DATA = random.Random(3).randbytes(512 * 40 + 100)  # 41 blocks of 512
SR = TransferConfig(blksize=512, windowsize=16)
CLIENT = ("127.0.0.1", 40000)


# ---------------------------------------------------------------------------------------------- negotiation
def test_a_windowed_request_offers_sack_and_a_rudp_server_grants_it():
    asked = request_options(SR, tsize=100)
    assert ("sack", "1") in asked
    oack, negotiated = server_negotiate(
        WriteRequest("f", "octet", asked), TransferConfig(windowsize=64), file_size=None
    )
    assert ("sack", "1") in oack and negotiated.selective
    assert accept_oack(asked, oack, SR).selective


def test_sack_is_not_offered_or_granted_where_it_cannot_help_or_is_off():
    assert all(name != "sack" for name, _ in request_options(TransferConfig(windowsize=1), tsize=None))
    assert all(
        name != "sack" for name, _ in request_options(TransferConfig(windowsize=8, selective=False), tsize=None)
    )
    request = WriteRequest("f", "octet", (("windowsize", "8"), ("sack", "1")))
    oack, negotiated = server_negotiate(request, TransferConfig(windowsize=8, selective=False), file_size=None)
    assert ("sack", "1") not in oack and not negotiated.selective
    oack, negotiated = server_negotiate(request, TransferConfig(windowsize=1), file_size=None)
    assert not negotiated.selective  # a window of one is lockstep: nothing to select


def test_a_standard_server_ignores_sack_and_the_transfer_is_go_back_n():
    asked = request_options(SR, tsize=None)
    negotiated = accept_oack(asked, (("windowsize", "16"),), SR)  # tftpd-hpa-like: no sack in the OACK
    assert not negotiated.selective and negotiated.windowsize == 16
    with pytest.raises(OptionError):
        accept_oack(asked, (("windowsize", "16"), ("sack", "2")), SR)


# ---------------------------------------------------------------------------------------------- the bitmap
def test_bitmap_round_trip_and_its_reach():
    held = [12, 13, 20, 30]
    bitmap = build_bitmap(10, held)  # first described block is 12
    assert bitmap == bytes([0b11000000, 0b10000000, 0b00100000])  # offsets 0, 1, 8, 18 from block 12
    assert list(held_blocks(10, bitmap)) == held
    assert build_bitmap(10, []) == b""
    far = build_bitmap(0, [2, 2 + MAX_REPORTED])  # beyond the bitmap's reach: left out
    assert list(held_blocks(0, far)) == [2]


# ---------------------------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("run", [upload, download])
def test_one_lost_block_is_the_only_block_sent_again(run):
    link = run(DATA, SR, drop=once(lambda p: isinstance(p, Data) and p.block == 5), delay=0.01)
    assert bytes(link.received) == DATA
    direction = "c>s" if run is upload else "s>c"
    blocks = [d.packet.block for d in link.packets(direction, Data)]
    assert blocks.count(5) == 2
    assert all(blocks.count(b) == 1 for b in range(1, 42) if b != 5)  # go-back-N would resend 6..16 too
    sender = link.client if run is upload else link.server
    assert sender.stats.retransmissions == 1 and sender.stats.timeouts == 0  # found by SACK, not by timer


def test_loss_detection_keeps_no_more_than_the_blocks_in_flight():
    # The sender finds lost blocks in transmission order; what it keeps for that must not grow with the file.
    data = bytes(range(256)) * 2 * 600  # 600 blocks of 512 bytes through a window of 16
    link = upload(data, SR, drop=once(lambda p: isinstance(p, Data) and p.block == 300), delay=0.01)
    sender = link.client
    assert bytes(link.received) == data and sender.stats.retransmissions == 1
    assert len(sender._tx_order) <= 2 * SR.windowsize  # what was delivered has been let go


def test_duplicated_sacks_and_data_cost_no_extra_blocks():
    link = upload(DATA, SR, dup=lambda d, p, i: True, delay=0.01)  # every datagram arrives twice
    assert bytes(link.received) == DATA
    assert link.client.stats.retransmissions == 0  # no Sorcerer's Apprentice
    assert len(link.packets("c>s", Data)) == 41


def test_a_lost_window_tail_is_resent_by_the_timer_and_only_the_unacknowledged_blocks():
    link = upload(
        DATA,
        SR,
        drop=lambda d, p, i: isinstance(p, Data) and p.block in (40, 41) and link_sent(p) == 1,
        delay=0.01,
    )
    assert bytes(link.received) == DATA
    blocks = [d.packet.block for d in link.packets("c>s", Data)]
    assert blocks.count(40) == 2 and blocks.count(41) == 2 and blocks.count(39) == 1


_sent_counts: dict[int, int] = {}


def link_sent(packet):
    _sent_counts[packet.block] = _sent_counts.get(packet.block, 0) + 1
    return _sent_counts[packet.block]


def test_the_receiver_holds_at_most_a_window_and_ignores_blocks_beyond_it():
    server = WriteServer(
        WriteRequest("f", "octet", (("blksize", "512"), ("windowsize", "4"), ("sack", "1"))),
        CLIENT,
        TransferConfig(windowsize=4),
        now=0.0,
    )
    assert [decode(d) for d, _ in server.datagrams_to_send()] == [
        OptionAck((("blksize", "512"), ("windowsize", "4"), ("sack", "1")))
    ]
    for block in (2, 3, 4, 9):  # 9 is beyond any window the sender may send (expected 1, window 4)
        server.receive_datagram(encode(Data(block, bytes(512))), CLIENT, now=0.1)
    sacks = [decode(d) for d, _ in server.datagrams_to_send()]
    assert sacks[0] == SelectiveAck(0, bytes([0b10000000]))  # the gap at 1 reported at once: 2 is held
    assert sacks[-1] == SelectiveAck(0, bytes([0b11100000]))  # 2, 3 and 4 held; 9 was dropped
    assert sorted(server._held) == [2, 3, 4]
    server.receive_datagram(encode(Data(1, bytes(512))), CLIENT, now=0.2)
    assert [decode(d) for d, _ in server.datagrams_to_send()][-1] == SelectiveAck(4, b"")  # gap filled: at once
    assert server.bytes_received == 4 * 512


def test_a_sack_for_blocks_never_sent_changes_nothing():
    client = WriteClient("f", SERVER, SR, tsize=None, now=0.0)
    client.datagrams_to_send()
    tid = (SERVER[0], 50001)
    granted = (("windowsize", "16"), ("sack", "1"), ("xxh128", "trailer"))  # a rudp server takes up the digest
    client.receive_datagram(encode(OptionAck(granted)), tid, now=0.1)
    client.feed(DATA[: 512 * 4], now=0.1)
    assert [decode(d).block for d, _ in client.datagrams_to_send()] == [1, 2, 3, 4]
    client.receive_datagram(encode(SelectiveAck(9, b"")), tid, now=0.2)  # nonsense: block 9 was never sent
    client.receive_datagram(encode(Ack(60000)), tid, now=0.2)
    assert client.datagrams_to_send() == [] and client.stats.retransmissions == 0


def test_random_loss_reordering_and_duplication_with_selective_repeat():
    for seed in range(12):
        rng = random.Random(seed)
        print("seed", seed)
        data = rng.randbytes(rng.randrange(0, 60_000))
        config = TransferConfig(blksize=rng.choice([8, 512, 1400]), windowsize=rng.choice([2, 8, 64]), retries=40)
        run = rng.choice([upload, download])
        link = run(
            data,
            config,
            drop=lambda d, p, i, rng=rng: rng.random() < 0.15,
            dup=lambda d, p, i, rng=rng: rng.random() < 0.05,
            delay=0.005,
            jitter=0.004,
        )
        assert bytes(link.received) == data, seed


def test_a_lost_final_ack_is_repeated_for_whatever_block_the_sender_probes_with():
    """The sender still waiting on blocks 38-41 when the final ACK (and the SACKs before it) are lost probes with
    block 38, not the final block; the dallying receiver must answer it with the final ACK."""
    lost = set()

    def drop(direction, packet, index):
        if direction == "s>c" and isinstance(packet, (SelectiveAck, Ack)) and packet.block >= 38:
            if packet.block not in lost:
                lost.add(packet.block)
                return True
        return False

    link = upload(DATA, SR, drop=drop, delay=0.01)
    assert bytes(link.received) == DATA
    assert link.completed()  # both ends: the sender got its final ACK in the end
    probes = [d.packet.block for d in link.packets("c>s", Data)][41:]
    assert probes and 41 not in probes[:1]  # the sender's first probe was an older block than the final one


# ---------------------------------------------------------------------------------------------- go-back-N gap ACKs
GBN = TransferConfig(blksize=512, windowsize=8, selective=False)


def test_go_back_n_resends_at_once_when_a_windows_first_block_is_lost():
    link = upload(DATA, GBN, drop=once(lambda p: isinstance(p, Data) and p.block == 9), delay=0.01)
    assert bytes(link.received) == DATA
    blocks = [d.packet.block for d in link.packets("c>s", Data)]
    assert blocks.count(9) == 2
    assert link.client.stats.timeouts == 0  # the receiver's gap ACK (a repeat of ACK 8) started the resend


def test_go_back_n_duplicated_acks_cause_no_resend():
    link = upload(DATA, GBN, dup=lambda d, p, i: d == "s>c", delay=0.01)  # every ACK arrives twice
    assert bytes(link.received) == DATA
    assert link.client.stats.retransmissions == 0 and link.client.stats.duplicates > 0


@pytest.mark.parametrize("windowsize", [8, 1])
def test_a_late_copy_of_an_ack_costs_at_most_one_window_not_a_sorcerers_apprentice_chain(windowsize):
    """A network copy of ACK 8 arriving 16 ms late (RTT 20 ms) looks like a gap ACK: window 9-16 goes twice.
    The receiver answers the second copy with ACK 16 again, just as late for window 17-24: that one must not go
    twice, or every window after it would (RFC 1123 section 4.2.3.1)."""
    from rudp.core.server import ReadServer
    from rudp.wire.packets import ReadRequest

    request = ReadRequest("f", "octet", (("blksize", "512"), ("windowsize", str(windowsize))))
    server = ReadServer(request, CLIENT, TransferConfig(windowsize=64, selective=False), file_size=None, now=0.0)
    server.datagrams_to_send()  # the OACK
    server.feed(bytes(512 * 40), now=0.0)
    server.receive_datagram(encode(Ack(0)), CLIENT, now=0.02)  # a 20 ms round trip measured

    def blocks():
        return [decode(d).block for d, _ in server.datagrams_to_send()]

    w = windowsize
    assert blocks() == list(range(1, w + 1))
    server.receive_datagram(encode(Ack(w)), CLIENT, now=0.04)
    assert blocks() == list(range(w + 1, 2 * w + 1))
    server.receive_datagram(encode(Ack(w)), CLIENT, now=0.056)  # the late copy
    resent = blocks()
    assert resent == (list(range(w + 1, 2 * w + 1)) if w > 1 else [])  # lockstep never takes it for a gap ACK
    server.receive_datagram(encode(Ack(2 * w)), CLIENT, now=0.06)
    assert blocks() == list(range(2 * w + 1, 3 * w + 1))
    server.receive_datagram(encode(Ack(2 * w)), CLIENT, now=0.076)  # the receiver's answer to the second copy
    assert blocks() == []  # the chain ends here
    server.receive_datagram(encode(Ack(3 * w)), CLIENT, now=0.08)
    assert blocks() == list(range(3 * w + 1, 4 * w + 1))


def test_a_server_never_grants_a_window_holding_more_than_its_memory_budget():
    request = ReadRequest("f", "octet", (("blksize", "65464"), ("windowsize", "65535"), ("sack", "1")))
    oack, negotiated = server_negotiate(request, TransferConfig(blksize=65464, windowsize=65535), file_size=10)
    assert negotiated.windowsize == 8 * 1024 * 1024 // 65464 == 128  # 8 MiB of blocks, not 4 GiB
    assert ("windowsize", "128") in oack
    small = server_negotiate(request, TransferConfig(windowsize=65535, max_window_bytes=1000), file_size=10)[1]
    assert small.windowsize == 1


# ---------------------------------------------------------------------------------------------- SACK pacing
def sack_receiver() -> WriteServer:
    options = (("blksize", "512"), ("windowsize", "64"), ("sack", "1"))
    session = WriteServer(WriteRequest("f.bin", "octet", options), ("127.0.0.1", 4000), SR_SERVER, now=0.0)
    assert any(decode(d) == OptionAck(options) for d, _ in session.datagrams_to_send())
    return session


def sacks(session: WriteServer) -> list[SelectiveAck | Ack]:
    return [p for d, _ in session.datagrams_to_send() if isinstance(p := decode(d), (SelectiveAck, Ack))]


SR_SERVER = TransferConfig(blksize=512, windowsize=64)


def test_a_receiver_faster_than_the_link_acknowledges_every_few_blocks_not_every_one():
    session = sack_receiver()
    t, sent = 0.0, 0
    for block in range(1, 41):  # a steady flow: one block every 120 µs, each read alone (the socket then empty)
        t += 120e-6
        session.receive_datagram(encode(Data(block, b"d" * 512)), ("127.0.0.1", 4000), now=t)
        answered = len(sacks(session))
        sent += answered
        wake = session.get_timer()
        assert wake is not None and (answered or wake <= t + PAUSE_GAPS * 120e-6 + 1e-9)  # a SACK is pending
    every = min(64 // 4, 8)
    assert sent == 1 + 39 // every  # block 1 at once (no gap known yet), then one SACK per ``every`` blocks


def test_a_pause_in_the_flow_is_acknowledged_after_two_usual_gaps():
    session = sack_receiver()
    t = 0.0
    for block in range(1, 4):
        t += 100e-6
        session.receive_datagram(encode(Data(block, b"d" * 512)), ("127.0.0.1", 4000), now=t)
        assert sacks(session) == ([SelectiveAck(1, b"")] if block == 1 else [])  # at once: no gap known yet
    assert session.get_timer() == pytest.approx(t + PAUSE_GAPS * 100e-6)  # no DATA for two gaps: a pause
    session.handle_timer(now=t + 150e-6)
    assert sacks(session) == []  # not yet
    session.handle_timer(now=t + 200e-6)
    assert sacks(session) == [SelectiveAck(3, b"")]  # the in-order run so far
    # a long gap makes the usual gap long, but a pending SACK never waits more than MAX_ACK_DELAY
    t += 0.004
    session.receive_datagram(encode(Data(4, b"d" * 512)), ("127.0.0.1", 4000), now=t)
    assert sacks(session) == []
    assert session.get_timer() == pytest.approx(t + MAX_ACK_DELAY)
