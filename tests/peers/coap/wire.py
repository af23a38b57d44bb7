"""Byte formats of HAP over Thread: the TLV types of pairing messages and PDU bodies, and
HAP PDUs (HAP-BLE framing, as HAP over Thread carries them in CoAP bodies). TLV8 itself is
`tests.peers.tlv8`."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass


class ParamTag(enum.IntEnum):
    """TLV types inside HAP PDU bodies (HAP-BLE "HAP-Param" types and the database tree)."""

    SEPARATOR = 0x00
    VALUE = 0x01
    CHARACTERISTIC_TYPE = 0x04
    CHARACTERISTIC_IID = 0x05
    SERVICE_TYPE = 0x06
    SERVICE_IID = 0x07
    CHARACTERISTIC_PROPERTIES = 0x0A
    USER_DESCRIPTION = 0x0B
    PRESENTATION_FORMAT = 0x0C
    VALID_RANGE = 0x0D
    STEP_VALUE = 0x0E
    SERVICE_PROPERTIES = 0x0F
    LINKED_SERVICES = 0x10
    VALID_VALUES = 0x11
    # The accessory database (opcode 0x09) nests characteristics in services in accessories.
    CHARACTERISTIC = 0x13
    CHARACTERISTICS = 0x14
    SERVICE = 0x15
    SERVICES = 0x16
    ACCESSORIES = 0x18
    ACCESSORY = 0x19
    ACCESSORY_IID = 0x1A


class OpCode(enum.IntEnum):
    CHARACTERISTIC_SIGNATURE_READ = 0x01
    CHARACTERISTIC_WRITE = 0x02
    CHARACTERISTIC_READ = 0x03
    CHARACTERISTIC_TIMED_WRITE = 0x04
    CHARACTERISTIC_EXECUTE_WRITE = 0x05
    SERVICE_SIGNATURE_READ = 0x06
    DATABASE_READ = 0x09
    SUBSCRIBE = 0x0B
    UNSUBSCRIBE = 0x0C


class PduStatus(enum.IntEnum):
    SUCCESS = 0
    UNSUPPORTED_PDU = 1
    MAX_PROCEDURES = 2
    INSUFFICIENT_AUTHORIZATION = 3
    INVALID_INSTANCE_ID = 4
    INSUFFICIENT_AUTHENTICATION = 5
    INVALID_REQUEST = 6


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
