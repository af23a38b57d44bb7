"""HAP PDUs as HAP over Thread carries them in CoAP bodies (HAP-BLE framing). Their codes are
`tests.peers.pdu_codes`, TLV8 and the pairing TLV types `tests.peers.tlv8`."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tests.peers.pdu_codes import PduStatus

_REQUEST_HEADER = struct.Struct("<BBBH")  # control, opcode, transaction id, instance id
_LENGTH = struct.Struct("<H")
_RESPONSE_HEADER = struct.Struct("<BBBH")  # control, transaction id, status, body length
_EVENT_HEADER = struct.Struct("<BHH")  # reserved, instance id, body length
_CONTROL_TYPE_MASK = 0b0000_1110  # bits 1-3: 000 request, 001 response
_CONTROL_RESPONSE = 0b0000_0010
_CONTROL_CONTINUATION = 0b1000_0000


@dataclass(frozen=True, slots=True)
class PduRequest:
    control: int
    opcode: int
    tid: int
    iid: int
    body: bytes

    @property
    def is_plain_request(self) -> bool:
        """A first fragment of a request; CoAP carries whole PDUs, so nothing else is valid."""
        return self.control & (_CONTROL_TYPE_MASK | _CONTROL_CONTINUATION) == 0


class PduCodec:
    """HAP PDUs: requests in, responses and event records out.

    Several PDUs may share one CoAP body, back to back. A request's body length may be left
    out when it has no body (HAP-BLE allows that for the last PDU).
    """

    @staticmethod
    def decode_requests(data: bytes) -> list[PduRequest]:
        """Raises ValueError on a truncated PDU."""
        requests = []
        offset = 0
        while offset < len(data):
            header_end = offset + _REQUEST_HEADER.size
            if header_end > len(data):
                raise ValueError("truncated PDU header")
            control, opcode, tid, iid = _REQUEST_HEADER.unpack_from(data, offset)
            body = b""
            offset = header_end
            if offset < len(data):
                if offset + _LENGTH.size > len(data):
                    raise ValueError("truncated PDU body length")
                (length,) = _LENGTH.unpack_from(data, offset)
                offset += _LENGTH.size
                body = data[offset : offset + length]
                if len(body) != length:
                    raise ValueError("truncated PDU body")
                offset += length
            requests.append(PduRequest(control, opcode, tid, iid, body))
        return requests

    @staticmethod
    def encode_response(tid: int, status: PduStatus, body: bytes = b"") -> bytes:
        # The body length is sent even when zero (HAP-BLE may omit it; aiohomekit needs it).
        return _RESPONSE_HEADER.pack(_CONTROL_RESPONSE, tid, status, len(body)) + body

    @staticmethod
    def encode_event(iid: int, body: bytes) -> bytes:
        return _EVENT_HEADER.pack(0, iid, len(body)) + body
