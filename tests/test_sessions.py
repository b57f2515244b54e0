"""Scripted scenarios on the sans-I/O sessions, with a hand-stepped clock (no sockets, no sleeping)."""

from __future__ import annotations

from functools import partial

import pytest
from memlink import CLIENT, SERVER, SERVER_TID, download, upload

from rudp.core.client import ReadClient, WriteClient
from rudp.core.config import TransferConfig
from rudp.core.events import DataReceived, FailureKind, Negotiated, TransferComplete, TransferFailed
from rudp.core.server import ReadServer, WriteServer
from rudp.core.session import State
from rudp.wire.codec import decode, encode
from rudp.wire.packets import Ack, Data, Error, ErrorCode, OptionAck, ReadRequest, WriteRequest

# These tests pin classic TFTP behaviour (RFC 1350's fixed timer, RFC 7440's go-back-N), so every session here
# uses the fixed timeout and no selective repeat; the RTT-adaptive timer has its own tests in test_rtt.py and
# selective repeat in test_selective.py.  memlink gives the server the client's modes.
Classic = partial(TransferConfig, fixed_timeout=True, selective=False, digest=False)  # no rudp extensions

LOCKSTEP = Classic(options=False)  # plain RFC 1350: blksize 512, windowsize 1
DATA_1500 = bytes(range(256)) * 5 + bytes(220)  # 1500 bytes: blocks of 512, 512, 476


def first(n, match):
    """A drop rule: drop the first ``n`` datagrams for which ``match(direction, packet)`` holds."""
    seen = [0]

    def rule(direction, packet, index):
        if match(direction, packet) and seen[0] < n:
            seen[0] += 1
            return True
        return False

    return rule


def sent(session):
    return [(decode(d), a) for d, a in session.datagrams_to_send()]


def events(session):
    out = []
    while (e := session.next_event()) is not None:
        out.append(e)
    return out


def times(deliveries):
    return [d.time for d in deliveries]


# ---------------------------------------------------------------------------------------------- lockstep basics
@pytest.mark.parametrize("size", [0, 1, 511, 512, 1024, 1500])
def test_lockstep_download_and_upload_deliver_exact_bytes(size):
    data = bytes((i * 7) % 256 for i in range(size))
    for run in (download, upload):
        link = run(data, LOCKSTEP)
        assert bytes(link.received) == data
        assert link.completed()
        blocks = size // 512 + 1  # a multiple of 512 ends with an empty block (RFC 1350 section 6)
        direction = "s>c" if run is download else "c>s"
        datas = link.packets(direction, Data)
        assert len(datas) == blocks
        assert len(datas[-1].packet.data) == size % 512


def test_lost_data_is_resent_after_exactly_the_timeout():
    link = download(DATA_1500, LOCKSTEP, drop=first(1, lambda d, p: isinstance(p, Data) and p.block == 2))
    assert bytes(link.received) == DATA_1500
    assert times([d for d in link.packets("s>c", Data) if d.packet.block == 2]) == [0.0, 5.0]
    assert len([d for d in link.packets("s>c", Data) if d.packet.block == 3]) == 1
    assert link.server.stats.retransmissions == 1


def test_lost_ack_duplicate_data_is_reacked_and_nothing_is_sent_twice_more():
    client_cfg = Classic(options=False, timeout=7.0)  # so the server's timer fires first
    link = download(DATA_1500, client_cfg, drop=first(1, lambda d, p: isinstance(p, Ack) and p.block == 1))
    assert bytes(link.received) == DATA_1500
    acks1 = link.packets("c>s", Ack)
    assert [(d.time, d.packet.block, d.dropped) for d in acks1[:2]] == [(0.0, 1, True), (5.0, 1, False)]
    assert times([d for d in link.packets("s>c", Data) if d.packet.block == 1]) == [0.0, 5.0]
    assert len([d for d in link.packets("s>c", Data) if d.packet.block == 2]) == 1
    assert link.client.stats.duplicates == 1


