"""Server sessions: ``ReadServer`` (answers an RRQ by sending) and ``WriteServer`` (answers a WRQ by receiving).

The server's driver decodes the request on its well-known port, checks the file (that is I/O, so it is the
driver's job), opens a new socket (a new TID) and builds one of these with the request.  ``check_request``
refuses what no file check can fix (an unsupported mode).  A refusal discovered while negotiating (a WRQ whose
tsize exceeds ``max_size``) leaves the new session already closed with its ERROR queued to send.
"""

from __future__ import annotations

from dataclasses import replace

from rudp.core.config import MODES, TransferConfig
from rudp.core.digests import TRAILER
from rudp.core.events import FailureKind
from rudp.core.options import RequestRefused, server_negotiate
from rudp.core.receiving import ReceivingSession
from rudp.core.sending import SendingSession
from rudp.core.session import Address, State
from rudp.core.validation import AddressValidation
from rudp.wire.codec import encode
from rudp.wire.packets import Ack, ErrorCode, OptionAck, Packet, ReadRequest, Request, WriteRequest

__all__ = ["check_request", "ReadServer", "WriteServer", "RequestRefused"]


def check_request(request: Request) -> None:
    """Raise RequestRefused for a request no server of ours would accept, whatever the file."""
    if request.mode.lower() not in MODES:
        # RFC 1350 section 5 lists "mail", which is obsolete; anything else is not TFTP.
        raise RequestRefused(ErrorCode.ILLEGAL_OPERATION, f"unsupported transfer mode {request.mode!r}")
    if not request.filename:
        raise RequestRefused(ErrorCode.ILLEGAL_OPERATION, "empty file name")


def _for_request(config: TransferConfig, request: Request) -> TransferConfig:
    return replace(config, mode=request.mode.lower())


class ReadServer(AddressValidation, SendingSession):
    """Send a file to ``client``.  ``file_size`` is announced as tsize when asked (None: don't announce), and
    ``file_digest`` (the driver hashes the file when ``wanted_digest`` names an algorithm) as the digest when
    asked."""

    def __init__(
        self,
        request: ReadRequest,
        client: Address,
        config: TransferConfig,
        *,
        file_size: int | None,
        now: float,
        file_digest: str | None = None,
    ) -> None:
        super().__init__(_for_request(config, request), peer=client)
        try:
            oack, self._plan = server_negotiate(request, self.config, file_size=file_size, file_digest=file_digest)
        except RequestRefused as refusal:
            self._fail(FailureKind.REFUSED, refusal.message, code=refusal.code)
            return
        if self._plan.digest is not None and self._plan.digest.value == TRAILER:
            self._offer_trailer(self._plan.digest.algorithm)  # spec 7.7: the digest follows the file
        # RFC 2349: the OACK puts the negotiated timeout in force at once
        self.rtt.set_maximum(self._plan.timeout)
        self._oack_sent_at: float | None = None
        if oack:
            self._oack = encode(OptionAck(oack))
            self._move(State.NEGOTIATING)
            self._send(self._oack)
            self._oack_sent_at = now
            self._arm(now)
        else:
            self._start_transfer(self._plan, now)

    def _on_packet(self, packet: Packet, now: float) -> None:
        if self.state is State.NEGOTIATING:
            if isinstance(packet, Ack) and packet.block == 0:
                self._rtt_sample(self._oack_sent_at, now)
                self._start_transfer(self._plan, now)  # RFC 2347: ACK 0 confirms the OACK to an RRQ
            return
        self._data_packet(packet, now)

    def _on_timeout(self, now: float) -> None:
        if self.state is State.NEGOTIATING:
            if self._retry("ACK of the option acknowledgment"):
                self.stats.retransmissions += 1
                self._oack_sent_at = None  # Karn: an answer now could be to either copy
                self._send(self._oack)
                self._arm(now)
            return
        super()._on_timeout(now)


class WriteServer(AddressValidation, ReceivingSession):
    """Receive a file from ``client``."""

    def __init__(self, request: WriteRequest, client: Address, config: TransferConfig, *, now: float) -> None:
        super().__init__(_for_request(config, request), peer=client)
        try:
            oack, plan = server_negotiate(request, self.config, file_size=None)
        except RequestRefused as refusal:
            self._fail(FailureKind.REFUSED, refusal.message, code=refusal.code)
            return
        self._start_transfer(plan)
        # The OACK, or ACK 0 without options, invites DATA 1; the timer resends it until DATA 1 comes.
        first = encode(OptionAck(oack)) if oack else None
        if first is None:
            self._ack(0, now)
        else:
            self._send_remembered(first, client, now)

    def _on_packet(self, packet: Packet, now: float) -> None:
        self._data_packet(packet, now)
