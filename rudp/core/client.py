"""Client sessions: ``ReadClient`` (RRQ, downloads) and ``WriteClient`` (WRQ, uploads).

A client sends its request to the server's well-known port and learns the server's transfer ID (a new port,
RFC 1350 section 4) from the first answer that comes from the server's host.  From then on only that address and
port are the peer.  If the server acknowledges options the client checks the OACK and refuses a bad one with
ERROR 8 (RFC 2347); if the server answers as plain RFC 1350 (DATA 1 or ACK 0) the option defaults apply.
"""

from __future__ import annotations

from rudp.core.config import TransferConfig
from rudp.core.events import Negotiated
from rudp.core.options import DIGEST_ASK, TRAILER, OptionError, accept_oack, defaults, request_options
from rudp.core.receiving import ReceivingSession
from rudp.core.sending import SendingSession
from rudp.core.session import Address, Session, State
from rudp.wire.codec import encode
from rudp.wire.packets import Ack, Data, Error, ErrorCode, OptionAck, Options, Packet, ReadRequest, WriteRequest

__all__ = ["ReadClient", "WriteClient", "MAX_REQUEST"]

MAX_REQUEST = 512  # RFC 2347, Packet Formats: "The maximum size of a request packet is 512 octets."


def _request(packet: ReadRequest | WriteRequest) -> bytes:
    datagram = encode(packet)
    if len(datagram) > MAX_REQUEST:
        raise ValueError(f"the request for {packet.filename!r} would be {len(datagram)} bytes; TFTP allows 512")
    return datagram


class _Client(Session):
    _requested: Options
    filename: str

    def _send_request(self, now: float) -> None:
        raise NotImplementedError

    def _recover_from(self, error: Error, now: float) -> bool:
        # RFC 2347, Negotiation Protocol: "In the event that a server returns an error for a request which carries
        # an option, the client may attempt to repeat the request without appending any options."  Done once,
        # and only for error 8, the error that refuses options; "file not found" would not change.
        if self.state is State.REQUESTING and self._requested and error.code == ErrorCode.OPTION_REFUSED:
            self._requested = ()
            self.peer = None  # the retried request is answered from a new TID
            self._progress()
            self._send_request(now)
            return True
        return False

    def _claim_peer(self, addr: Address, packet: Packet) -> bool:
        # RFC 1350 section 4: the server answers from a TID of its own choosing; the first answer to the request
        # from the server's host fixes it for the rest of the transfer.  Only an answer can: any other packet
        # from that host (a stray ACK, a request) would otherwise lock the client onto the wrong port.
        if self.server is not None and addr[0] == self.server[0] and self._is_first_answer(packet):
            self.peer = addr
            return True
        return False

    def _may_answer_later(self, addr: Address) -> bool:
        # Something odd from the server's host before its answer (a DATA 0, a stray ACK): ignore it rather than
        # send ERROR 5, which would end the very transfer whose first answer may still be on its way.
        return self.server is not None and addr[0] == self.server[0]

    def _is_first_answer(self, packet: Packet) -> bool:
        """An OACK, an ERROR, or the packet RFC 1350 answers this request with (DATA 1 or ACK 0)."""
        return isinstance(packet, (OptionAck, Error))

    def _check_oack(self, oack: OptionAck) -> Negotiated | None:
        try:
            return accept_oack(self._requested, oack.options, self.config)
        except OptionError as exc:
            # RFC 2347, Negotiation Protocol: "If the client rejects the OACK, then it sends an ERROR packet, with
            # error code 8, to the server and the transfer is terminated."
            self._protocol_error(str(exc), code=ErrorCode.OPTION_REFUSED)
            return None