def test_lost_final_ack_is_answered_while_dallying_then_the_receiver_closes():
    link = download(DATA_1500, LOCKSTEP, drop=first(1, lambda d, p: isinstance(p, Ack) and p.block == 3))
    assert bytes(link.received) == DATA_1500
    final_acks = [d for d in link.packets("c>s", Ack) if d.packet.block == 3]
    assert [(d.time, d.dropped) for d in final_acks] == [(0.0, True), (5.0, False)]
    assert isinstance(link.server.outcome, TransferComplete)
    assert link.client.state is State.CLOSED
    assert link.now == 15.0  # the repeat at 5 s restarted the 10 s dally (2 x timeout); nothing else ran


def test_duplicated_data_is_delivered_once_and_duplicate_acks_cause_no_resend():
    link = download(DATA_1500, LOCKSTEP, dup=lambda d, p, i: True)
    assert bytes(link.received) == DATA_1500
    # every DATA arrives twice, is re-ACKed, and the server ignores each duplicate ACK (RFC 1123 4.2.3.1)
    assert len(link.packets("s>c", Data)) == 3
    assert link.client.stats.duplicates == 3
    assert link.server.stats.duplicates >= 3
    assert link.server.stats.retransmissions == 0
    assert link.now == 10.0  # no timeout fired; only the dally


def test_duplicate_ack_alone_does_not_trigger_a_resend():
    server = ReadServer(ReadRequest("f", "octet"), CLIENT, Classic(), file_size=None, now=0.0)
    server.feed(b"x" * 1000, now=0.0)
    server.feed_eof(now=0.0)
    assert [p for p, _ in sent(server)] == [Data(1, b"x" * 512)]
    server.receive_datagram(encode(Ack(1)), CLIENT, now=1.0)
    assert [p.block for p, _ in sent(server)] == [2]
    server.receive_datagram(encode(Ack(1)), CLIENT, now=1.5)  # duplicate: Sorcerer's Apprentice bait
    assert sent(server) == []
    assert server.get_timer() == 6.0  # the timer from DATA 2 is untouched
    assert server.stats.duplicates == 1


# ---------------------------------------------------------------------------------------------- TIDs
def test_wrong_tid_gets_error_5_and_the_transfer_continues_untouched():
    client = ReadClient("f", SERVER, LOCKSTEP, now=0.0)
    sent(client)
    client.receive_datagram(encode(Data(1, b"a" * 512)), SERVER_TID, now=0.1)
    assert [p for p, _ in sent(client)] == [Ack(1)]
    stranger = ("127.0.0.1", 6666)
    client.receive_datagram(encode(Data(2, b"EVIL")), stranger, now=0.2)
    assert sent(client) == [(Error(ErrorCode.UNKNOWN_TID, "Unknown transfer ID"), stranger)]
    assert client.state is State.TRANSFERRING and client.stats.wrong_tid == 1
    client.receive_datagram(encode(Error(5, "x")), stranger, now=0.25)  # an ERROR from a stranger: no answer
    assert sent(client) == []
    client.receive_datagram(encode(Data(2, b"good")), SERVER_TID, now=0.3)
    assert sent(client) == [(Ack(2), SERVER_TID)]
    assert b"".join(e.data for e in events(client) if isinstance(e, DataReceived)) == b"a" * 512 + b"good"


def test_first_answer_must_come_from_the_server_host():
    client = ReadClient("f", SERVER, LOCKSTEP, now=0.0)
    sent(client)
    client.receive_datagram(encode(Data(1, b"x")), ("127.0.0.9", 70), now=0.1)
    assert [p for p, _ in sent(client)] == [Error(5, "Unknown transfer ID")]
    assert client.state is State.REQUESTING


# ---------------------------------------------------------------------------------------------- windows
def test_gap_in_window_gets_one_immediate_ack_of_the_last_in_order_block():
    req = WriteRequest("f", "octet", (("windowsize", "4"),))
    server = WriteServer(req, CLIENT, Classic(windowsize=8), now=0.0)
    assert [p for p, _ in sent(server)] == [OptionAck((("windowsize", "4"),))]
    server.receive_datagram(encode(Data(1, b"1" * 512)), CLIENT, now=0.1)
    assert sent(server) == []  # mid-window: no ACK yet
    server.receive_datagram(encode(Data(3, b"3" * 512)), CLIENT, now=0.2)  # block 2 missing
    assert [p for p, _ in sent(server)] == [Ack(1)]
    server.receive_datagram(encode(Data(4, b"4" * 512)), CLIENT, now=0.3)
    assert sent(server) == []  # one gap ACK per gap, not one per stray block
    assert server.stats.out_of_order == 2
    for block in (2, 3, 4, 5):
        server.receive_datagram(encode(Data(block, bytes([48 + block]) * 512)), CLIENT, now=0.4)
    assert [p for p, _ in sent(server)] == [Ack(5)]  # a full window after the gap ACK


