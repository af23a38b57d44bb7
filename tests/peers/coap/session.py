"""One verified controller session: the three ChaCha20-Poly1305 keys derived from the
pair-verify secret and a strict message counter per key."""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from tests.peers.coap.pairing import VerifiedSession, hkdf_sha512


def _counter_nonce(counter: int) -> bytes:
    """Four zero bytes, then the 64-bit little-endian message counter."""
    return b"\x00" * 4 + struct.pack("<Q", counter)


class SecureSession:
    """Requests are opened with the controller-to-accessory key, responses and events sealed
    with their own keys. Every message must carry the next counter: a replayed, skipped or
    tampered message fails authentication (cryptography's InvalidTag) and moves nothing."""

    def __init__(self, verified: VerifiedSession) -> None:
        secret = verified.shared_secret
        self.controller_id = verified.controller_id
        # "Read"/"Write" are named from the controller's side.
        self._requests = ChaCha20Poly1305(
            hkdf_sha512(secret, b"Control-Salt", b"Control-Write-Encryption-Key")
        )
        self._responses = ChaCha20Poly1305(
            hkdf_sha512(secret, b"Control-Salt", b"Control-Read-Encryption-Key")
        )
        self._events = ChaCha20Poly1305(
            hkdf_sha512(secret, b"Event-Salt", b"Event-Read-Encryption-Key")
        )
        self.requests_opened = 0
        self.responses_sealed = 0
        self.events_sealed = 0

    def open_request(self, ciphertext: bytes) -> bytes:
        plaintext = self._requests.decrypt(_counter_nonce(self.requests_opened), ciphertext, None)
        self.requests_opened += 1
        return plaintext

    def seal_response(self, plaintext: bytes) -> bytes:
        sealed = self._responses.encrypt(_counter_nonce(self.responses_sealed), plaintext, None)
        self.responses_sealed += 1
        return sealed

    def seal_event(self, plaintext: bytes) -> bytes:
        sealed = self._events.encrypt(_counter_nonce(self.events_sealed), plaintext, None)
        self.events_sealed += 1
        return sealed
