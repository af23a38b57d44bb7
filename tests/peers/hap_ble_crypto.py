"""Key derivation and ChaCha20-Poly1305 for a HAP-BLE accessory, written from the HAP spec.

Nonces are 96 bits: four zero bytes, then 8 bytes that are either a little-endian counter (the
secure session, broadcast notifications) or an ASCII label such as b"PS-Msg05" (pairing).
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TAG_LENGTH = 16
BROADCAST_TAG_LENGTH = 4  # broadcast notifications carry a truncated tag


class AuthTagError(Exception):
    """Ciphertext whose Poly1305 tag does not verify: tampered, replayed, or out of step."""


def hkdf_sha512(key: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA512(), length=length, salt=salt, info=info).derive(key)


def counter_nonce(counter: int) -> bytes:
    return bytes(4) + struct.pack("<Q", counter)


def label_nonce(label: bytes) -> bytes:
    return bytes(4) + label.rjust(8, b"\x00")


def seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    return ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad or None)


def open_sealed(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes = b"") -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, aad or None)
    except InvalidTag as exc:
        raise AuthTagError("authentication tag does not verify") from exc


class SessionCipher:
    """The secure session of one connection: a key and a counter per direction.

    Every GATT write from the controller and every GATT read it makes of a HAP characteristic
    is one sealed message; each direction's counter starts at 0 and moves on by one per
    message, so a replayed or reordered message fails its tag.
    """

    def __init__(self, shared_secret: bytes) -> None:
        self.shared_secret = shared_secret
        self._from_controller = hkdf_sha512(
            shared_secret, b"Control-Salt", b"Control-Write-Encryption-Key"
        )
        self._to_controller = hkdf_sha512(
            shared_secret, b"Control-Salt", b"Control-Read-Encryption-Key"
        )
        self.received = 0
        self.sent = 0

    def open_from_controller(self, data: bytes) -> bytes:
        plaintext = open_sealed(self._from_controller, counter_nonce(self.received), data)
        self.received += 1
        return plaintext

    def seal_to_controller(self, plaintext: bytes) -> bytes:
        sealed = seal(self._to_controller, counter_nonce(self.sent), plaintext)
        self.sent += 1
        return sealed


def broadcast_key(shared_secret: bytes, controller_ltpk: bytes) -> bytes:
    """The key for encrypted advertisements, from the session the controller asked in."""
    return hkdf_sha512(shared_secret, controller_ltpk, b"Broadcast-Encryption-Key")


def seal_broadcast(key: bytes, gsn: int, advertising_id: bytes, plaintext: bytes) -> bytes:
    """Ciphertext plus the first 4 tag bytes; the GSN is the nonce, the advertising id the AAD."""
    sealed = seal(key, counter_nonce(gsn), plaintext, advertising_id)
    return sealed[: -TAG_LENGTH + BROADCAST_TAG_LENGTH]