def test_go_back_n_sender_restarts_window_after_a_gap_ack():
    cfg = Classic(blksize=512, windowsize=4)
    data = bytes(512 * 6 + 10)
    link = upload(data, cfg, drop=first(1, lambda d, p: isinstance(p, Data) and p.block == 2))
    assert bytes(link.received) == data
    blocks = [d.packet.block for d in link.packets("c>s", Data)]
    assert blocks == [1, 2, 3, 4, 2, 3, 4, 5, 6, 7]
    assert link.now == 10.0  # recovered by the gap ACK, no timeout; then the server's dally
    assert link.client.stats.retransmissions == 3


@pytest.mark.parametrize("windowsize", [1, 8, 64])
def test_windowed_transfer_delivers_and_acks_once_per_window(windowsize):
    data = bytes(range(256)) * 200  # 51200 bytes, 100 blocks of 512 + empty final
    link = download(data, Classic(blksize=512, windowsize=windowsize))
    assert bytes(link.received) == data
    acks = [d.packet.block for d in link.packets("c>s", Ack)]
    blocks = 101
    expected = [0] + [b for b in range(1, blocks + 1) if b % windowsize == 0 or b == blocks]
    assert acks == expected


def test_windowsize_1_is_exactly_rfc1350_after_the_handshake():
    plain = download(DATA_1500, LOCKSTEP)
    windowed = download(DATA_1500, Classic(windowsize=1, blksize=512, timeout_option=5))

    def strip(link):
        return [(d.direction, d.packet) for d in link.log if isinstance(d.packet, (Data, Ack))]

    assert strip(plain) == [x for x in strip(windowed) if x != ("c>s", Ack(0))]


def test_block_numbers_roll_over_from_65535_to_0():
    data = bytes(i % 251 for i in range(8 * 65540))
    link = download(data, Classic(blksize=8, windowsize=16))
    assert bytes(link.received) == data
    numbers = [d.packet.block for d in link.packets("s>c", Data)]
    at = numbers.index(65535)
    assert numbers[at : at + 3] == [65535, 0, 1]


