"""Pairing, accessory side: SRP-6a, pair-setup M1-M6, pair-verify M1-M4 and the Pairings
characteristic's add/remove/list, as the HAP specification describes them."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pyhap.params import get_srp_context

from tests.peers.tlv8 import PairingError, PairingMethod, PairingTag, Tlv8

_LOGGER = logging.getLogger(__name__)

MAX_PAIRINGS = 16
MAX_FAILED_SETUPS = 100
SETUP_STALE_AFTER = 30.0  # seconds before an abandoned pair-setup stops blocking others
_PERMISSION_ADMIN = 0x01


def hkdf_sha512(key: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA512(), length=length, salt=salt, info=info).derive(key)


def _label_nonce(label: bytes) -> bytes:
    """Pairing messages use a 12-byte nonce: four zero bytes and an 8-byte label."""
    return b"\x00" * 4 + label


def _raw(public_key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _error(state: int, error: PairingError) -> bytes:
    return Tlv8.encode([(PairingTag.STATE, bytes([state])), (PairingTag.ERROR, bytes([error]))])


class SrpServer:
    """SRP-6a with HAP's parameters: the RFC 5054 3072-bit group, SHA-512, user "Pair-Setup".

    Public keys and the premaster secret are padded to the group size (384 bytes) wherever
    they are hashed, so a value with leading zero bytes hashes like any other.
    """

    _USER = b"Pair-Setup"

    def __init__(self, setup_code: str) -> None:
        context = get_srp_context(3072, hashlib.sha512)
        self._n: int = context["N"]
        self._g: int = context["g"]
        self._size = (self._n.bit_length() + 7) // 8
        self.salt = os.urandom(16)
        x = self._int(self._hash(self.salt, self._hash(self._USER + b":" + setup_code.encode())))
        self._verifier = pow(self._g, x, self._n)
        self._secret = int.from_bytes(os.urandom(32), "big")
        k = self._int(self._hash(self._pad(self._n), self._pad(self._g)))
        public = (k * self._verifier + pow(self._g, self._secret, self._n)) % self._n
        self.public_key = self._pad(public)
        self.session_key: bytes | None = None

    def _hash(self, *parts: bytes) -> bytes:
        return hashlib.sha512(b"".join(parts)).digest()

    @staticmethod
    def _int(data: bytes) -> int:
        return int.from_bytes(data, "big")

    def _pad(self, number: int) -> bytes:
        return number.to_bytes(self._size, "big")

    def verify(self, client_public: bytes, client_proof: bytes) -> bytes | None:
        """The accessory's proof when the controller's proof shows the same setup code."""
        a = self._int(client_public)
        if len(client_public) > self._size or a % self._n == 0:
            return None  # RFC 5054 2.5.4: abort on A % N == 0 (it would make S public)
        a_padded, b_padded = self._pad(a), self.public_key
        u = self._int(self._hash(a_padded, b_padded))
        premaster = pow(a * pow(self._verifier, u, self._n), self._secret, self._n)
        session_key = self._hash(self._pad(premaster))
        group = bytes(
            x ^ y
            for x, y in zip(
                self._hash(self._pad(self._n)), self._hash(bytes([self._g])), strict=True
            )
        )
        expected = self._hash(
            group, self._hash(self._USER), self.salt, a_padded, b_padded, session_key
        )
        if not hmac.compare_digest(expected, client_proof):
            return None
        self.session_key = session_key
        return self._hash(a_padded, expected, session_key)


@dataclass
class ControllerPairing:
    controller_id: str
    public_key: bytes
    admin: bool


@dataclass
class AccessoryIdentity:
    """Who the accessory is: its device id (the pairing identifier) and long-term key."""

    device_id: str
    signing_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @classmethod
    def random(cls) -> AccessoryIdentity:
        return cls(":".join(f"{byte:02X}" for byte in os.urandom(6)))

    @property
    def public_key(self) -> bytes:
        return _raw(self.signing_key.public_key())

    def sign(self, data: bytes) -> bytes:
        return self.signing_key.sign(data)


class PairingStore:
    """The controllers paired with the accessory; tells a listener when it changes."""

    def __init__(self, on_change: Callable[[], None] = lambda: None) -> None:
        self._pairings: dict[str, ControllerPairing] = {}
        self._on_change = on_change

    @property
    def is_paired(self) -> bool:
        return bool(self._pairings)

    def get(self, controller_id: str) -> ControllerPairing | None:
        return self._pairings.get(controller_id)

    def all(self) -> list[ControllerPairing]:
        return list(self._pairings.values())

    def add(self, pairing: ControllerPairing) -> None:
        self._pairings[pairing.controller_id] = pairing
        self._on_change()

    def remove(self, controller_id: str) -> list[str]:
        """Remove one pairing (all of them when no admin is left); the ids removed."""
        removed = [controller_id] if self._pairings.pop(controller_id, None) else []
        if self._pairings and not any(p.admin for p in self._pairings.values()):
            removed += list(self._pairings)
            self._pairings.clear()
        if removed:
            self._on_change()
        return removed


@dataclass
class _SetupAttempt:
    client: object
    srp: SrpServer
    started: float = field(default_factory=time.monotonic)
    proven: bool = False


class PairSetup:
    """Pair-setup M1-M6 over CoAP /1: one attempt at a time, 100 wrong codes lock it."""

    def __init__(self, identity: AccessoryIdentity, store: PairingStore, setup_code: str) -> None:
        self._identity = identity
        self._store = store
        self._setup_code = setup_code
        self._attempt: _SetupAttempt | None = None
        self.failed_attempts = 0

    def forget(self) -> None:
        self._attempt = None

    def handle(self, client: object, body: bytes) -> bytes:
        message = Tlv8.as_dict(body)
        state = message.get(PairingTag.STATE, b"\x00")[0]
        if state == 1:
            return self._m2(client, message)
        attempt = self._attempt
        if attempt is None or attempt.client != client:
            return _error(state + 1, PairingError.UNKNOWN)
        if state == 3:
            return self._m4(attempt, message)
        if state == 5 and attempt.proven:
            return self._m6(attempt, message)
        return _error(state + 1, PairingError.UNKNOWN)

    def _m2(self, client: object, message: dict[int, bytes]) -> bytes:
        if self._store.is_paired:
            return _error(2, PairingError.UNAVAILABLE)
        if self.failed_attempts >= MAX_FAILED_SETUPS:
            return _error(2, PairingError.MAX_TRIES)
        busy = self._attempt
        if busy and busy.client != client and time.monotonic() - busy.started < SETUP_STALE_AFTER:
            return _error(2, PairingError.BUSY)
        # No MFi authentication coprocessor (ff=0): only the plain method is offered.
        if message.get(PairingTag.METHOD, b"\x00") != bytes([PairingMethod.PAIR_SETUP]):
            return _error(2, PairingError.UNKNOWN)
        srp = SrpServer(self._setup_code)
        self._attempt = _SetupAttempt(client, srp)
        return Tlv8.encode(
            [
                (PairingTag.STATE, b"\x02"),
                (PairingTag.PUBLIC_KEY, srp.public_key),
                (PairingTag.SALT, srp.salt),
            ]
        )

    def _m4(self, attempt: _SetupAttempt, message: dict[int, bytes]) -> bytes:
        proof = attempt.srp.verify(
            message.get(PairingTag.PUBLIC_KEY, b""), message.get(PairingTag.PROOF, b"")
        )
        if proof is None:
            self.failed_attempts += 1
            self._attempt = None
            _LOGGER.info("pair-setup: wrong setup code (%d failed)", self.failed_attempts)
            return _error(4, PairingError.AUTHENTICATION)
        attempt.proven = True
        return Tlv8.encode([(PairingTag.STATE, b"\x04"), (PairingTag.PROOF, proof)])

    def _m6(self, attempt: _SetupAttempt, message: dict[int, bytes]) -> bytes:
        self._attempt = None
        session_key = attempt.srp.session_key
        assert session_key is not None
        key = hkdf_sha512(session_key, b"Pair-Setup-Encrypt-Salt", b"Pair-Setup-Encrypt-Info")
        cipher = ChaCha20Poly1305(key)
        try:
            sub = Tlv8.as_dict(
                cipher.decrypt(
                    _label_nonce(b"PS-Msg05"), message.get(PairingTag.ENCRYPTED_DATA, b""), None
                )
            )
            controller_id = sub[PairingTag.IDENTIFIER]
            controller_key = sub[PairingTag.PUBLIC_KEY]
            controller_x = hkdf_sha512(
                session_key,
                b"Pair-Setup-Controller-Sign-Salt",
                b"Pair-Setup-Controller-Sign-Info",
            )
            Ed25519PublicKey.from_public_bytes(controller_key).verify(
                sub[PairingTag.SIGNATURE], controller_x + controller_id + controller_key
            )
        except (InvalidTag, InvalidSignature, KeyError, ValueError):
            return _error(6, PairingError.AUTHENTICATION)
        self._store.add(ControllerPairing(controller_id.decode(), controller_key, admin=True))

        accessory_x = hkdf_sha512(
            session_key, b"Pair-Setup-Accessory-Sign-Salt", b"Pair-Setup-Accessory-Sign-Info"
        )
        device_id = self._identity.device_id.encode()
        public_key = self._identity.public_key
        signature = self._identity.sign(accessory_x + device_id + public_key)
        sub_tlv = Tlv8.encode(
            [
                (PairingTag.IDENTIFIER, device_id),
                (PairingTag.PUBLIC_KEY, public_key),
                (PairingTag.SIGNATURE, signature),
            ]
        )
        encrypted = cipher.encrypt(_label_nonce(b"PS-Msg06"), sub_tlv, None)
        return Tlv8.encode([(PairingTag.STATE, b"\x06"), (PairingTag.ENCRYPTED_DATA, encrypted)])


@dataclass(frozen=True)
class VerifiedSession:
    """What a completed pair-verify yields: who the controller is and the shared secret."""

    controller_id: str
    shared_secret: bytes


@dataclass
class _PendingVerify:
    controller_key: bytes
    accessory_key: bytes
    shared_secret: bytes


class PairVerify:
    """Pair-verify M1-M4 over CoAP /2, one exchange per client address."""

    def __init__(self, identity: AccessoryIdentity, store: PairingStore) -> None:
        self._identity = identity
        self._store = store
        self._pending: dict[object, _PendingVerify] = {}

    def forget(self) -> None:
        self._pending.clear()

    def handle(self, client: object, body: bytes) -> tuple[bytes, VerifiedSession | None]:
        message = Tlv8.as_dict(body)
        state = message.get(PairingTag.STATE, b"\x00")[0]
        if state == 1:
            return self._m2(client, message), None
        pending = self._pending.pop(client, None)
        if state != 3 or pending is None:
            return _error(state + 1, PairingError.UNKNOWN), None
        return self._m4(pending, message)

    @staticmethod
    def _session_cipher(shared_secret: bytes) -> ChaCha20Poly1305:
        return ChaCha20Poly1305(
            hkdf_sha512(shared_secret, b"Pair-Verify-Encrypt-Salt", b"Pair-Verify-Encrypt-Info")
        )

    def _m2(self, client: object, message: dict[int, bytes]) -> bytes:
        controller_key = message.get(PairingTag.PUBLIC_KEY, b"")
        try:
            controller_public = X25519PublicKey.from_public_bytes(controller_key)
        except ValueError:
            return _error(2, PairingError.UNKNOWN)
        ephemeral = X25519PrivateKey.generate()
        accessory_key = _raw(ephemeral.public_key())
        shared_secret = ephemeral.exchange(controller_public)
        device_id = self._identity.device_id.encode()
        signature = self._identity.sign(accessory_key + device_id + controller_key)
        sub_tlv = Tlv8.encode(
            [(PairingTag.IDENTIFIER, device_id), (PairingTag.SIGNATURE, signature)]
        )
        encrypted = self._session_cipher(shared_secret).encrypt(
            _label_nonce(b"PV-Msg02"), sub_tlv, None
        )
        self._pending[client] = _PendingVerify(controller_key, accessory_key, shared_secret)
        return Tlv8.encode(
            [
                (PairingTag.STATE, b"\x02"),
                (PairingTag.PUBLIC_KEY, accessory_key),
                (PairingTag.ENCRYPTED_DATA, encrypted),
            ]
        )

    def _m4(
        self, pending: _PendingVerify, message: dict[int, bytes]
    ) -> tuple[bytes, VerifiedSession | None]:
        try:
            sub = Tlv8.as_dict(
                self._session_cipher(pending.shared_secret).decrypt(
                    _label_nonce(b"PV-Msg03"), message.get(PairingTag.ENCRYPTED_DATA, b""), None
                )
            )
            controller_id = sub[PairingTag.IDENTIFIER].decode()
            pairing = self._store.get(controller_id)
            if pairing is None:
                raise KeyError(controller_id)
            Ed25519PublicKey.from_public_bytes(pairing.public_key).verify(
                sub[PairingTag.SIGNATURE],
                pending.controller_key + controller_id.encode() + pending.accessory_key,
            )
        except (InvalidTag, InvalidSignature, KeyError, ValueError, UnicodeDecodeError):
            return _error(4, PairingError.AUTHENTICATION), None
        return (
            Tlv8.encode([(PairingTag.STATE, b"\x04")]),
            VerifiedSession(controller_id, pending.shared_secret),
        )


class PairingsRequests:
    """The Pairings characteristic: a controller writes an M1 request, reads the M2 reply.

    Only admins may list, add or remove; removing the last admin removes every pairing.
    """

    def __init__(self, store: PairingStore) -> None:
        self._store = store

    def handle(self, controller_id: str, body: bytes) -> tuple[bytes, list[str]]:
        """The M2 reply and the controller ids whose pairing went away."""
        message = Tlv8.as_dict(body)
        if message.get(PairingTag.STATE) != b"\x01":
            return _error(2, PairingError.UNKNOWN), []
        caller = self._store.get(controller_id)
        if caller is None or not caller.admin:
            return _error(2, PairingError.AUTHENTICATION), []
        method = message.get(PairingTag.METHOD, b"\xff")[0]
        if method == PairingMethod.LIST_PAIRINGS:
            return self._list(), []
        if method == PairingMethod.REMOVE_PAIRING:
            identifier = message.get(PairingTag.IDENTIFIER, b"").decode(errors="replace")
            removed = self._store.remove(identifier)
            return Tlv8.encode([(PairingTag.STATE, b"\x02")]), removed
        if method == PairingMethod.ADD_PAIRING:
            return self._add(message), []
        return _error(2, PairingError.UNKNOWN), []

    def _list(self) -> bytes:
        items: list[tuple[int, bytes]] = [(PairingTag.STATE, b"\x02")]
        for index, pairing in enumerate(self._store.all()):
            if index:
                items.append((PairingTag.SEPARATOR, b""))
            items += [
                (PairingTag.IDENTIFIER, pairing.controller_id.encode()),
                (PairingTag.PUBLIC_KEY, pairing.public_key),
                (PairingTag.PERMISSIONS, bytes([_PERMISSION_ADMIN if pairing.admin else 0])),
            ]
        return Tlv8.encode(items)

    def _add(self, message: dict[int, bytes]) -> bytes:
        identifier = message.get(PairingTag.IDENTIFIER, b"").decode(errors="replace")
        public_key = message.get(PairingTag.PUBLIC_KEY, b"")
        admin = bool(message.get(PairingTag.PERMISSIONS, b"\x00")[0] & _PERMISSION_ADMIN)
        existing = self._store.get(identifier)
        if existing is not None and existing.public_key != public_key:
            return _error(2, PairingError.UNKNOWN)
        if existing is None and len(self._store.all()) >= MAX_PAIRINGS:
            return _error(2, PairingError.MAX_PEERS)
        self._store.add(ControllerPairing(identifier, public_key, admin))
        return Tlv8.encode([(PairingTag.STATE, b"\x02")])
