"""TLV8, the type-length-value format of HAP pairing messages and PDU bodies, as both
simulated accessories (BLE and CoAP) and the raw pair-setup client read and write it, and
the pairing messages' TLV types, error codes and methods (HAP specification, tables 5-5 to
5-7)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

_TLV_CHUNK = 255


class Tlv8:
    """TLV8: one type byte, one length byte, up to 255 value bytes; longer values are split
    into consecutive items of the same type, which a reader joins again."""

    @staticmethod
    def encode(items: Iterable[tuple[int, bytes]]) -> bytes:
        out = bytearray()
        for tlv_type, value in items:
            chunks = [value[i : i + _TLV_CHUNK] for i in range(0, len(value), _TLV_CHUNK)]
            for chunk in chunks or [b""]:
                out += bytes((tlv_type, len(chunk))) + chunk
        return bytes(out)

    @staticmethod
    def decode(data: bytes) -> list[tuple[int, bytes]]:
        """Items in order; a 255-byte item followed by one of the same type is one value.

        Raises ValueError on a truncated item.
        """
        items: list[tuple[int, bytes]] = []
        offset = 0
        continues = False
        while offset < len(data):
            if offset + 2 > len(data):
                raise ValueError("truncated TLV8 header")
            tlv_type, length = data[offset], data[offset + 1]
            value = data[offset + 2 : offset + 2 + length]
            if len(value) != length:
                raise ValueError("truncated TLV8 value")
            if continues and items[-1][0] == tlv_type:
                items[-1] = (tlv_type, items[-1][1] + value)
            else:
                items.append((tlv_type, value))
            continues = length == _TLV_CHUNK
            offset += 2 + length
        return items

    @staticmethod
    def as_dict(data: bytes) -> dict[int, bytes]:
        """The last value of each type (pairing messages carry each type once)."""
        return dict(Tlv8.decode(data))

    @staticmethod
    def sequence(tlv_type: int, elements: Iterable[bytes]) -> bytes:
        """Items of one type separated by an empty separator item (type 0), as HAP lists
        repeated structures in one value."""
        return b"\x00\x00".join(Tlv8.encode([(tlv_type, element)]) for element in elements)


class PairingTag(IntEnum):
    """TLV types of pair-setup, pair-verify and pairings messages."""

    METHOD = 0x00
    IDENTIFIER = 0x01
    SALT = 0x02
    PUBLIC_KEY = 0x03
    PROOF = 0x04
    ENCRYPTED_DATA = 0x05
    STATE = 0x06
    ERROR = 0x07
    SIGNATURE = 0x0A
    PERMISSIONS = 0x0B
    SESSION_ID = 0x0E
    SEPARATOR = 0xFF


class PairingError(IntEnum):
    UNKNOWN = 0x01
    AUTHENTICATION = 0x02
    BACKOFF = 0x03
    MAX_PEERS = 0x04
    MAX_TRIES = 0x05
    UNAVAILABLE = 0x06
    BUSY = 0x07


class PairingMethod(IntEnum):
    PAIR_SETUP = 0
    PAIR_SETUP_WITH_AUTH = 1
    ADD_PAIRING = 3
    REMOVE_PAIRING = 4
    LIST_PAIRINGS = 5
    PAIR_RESUME = 6