# ---------------------------------------------------------------------------------------------- retry budget
def test_unanswered_request_is_resent_then_fails_at_exact_deadlines():
    client = ReadClient("f", SERVER, Classic(retries=5), now=0.0)
    assert len(sent(client)) == 1
    deadlines = []
    while (t := client.get_timer()) is not None:
        deadlines.append(t)
        client.handle_timer(now=t - 0.001)  # early: nothing happens
        assert client.get_timer() == t
        client.handle_timer(now=t)
        out = sent(client)
        assert all(isinstance(p, ReadRequest) and a == SERVER for p, a in out)
    assert deadlines == [5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    failed = client.outcome
    assert isinstance(failed, TransferFailed) and failed.kind is FailureKind.TIMED_OUT
    assert "after 5 retransmissions" in failed.message
    assert client.stats.retransmissions == 5


def test_sender_gives_up_when_acks_stop_and_names_the_block():
    client = WriteClient("f", SERVER, LOCKSTEP, tsize=None, now=0.0)
    client.feed(b"y" * 2000, now=0.0)
    client.receive_datagram(encode(Ack(0)), SERVER_TID, now=1.0)
    assert [p.block for p, _ in sent(client) if isinstance(p, Data)] == [1]
    for t in (6.0, 11.0, 16.0):
        client.handle_timer(now=t)
        assert [p for p, _ in sent(client)] == [Data(1, b"y" * 512)]
    client.handle_timer(now=21.0)
    client.handle_timer(now=26.0)
    client.handle_timer(now=31.0)
    assert client.outcome == TransferFailed(
        FailureKind.TIMED_OUT, "timed out waiting for ACK of block 1 from 127.0.0.1:50001 after 5 retransmissions"
    )
    assert client.get_timer() is None and client.closed


# ---------------------------------------------------------------------------------------------- options
def test_oack_is_checked_and_applied():
    link = download(DATA_1500, Classic(blksize=1024, windowsize=4, timeout_option=3))
    negotiated = [e for e in link.events if isinstance(e, Negotiated)]
    assert negotiated[0] == Negotiated(blksize=1024, windowsize=4, timeout=3.0, tsize=1500, oack=True)
    assert bytes(link.received) == DATA_1500
    oack = link.packets("s>c", OptionAck)[0].packet
    assert dict(oack.options) == {"blksize": "1024", "timeout": "3", "tsize": "1500", "windowsize": "4"}


@pytest.mark.parametrize(
    "granted, why",
    [
        ((("blksize", "2048"),), "outside 8..1024"),
        ((("blksize", "4"),), "outside 8..1024"),
        ((("windowsize", "2"),), "not requested"),
        ((("timeout", "2"),), "not the 3"),
        ((("timeout", "3.0"),), "non-integer"),
        ((("blksize", "512"), ("BLKSIZE", "512")), "twice"),
    ],
)
def test_client_refuses_a_bad_oack_with_error_8(granted, why):
    client = ReadClient("f", SERVER, Classic(blksize=1024, timeout_option=3), now=0.0)
    sent(client)
    client.receive_datagram(encode(OptionAck(granted)), SERVER_TID, now=0.1)
    ((packet, addr),) = sent(client)
    assert addr == SERVER_TID and packet.code == ErrorCode.OPTION_REFUSED and why in packet.message
    assert client.outcome.kind is FailureKind.PROTOCOL_ERROR


def test_server_that_ignores_options_falls_back_to_rfc1350():
    client = ReadClient("f", SERVER, Classic(blksize=1024, windowsize=4), now=0.0)
    ((request, _),) = sent(client)
    assert dict(request.options) == {"blksize": "1024", "tsize": "0", "windowsize": "4"}
    client.receive_datagram(encode(Data(1, b"z" * 512)), SERVER_TID, now=0.1)
    assert [p for p, _ in sent(client)] == [Ack(1)]  # windowsize 1 in force: ACK every block
    assert client.negotiated == Negotiated(blksize=512, windowsize=1, timeout=5.0, tsize=None, oack=False)
    client.receive_datagram(encode(Data(2, b"z" * 600)), SERVER_TID, now=0.2)  # larger than blksize 512
    ((packet, _),) = sent(client)
    assert packet.code == ErrorCode.ILLEGAL_OPERATION and client.outcome.kind is FailureKind.PROTOCOL_ERROR


def test_server_acknowledges_only_what_was_asked_and_clamps():
    req = ReadRequest("f", "octet", (("BlkSize", "99999"), ("foo", "1"), ("windowsize", "500"), ("timeout", "0")))
    server = ReadServer(req, CLIENT, Classic(blksize=1428, windowsize=64), file_size=10, now=0.0)
    # RFC 2347: option names in the OACK are "copied from the original request"
    assert [p for p, _ in sent(server)] == [OptionAck((("BlkSize", "1428"), ("windowsize", "64")))]
    assert server.state is State.NEGOTIATING


def test_upload_larger_than_max_size_is_refused_before_any_data():
    link = upload(bytes(5000), Classic(), server_config=Classic(max_size=4096))
    assert link.log[1].packet == Error(ErrorCode.DISK_FULL, "file of 5000 bytes exceeds the 4096-byte limit")
    assert link.packets("c>s", Data) == []
    assert link.client.outcome.kind is FailureKind.PEER_ERROR
    assert link.server.outcome.kind is FailureKind.REFUSED


def test_upload_growing_past_max_size_without_tsize_is_stopped():
    link = upload(bytes(5000), LOCKSTEP, server_config=Classic(max_size=1024))
    assert link.server.outcome.kind is FailureKind.REFUSED and link.server.outcome.code == 3
    assert len(link.packets("c>s", Data)) == 3  # block 3 takes it past 1024 bytes


def test_peer_error_ends_the_transfer_and_is_not_answered():
    client = ReadClient("missing", SERVER, LOCKSTEP, now=0.0)
    sent(client)
    client.receive_datagram(encode(Error(1, "File not found")), SERVER_TID, now=0.1)
    assert sent(client) == []
    assert client.outcome == TransferFailed(
        FailureKind.PEER_ERROR, "peer sent ERROR 1 (file not found): File not found", 1
    )


def test_malformed_datagrams_are_dropped_and_counted():
    client = ReadClient("f", SERVER, LOCKSTEP, now=0.0)
    sent(client)
    client.receive_datagram(encode(Data(1, b"a" * 512)), SERVER_TID, now=0.1)
    sent(client)
    for junk in (b"", b"\x00", b"\x00\x09xx", b"\x00\x04\x00"):
        client.receive_datagram(junk, SERVER_TID, now=0.2)
    assert sent(client) == [] and client.state is State.TRANSFERRING
    assert sum(client.stats.malformed.values()) == 4


def test_abort_sends_error_to_the_peer():
    client = ReadClient("f", SERVER, LOCKSTEP, now=0.0)
    sent(client)
    client.receive_datagram(encode(Data(1, b"a" * 512)), SERVER_TID, now=0.1)
    sent(client)
    client.abort("interrupted")
    assert sent(client) == [(Error(0, "interrupted"), SERVER_TID)]
    assert client.outcome.kind is FailureKind.ABORTED and client.get_timer() is None


def test_netascii_translates_both_ways():
    text = b"line one\nline two\r\nbare cr\r end\n" * 100
    for run in (download, upload):
        link = run(text, Classic(mode="netascii", blksize=512))
        assert bytes(link.received) == text
        direction = "s>c" if run is download else "c>s"
        wire = b"".join(d.packet.data for d in link.packets(direction, Data))
        assert wire == text.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


# ---------------------------------------------------------------------------------------------- more RFC rows
@pytest.mark.parametrize("mode", ["mail", "binary", ""])
def test_unsupported_modes_are_refused_with_error_4(mode):
    from rudp.core.server import RequestRefused, check_request

    with pytest.raises(RequestRefused) as info:
        check_request(ReadRequest("f", mode))
    assert info.value.code == ErrorCode.ILLEGAL_OPERATION


def test_mode_names_are_case_insensitive():
    server = ReadServer(ReadRequest("f", "NetAscii"), CLIENT, Classic(), file_size=None, now=0.0)
    server.feed(b"a\nb", now=0.0)
    server.feed_eof(now=0.0)
    assert [p for p, _ in sent(server)] == [Data(1, b"a\r\nb")]


def test_options_missing_from_the_oack_fall_back_to_their_defaults():
    client = ReadClient("f", SERVER, Classic(blksize=1024, windowsize=4), now=0.0)
    sent(client)
    client.receive_datagram(encode(OptionAck((("blksize", "1024"),))), SERVER_TID, now=0.1)
    assert [p for p, _ in sent(client)] == [Ack(0)]
    assert client.negotiated.windowsize == 1 and client.negotiated.tsize is None
    client.receive_datagram(encode(Data(1, b"x" * 1024)), SERVER_TID, now=0.2)
    assert [p for p, _ in sent(client)] == [Ack(1)]  # windowsize 1: every block is acknowledged


def test_wrq_with_options_answered_by_a_plain_ack_0_runs_with_defaults():
    client = WriteClient("f", SERVER, Classic(blksize=1024, windowsize=4), tsize=2000, now=0.0)
    client.feed(b"y" * 2000, now=0.0)
    client.feed_eof(now=0.0)
    sent(client)
    client.receive_datagram(encode(Ack(0)), SERVER_TID, now=0.1)
    assert [p for p, _ in sent(client)] == [Data(1, b"y" * 512)]  # 512-byte blocks, one at a time
    assert client.negotiated == Negotiated(blksize=512, windowsize=1, timeout=5.0, tsize=None, oack=False)


@pytest.mark.parametrize(
    "options",
    [
        (("blksize", "7"),),
        (("windowsize", "0"),),
        (("windowsize", "65536"),),
        (("timeout", "256"),),
        (("tsize", "-1"),),
        (("blksize", " 512"),),
        (("timeout", "1.5"),),
    ],
)
def test_server_ignores_out_of_range_or_malformed_option_values(options):
    server = ReadServer(ReadRequest("f", "octet", options), CLIENT, Classic(), file_size=3, now=0.0)
    server.feed(b"abc", now=0.0)
    server.feed_eof(now=0.0)
    assert [p for p, _ in sent(server)] == [Data(1, b"abc")]  # no OACK: plain RFC 1350


def test_wrq_tsize_is_echoed_in_the_oack():
    server = WriteServer(WriteRequest("f", "octet", (("TSize", "12345"),)), CLIENT, Classic(), now=0.0)
    assert [p for p, _ in sent(server)] == [OptionAck((("TSize", "12345"),))]
    assert server.negotiated.tsize == 12345


def test_client_refuses_a_windowsize_larger_than_it_asked_for():
    client = WriteClient("f", SERVER, Classic(windowsize=4), tsize=None, now=0.0)
    sent(client)
    client.receive_datagram(encode(OptionAck((("windowsize", "8"),))), SERVER_TID, now=0.1)
    ((packet, _),) = sent(client)
    assert packet.code == ErrorCode.OPTION_REFUSED and "outside 1..4" in packet.message


def test_negotiated_timeout_governs_retransmission_and_dally_on_the_server():
    request = ReadRequest("f", "octet", (("timeout", "2"),))
    server = ReadServer(request, CLIENT, Classic(timeout=5.0), file_size=None, now=0.0)
    assert server.get_timer() == 2.0  # the OACK is resent on the negotiated timeout, not the local 5 s
    server.handle_timer(now=2.0)
    assert [type(p) for p, _ in sent(server)] == [OptionAck, OptionAck]
    upload_request = WriteRequest("f", "octet", (("timeout", "3"),))
    receiver = WriteServer(upload_request, CLIENT, Classic(timeout=5.0), now=0.0)
    assert receiver.get_timer() == 3.0
    receiver.receive_datagram(encode(Data(1, b"end")), CLIENT, now=1.0)
    assert receiver.state is State.DALLYING and receiver.get_timer() == 1.0 + 2 * 3.0


def test_windowed_timeout_resends_from_the_last_acknowledged_block():
    client = WriteClient("f", SERVER, Classic(windowsize=4), tsize=None, now=0.0)
    client.feed(bytes(512 * 10), now=0.0)
    client.feed_eof(now=0.0)
    sent(client)
    client.receive_datagram(encode(OptionAck((("windowsize", "4"),))), SERVER_TID, now=0.0)
    assert [p.block for p, _ in sent(client)] == [1, 2, 3, 4]
    client.receive_datagram(encode(Ack(4)), SERVER_TID, now=0.1)
    assert [p.block for p, _ in sent(client)] == [5, 6, 7, 8]
    client.handle_timer(now=5.1)  # the whole window was lost
    assert [p.block for p, _ in sent(client)] == [5, 6, 7, 8]
    assert client.stats.retransmissions == 4


def test_junk_from_the_server_host_does_not_claim_the_transfer_id():
    client = ReadClient("f", SERVER, LOCKSTEP, now=0.0)
    sent(client)
    client.receive_datagram(b"\x00\x07junk", ("127.0.0.1", 7777), now=0.1)
    assert client.peer is None and sent(client) == []
    client.receive_datagram(encode(Data(1, b"real")), SERVER_TID, now=0.2)
    assert sent(client) == [(Ack(1), SERVER_TID)] and isinstance(client.outcome, TransferComplete)


def test_a_dallying_receiver_ignores_new_blocks_without_an_error():
    server = WriteServer(WriteRequest("f", "octet"), CLIENT, Classic(), now=0.0)
    sent(server)
    server.receive_datagram(encode(Data(1, b"done")), CLIENT, now=0.1)
    assert sent(server) == [(Ack(1), CLIENT)]
    server.receive_datagram(encode(Data(2, b"z" * 600)), CLIENT, now=0.2)  # nonsense after the end
    assert sent(server) == [] and isinstance(server.outcome, TransferComplete)


def test_abort_withdraws_a_final_ack_that_has_not_left_yet():
    server = WriteServer(WriteRequest("f", "octet"), CLIENT, Classic(), now=0.0)
    sent(server)
    server.receive_datagram(encode(Data(1, b"last")), CLIENT, now=0.1)
    assert isinstance(server.next_event(), Negotiated) and isinstance(server.next_event(), DataReceived)
    assert isinstance(server.next_event(), TransferComplete)
    server.abort("file already exists", code=ErrorCode.FILE_EXISTS)  # e.g. the rename into place failed
    assert sent(server) == [(Error(ErrorCode.FILE_EXISTS, "file already exists"), CLIENT)]
    assert server.outcome.kind is FailureKind.ABORTED and server.closed


def test_requests_longer_than_512_octets_are_not_sent():
    with pytest.raises(ValueError, match="TFTP allows 512"):
        ReadClient("n" * 600, SERVER, Classic(), now=0.0)


@pytest.mark.parametrize("client_class", [ReadClient, WriteClient])
def test_error_8_to_an_optioned_request_is_retried_once_without_options(client_class):
    kw = {"tsize": 10} if client_class is WriteClient else {}
    client = client_class("f", SERVER, Classic(blksize=1024), now=0.0, **kw)
    ((first, _),) = sent(client)
    assert first.options
    client.receive_datagram(encode(Error(8, "options not supported")), SERVER_TID, now=0.5)
    ((retry, to),) = sent(client)
    assert to == SERVER and retry == type(first)("f", "octet", ())  # same request, no options
    assert client.get_timer() == 5.5 and client.peer is None
    client.receive_datagram(encode(Error(8, "still no")), SERVER_TID, now=0.6)
    assert client.outcome.kind is FailureKind.PEER_ERROR  # only once


def test_other_errors_to_an_optioned_request_are_final():
    client = ReadClient("f", SERVER, Classic(blksize=1024), now=0.0)
    sent(client)
    client.receive_datagram(encode(Error(1, "File not found")), SERVER_TID, now=0.5)
    assert sent(client) == [] and client.outcome.kind is FailureKind.PEER_ERROR


def test_each_repeated_final_data_restarts_the_dally():
    server = WriteServer(WriteRequest("f", "octet"), CLIENT, Classic(timeout=1.0), now=0.0)
    sent(server)
    server.receive_datagram(encode(Data(1, b"end")), CLIENT, now=0.0)
    assert server.get_timer() == 2.0
    server.receive_datagram(encode(Data(1, b"end")), CLIENT, now=1.5)  # the final ACK was lost
    assert sent(server)[-1] == (Ack(1), CLIENT) and server.get_timer() == 3.5


def test_a_client_takes_as_its_peer_only_a_first_answer_from_the_servers_host() -> None:
    # RFC 1350 section 4: the server's TID is the port its first answer comes from.  A stray packet from the
    # server's host that is no answer (an ACK to a download, a DATA to an upload, a request) must not become it.
    from rudp.core.client import ReadClient, WriteClient
    from rudp.core.config import TransferConfig as Config
    from rudp.wire.codec import decode as dec
    from rudp.wire.codec import encode as enc
    from rudp.wire.packets import Ack as A
    from rudp.wire.packets import Data as D
    from rudp.wire.packets import Error as E
    from rudp.wire.packets import ReadRequest as R

    server = ("127.0.0.1", 69)
    config = Config(blksize=512, windowsize=1, digest=False)
    for client, strays, answer in (
        (ReadClient("f", server, config, now=0.0), [A(5), D(0, b"x"), R("f", "octet", ())], D(1, b"tail")),
        (WriteClient("f", server, config, tsize=None, now=0.0), [D(1, b"x"), A(3)], A(0)),
    ):
        client.datagrams_to_send()
        for stray in strays:
            client.receive_datagram(enc(stray), ("127.0.0.1", 5555), now=0.1)
            assert client.peer is None and client.datagrams_to_send() == []  # ignored: no ERROR 5 to that host
        client.receive_datagram(enc(answer), ("127.0.0.1", 6000), now=0.2)
        assert client.peer == ("127.0.0.1", 6000)
        assert not any(isinstance(dec(d), E) for d, _ in client.datagrams_to_send())