class ReadClient(_Client, ReceivingSession):
    """Download ``filename`` from ``server`` (RRQ)."""

    def _is_first_answer(self, packet: Packet) -> bool:
        return super()._is_first_answer(packet) or (isinstance(packet, Data) and packet.block == 1)

    def __init__(self, filename: str, server: Address, config: TransferConfig, *, now: float) -> None:
        ReceivingSession.__init__(self, config, peer=None)
        self.server = server
        self.filename = filename
        # RFC 2349: "In Read Request packets, a size of "0" is specified in the request"; a digest option likewise
        # asks the server for the digest of the file it sends, after the data or in its OACK (spec section 7.7).
        self._requested = request_options(config, tsize=0, digest=TRAILER if config.digest_trailer else DIGEST_ASK)
        self._send_request(now)

    def _send_request(self, now: float) -> None:
        assert self.server is not None
        request = _request(ReadRequest(self.filename, self.config.mode, self._requested))
        self._send_remembered(request, self.server, now)

    def _on_packet(self, packet: Packet, now: float) -> None:
        if self.state is State.REQUESTING:
            if isinstance(packet, OptionAck):
                self._answered(now)
                negotiated = self._check_oack(packet)
                if negotiated is not None:
                    self._start_transfer(negotiated)
                    # RFC 2347: "an ACK (with the data block number set to 0) is sent by the client to confirm
                    # the values in the server's OACK packet"
                    self._ack(0, now)
            elif isinstance(packet, Data) and packet.block == 1:
                # RFC 1350 section 6: a read request is answered by DATA 1.  Any other block cannot be the answer;
                # taken as one, DATA 0 looked like a repeat of the block our "last ACK" (the request) answered
                # and made us send the request again to the server's well-known port.
                self._start_transfer(defaults(self.config))
                self._on_data(packet, now)
            return
        if isinstance(packet, OptionAck) and self._expected == 1:
            assert self._last_sent is not None
            self._last_sent_at = None  # Karn's rule: DATA 1 could answer either copy
            self._send_to(*self._last_sent)  # the OACK came again: our ACK 0 was lost
            return
        self._data_packet(packet, now)


class WriteClient(_Client, SendingSession):
    """Upload to ``filename`` on ``server`` (WRQ).  ``tsize`` is the file's size, if known (RFC 2349), and
    ``digest`` its hex digest by ``config.digest_algorithm``, to offer in the request for the server to verify;
    None offers the digest after the data instead, if ``config.digest_trailer`` (spec section 7.7)."""

    def _is_first_answer(self, packet: Packet) -> bool:
        return super()._is_first_answer(packet) or (isinstance(packet, Ack) and packet.block == 0)

    def __init__(
        self,
        filename: str,
        server: Address,
        config: TransferConfig,
        *,
        tsize: int | None,
        now: float,
        digest: str | None = None,
    ) -> None:
        SendingSession.__init__(self, config, peer=None)
        self.server = server
        self.filename = filename
        if digest is None and config.digest_trailer and config.digest:
            digest = TRAILER
            self._offer_trailer(config.digest_algorithm)  # fed bytes are hashed from the first one
        self._requested = request_options(config, tsize=tsize, digest=digest)
        self._send_request(now)

    def _send_request(self, now: float) -> None:
        assert self.server is not None
        self._request = _request(WriteRequest(self.filename, self.config.mode, self._requested))
        self._send_to(self._request, self.server)
        self._request_sent_at: float | None = now
        self._arm(now)

    def _on_packet(self, packet: Packet, now: float) -> None:
        if self.state is State.REQUESTING:
            if isinstance(packet, (OptionAck, Ack)):
                self._rtt_sample(self._request_sent_at, now)
            if isinstance(packet, OptionAck):
                negotiated = self._check_oack(packet)
                if negotiated is not None:
                    # RFC 2347: "If the transfer was initiated with a Write Request, then the client begins the
                    # transfer with the first DATA packet, using the negotiated values."
                    self._start_transfer(negotiated, now)
            elif isinstance(packet, Ack) and packet.block == 0:
                self._start_transfer(defaults(self.config), now)
            return
        self._data_packet(packet, now)

    def _on_timeout(self, now: float) -> None:
        if self.state is State.REQUESTING:
            if self._retry("an answer to the write request"):
                self.stats.retransmissions += 1
                self._request_sent_at = None  # Karn's rule
                assert self.server is not None
                self._send_to(self._request, self.server)
                self._arm(now)
            return
        SendingSession._on_timeout(self, now)
