"""HAP-BLE PDUs and TLV8, the accessory's side, written from the HAP specification.

A request travels as GATT writes to one characteristic: a first fragment
`control(0x00) opcode tid iid(le16) [body_length(le16) body...]`, then as many continuation
fragments `control(0x80) tid body...` as the body needs. The response is read back from the same
characteristic: `control(0x02) tid status [body_length(le16) body...]`, continued with
`control(0x82) tid body...`. Bodies are TLV8 lists of HAP parameters.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tests.peers.pdu_codes import PduStatus
from tests.peers.tlv8 import Tlv8

CONTROL_CONTINUATION = 0x80  # bit 7: a fragment after the first
CONTROL_TYPE_MASK = 0x0E  # bits 1-3: 000 request, 001 response
CONTROL_RESPONSE = 0x02


class PduError(ValueError):
    """Bytes that are not a well-formed HAP-BLE request (the accessory drops the link)."""


def tlv_dict(data: bytes) -> dict[int, bytes]:
    """A TLV8 body by type; malformed TLV8 is a malformed request."""
    try:
        return Tlv8.as_dict(data)
    except ValueError as error:
        raise PduError(str(error)) from error


@dataclass(frozen=True)
class Request:
    opcode: int
    tid: int
    iid: int
    body: bytes  # b"" when the request carried no body


class RequestAssembler:
    """Rebuilds one request from the fragments the controller writes, in order."""

    def __init__(self) -> None:
        self._header: tuple[int, int, int] | None = None
        self._expected = 0
        self._body = bytearray()

    def feed(self, fragment: bytes) -> Request | None:
        """The complete request once its last fragment arrived, else None."""
        if not fragment:
            raise PduError("empty fragment")
        if fragment[0] & CONTROL_CONTINUATION:
            return self._continue(fragment)
        if fragment[0] & CONTROL_TYPE_MASK:
            raise PduError(f"not a request: control 0x{fragment[0]:02x}")
        if len(fragment) < 5:
            raise PduError("request header shorter than 5 bytes")
        opcode, tid, iid = fragment[1], fragment[2], struct.unpack_from("<H", fragment, 3)[0]
        self._header = (opcode, tid, iid)
        self._body = bytearray()
        if len(fragment) == 5:
            self._expected = 0
        elif len(fragment) < 7:
            raise PduError("body length cut short")
        else:
            self._expected = struct.unpack_from("<H", fragment, 5)[0]
            self._body += fragment[7:]
        return self._complete()

    def _continue(self, fragment: bytes) -> Request | None:
        if self._header is None or len(fragment) < 2:
            raise PduError("continuation without a first fragment")
        if fragment[1] != self._header[1]:
            raise PduError(f"continuation of transaction {fragment[1]}, not {self._header[1]}")
        self._body += fragment[2:]
        return self._complete()

    def _complete(self) -> Request | None:
        assert self._header is not None
        if len(self._body) < self._expected:
            return None
        if len(self._body) > self._expected:
            raise PduError("body longer than its declared length")
        opcode, tid, iid = self._header
        self._header = None
        return Request(opcode, tid, iid, bytes(self._body))


@dataclass(frozen=True)
class Response:
    tid: int
    status: PduStatus
    body: bytes | None = None  # None: no body at all (not even a length)

    def fragments(self, size: int) -> list[bytes]:
        """The response cut to at most `size` bytes per GATT read."""
        header = bytes((CONTROL_RESPONSE, self.tid, self.status))
        if self.body is None:
            return [header]
        first = header + struct.pack("<H", len(self.body)) + self.body[: size - 5]
        rest = self.body[size - 5 :]
        step = size - 2
        continuations = [
            bytes((CONTROL_RESPONSE | CONTROL_CONTINUATION, self.tid)) + rest[i : i + step]
            for i in range(0, len(rest), step)
        ]
        return [first, *continuations]
