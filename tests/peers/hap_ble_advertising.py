"""What a HAP-BLE accessory puts in its advertisements (Apple manufacturer data, company 0x004C).

Regular advertisement (type 0x06): status flags (bit 0: not paired), the 48-bit device id, the
category, the global state number (GSN), the configuration number, the compatible version and
a setup hash. Encrypted notification (type 0x11): the advertising identifier, then the GSN, the
characteristic's iid and its value (8 bytes) sealed with the broadcast key, with a 4-byte tag.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from tests.peers.hap_ble_crypto import seal_broadcast
from tests.support.ble_air import Advertisement

APPLE_COMPANY_ID = 0x004C
TYPE_HAP = 0x06
TYPE_ENCRYPTED_NOTIFICATION = 0x11
SUBTYPE = 0x20  # the upper three bits of the subtype/length byte
COMPATIBLE_VERSION = 0x02
STATUS_NOT_PAIRED = 0x01
NOTIFICATION_VALUE_LENGTH = 8


@dataclass(frozen=True)
class AccessoryAdvertising:
    local_name: str
    device_id: str  # "AA:BB:CC:DD:EE:FF"
    category: int
    setup_id: str  # the 4 characters of the X-HM:// setup payload

    @property
    def device_id_bytes(self) -> bytes:
        return bytes.fromhex(self.device_id.replace(":", ""))

    def regular(self, *, paired: bool, gsn: int, config_number: int) -> Advertisement:
        setup_hash = hashlib.sha512((self.setup_id + self.device_id).encode()).digest()[:4]
        body = (
            bytes((0x00 if paired else STATUS_NOT_PAIRED,))
            + self.device_id_bytes
            + struct.pack("<HHBB", self.category, gsn, config_number, COMPATIBLE_VERSION)
            + setup_hash
        )
        return self._advertisement(TYPE_HAP, body)

    def encrypted_notification(self, key: bytes, gsn: int, iid: int, value: bytes) -> Advertisement:
        advertising_id = self.device_id_bytes
        plaintext = struct.pack("<HH", gsn, iid) + value.ljust(NOTIFICATION_VALUE_LENGTH, b"\0")
        body = advertising_id + seal_broadcast(key, gsn, advertising_id, plaintext)
        return self._advertisement(TYPE_ENCRYPTED_NOTIFICATION, body)

    def _advertisement(self, kind: int, body: bytes) -> Advertisement:
        data = bytes((kind, SUBTYPE | len(body))) + body
        return Advertisement(self.local_name, {APPLE_COMPANY_ID: data})
