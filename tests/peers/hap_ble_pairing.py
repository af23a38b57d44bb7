"""Pairing for a HAP-BLE accessory: pair-setup M1-M6 (SRP-3072, SHA-512), pair-verify M1-M4
with session resume, and the Pairings characteristic (add, remove, list), from the HAP spec.

Each class holds one concern: `AccessoryIdentity` the long-term keys and the controllers
paired (what survives a reboot), `PairSetup` and `PairVerify` one exchange on one connection,
`ResumeCache` the sessions a controller may resume (lost on a reboot), `PairingsAdmin` the
admin requests of a verified controller.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pyhap.params import get_srp_context

from tests.peers.hap_ble_crypto import AuthTagError, hkdf_sha512, label_nonce, open_sealed, seal
from tests.peers.hap_ble_pdu import PduError, tlv_dict
from tests.peers.tlv8 import PairingError, PairingMethod, PairingTag, Tlv8

TlvItems = list[tuple[int, bytes]]

MAX_PAIRINGS = 16
MAX_FAILED_SETUP_ATTEMPTS = 100
SESSION_ID_LENGTH = 8


def _state(number: int) -> tuple[int, bytes]:
    return (PairingTag.STATE, bytes((number,)))


def _error(state: int, error: PairingError) -> TlvItems:
    return [_state(state), (PairingTag.ERROR, bytes((error,)))]


def _raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _verifies(ltpk: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(ltpk).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass
class ControllerPairing:
    pairing_id: str
    ltpk: bytes
    admin: bool


@dataclass
class AccessoryIdentity:
    """What a real accessory keeps in flash: its keys, device id and paired controllers."""

    device_id: str  # "AA:BB:CC:DD:EE:FF", also the accessory's pairing identifier
    signing_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    pairings: dict[str, ControllerPairing] = field(default_factory=dict)
    failed_setup_attempts: int = 0

    @property
    def ltpk(self) -> bytes:
        return _raw_public(self.signing_key.public_key())

    @property
    def paired(self) -> bool:
        return bool(self.pairings)


class SrpServer:
    """SRP-6a as RFC 5054 defines it, with the 3072-bit group, SHA-512 and user "Pair-Setup"."""

    def __init__(self, setup_code: str) -> None:
        group = get_srp_context(3072, hashlib.sha512)
        self._n: int = group["N"]
        self._g: int = group["g"]
        self._width = 3072 // 8
        self.salt = os.urandom(16)
        username = b"Pair-Setup"
        x = self._hash_int(self.salt, self._hash(username + b":" + setup_code.encode()))
        self._verifier = pow(self._g, x, self._n)
        self._private = int.from_bytes(os.urandom(32), "big")
        k = self._hash_int(self._pad(self._n), self._pad(self._g))
        public = (k * self._verifier + pow(self._g, self._private, self._n)) % self._n
        self.public_key = self._pad(public)
        group_hash = bytes(
            a ^ b
            for a, b in zip(
                self._hash(self._bytes(self._n)), self._hash(self._bytes(self._g)), strict=True
            )
        )
        self._proof_prefix = group_hash + self._hash(username) + self.salt
        self.session_key = b""

    def verify_client(self, client_public: bytes, client_proof: bytes) -> bytes | None:
        """The server proof when the client proved it knows the setup code, else None."""
        a = int.from_bytes(client_public, "big")
        if len(client_public) > self._width or a % self._n == 0:
            return None
        u = self._hash_int(self._pad(a), self.public_key)
        premaster = pow(a * pow(self._verifier, u, self._n) % self._n, self._private, self._n)
        session_key = self._hash(self._pad(premaster))
        expected = self._hash(self._proof_prefix + self._pad(a) + self.public_key + session_key)
        if expected != client_proof:
            return None
        self.session_key = session_key
        return self._hash(self._pad(a) + client_proof + session_key)

    def _pad(self, value: int) -> bytes:
        return value.to_bytes(self._width, "big")

    @staticmethod
    def _bytes(value: int) -> bytes:
        return value.to_bytes((value.bit_length() + 7) // 8, "big")

    @staticmethod
    def _hash(data: bytes) -> bytes:
        return hashlib.sha512(data).digest()

    def _hash_int(self, *parts: bytes) -> int:
        return int.from_bytes(self._hash(b"".join(parts)), "big")


class PairSetup:
    """One pair-setup exchange (M1-M6) over the Pair Setup characteristic."""

    def __init__(self, identity: AccessoryIdentity, setup_code: str) -> None:
        self._identity = identity
        self._setup_code = setup_code
        self._srp: SrpServer | None = None
        self._proved = False

    def handle(self, request: bytes) -> TlvItems:
        tlv = tlv_dict(request)
        state = tlv.get(PairingTag.STATE, b"\x00")[0]
        if state == 1:
            return self._m2(tlv)
        if state == 3:
            return self._m4(tlv)
        if state == 5:
            return self._m6(tlv)
        return _error(state + 1, PairingError.UNKNOWN)

    def _m2(self, tlv: dict[int, bytes]) -> TlvItems:
        if self._identity.paired:
            return _error(2, PairingError.UNAVAILABLE)
        if self._identity.failed_setup_attempts >= MAX_FAILED_SETUP_ATTEMPTS:
            return _error(2, PairingError.MAX_TRIES)
        # Pairing Features says no Apple authentication coprocessor: only plain pair-setup.
        if tlv.get(PairingTag.METHOD) != bytes((PairingMethod.PAIR_SETUP,)):
            return _error(2, PairingError.UNKNOWN)
        self._srp = SrpServer(self._setup_code)
        self._proved = False
        return [
            _state(2),
            (PairingTag.PUBLIC_KEY, self._srp.public_key),
            (PairingTag.SALT, self._srp.salt),
        ]

    def _m4(self, tlv: dict[int, bytes]) -> TlvItems:
        if self._srp is None or PairingTag.PUBLIC_KEY not in tlv or PairingTag.PROOF not in tlv:
            return _error(4, PairingError.UNKNOWN)
        server_proof = self._srp.verify_client(tlv[PairingTag.PUBLIC_KEY], tlv[PairingTag.PROOF])
        if server_proof is None:
            self._identity.failed_setup_attempts += 1
            self._srp = None
            return _error(4, PairingError.AUTHENTICATION)
        self._proved = True
        return [_state(4), (PairingTag.PROOF, server_proof)]

    def _m6(self, tlv: dict[int, bytes]) -> TlvItems:
        if self._srp is None or not self._proved or PairingTag.ENCRYPTED_DATA not in tlv:
            return _error(6, PairingError.UNKNOWN)
        srp_key = self._srp.session_key
        self._srp = None
        encrypt_key = hkdf_sha512(srp_key, b"Pair-Setup-Encrypt-Salt", b"Pair-Setup-Encrypt-Info")
        try:
            sub = tlv_dict(
                open_sealed(encrypt_key, label_nonce(b"PS-Msg05"), tlv[PairingTag.ENCRYPTED_DATA])
            )
        except (AuthTagError, PduError):
            return _error(6, PairingError.AUTHENTICATION)
        controller_id, controller_ltpk = (
            sub.get(PairingTag.IDENTIFIER),
            sub.get(PairingTag.PUBLIC_KEY),
        )
        signature = sub.get(PairingTag.SIGNATURE, b"")
        if not controller_id or not controller_ltpk:
            return _error(6, PairingError.AUTHENTICATION)
        controller_x = hkdf_sha512(
            srp_key, b"Pair-Setup-Controller-Sign-Salt", b"Pair-Setup-Controller-Sign-Info"
        )
        if not _verifies(
            controller_ltpk, signature, controller_x + controller_id + controller_ltpk
        ):
            return _error(6, PairingError.AUTHENTICATION)
        pairing_id = controller_id.decode()
        self._identity.pairings[pairing_id] = ControllerPairing(pairing_id, controller_ltpk, True)

        accessory_x = hkdf_sha512(
            srp_key, b"Pair-Setup-Accessory-Sign-Salt", b"Pair-Setup-Accessory-Sign-Info"
        )
        accessory_id = self._identity.device_id.encode()
        accessory_info = accessory_x + accessory_id + self._identity.ltpk
        sub_response = Tlv8.encode(
            [
                (PairingTag.IDENTIFIER, accessory_id),
                (PairingTag.PUBLIC_KEY, self._identity.ltpk),
                (PairingTag.SIGNATURE, self._identity.signing_key.sign(accessory_info)),
            ]
        )
        sealed = seal(encrypt_key, label_nonce(b"PS-Msg06"), sub_response)
        return [_state(6), (PairingTag.ENCRYPTED_DATA, sealed)]


@dataclass(frozen=True)
class VerifiedSession:
    shared_secret: bytes
    controller: ControllerPairing
    resumed: bool


class ResumeCache:
    """Sessions a controller may resume (by session id), kept in RAM: a reboot forgets them."""

    def __init__(self) -> None:
        self._sessions: dict[bytes, tuple[bytes, str]] = {}

    def remember(self, session_id: bytes, shared_secret: bytes, controller_id: str) -> None:
        self._sessions[session_id] = (shared_secret, controller_id)

    def take(self, session_id: bytes) -> tuple[bytes, str] | None:
        """A session may be resumed once: its id is spent by the attempt."""
        return self._sessions.pop(session_id, None)

    def clear(self) -> None:
        self._sessions.clear()


class PairVerify:
    """One pair-verify exchange (M1-M4, or the two-message resume) over Pair Verify."""

    def __init__(self, identity: AccessoryIdentity, resume_cache: ResumeCache) -> None:
        self._identity = identity
        self._cache = resume_cache
        self._pending: tuple[bytes, bytes, bytes, bytes] | None = None
        self.resume_refused = False

    def handle(self, request: bytes) -> tuple[TlvItems, VerifiedSession | None]:
        """The response, and the session once the exchange established one."""
        tlv = tlv_dict(request)
        state = tlv.get(PairingTag.STATE, b"\x00")[0]
        if state == 1:
            if tlv.get(PairingTag.METHOD) == bytes((PairingMethod.PAIR_RESUME,)):
                resumed = self._resume(tlv)
                if resumed is not None:
                    return resumed
                self.resume_refused = True
            return self._m2(tlv), None
        if state == 3:
            return self._m4(tlv)
        return _error(state + 1, PairingError.UNKNOWN), None

    def _m2(self, tlv: dict[int, bytes]) -> TlvItems:
        controller_public = tlv.get(PairingTag.PUBLIC_KEY, b"")
        if len(controller_public) != 32:
            return _error(2, PairingError.UNKNOWN)
        ephemeral = X25519PrivateKey.generate()
        accessory_public = _raw_public(ephemeral.public_key())
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(controller_public))
        session_key = hkdf_sha512(shared, b"Pair-Verify-Encrypt-Salt", b"Pair-Verify-Encrypt-Info")
        accessory_id = self._identity.device_id.encode()
        signature = self._identity.signing_key.sign(
            accessory_public + accessory_id + controller_public
        )
        sub = Tlv8.encode(
            [(PairingTag.IDENTIFIER, accessory_id), (PairingTag.SIGNATURE, signature)]
        )
        self._pending = (shared, session_key, controller_public, accessory_public)
        return [
            _state(2),
            (PairingTag.PUBLIC_KEY, accessory_public),
            (PairingTag.ENCRYPTED_DATA, seal(session_key, label_nonce(b"PV-Msg02"), sub)),
        ]

    def _m4(self, tlv: dict[int, bytes]) -> tuple[TlvItems, VerifiedSession | None]:
        if self._pending is None or PairingTag.ENCRYPTED_DATA not in tlv:
            return _error(4, PairingError.UNKNOWN), None
        shared, session_key, controller_public, accessory_public = self._pending
        self._pending = None
        try:
            sub = tlv_dict(
                open_sealed(session_key, label_nonce(b"PV-Msg03"), tlv[PairingTag.ENCRYPTED_DATA])
            )
        except (AuthTagError, PduError):
            return _error(4, PairingError.AUTHENTICATION), None
        controller = self._identity.pairings.get(sub.get(PairingTag.IDENTIFIER, b"").decode())
        if controller is None or not _verifies(
            controller.ltpk,
            sub.get(PairingTag.SIGNATURE, b""),
            controller_public + controller.pairing_id.encode() + accessory_public,
        ):
            return _error(4, PairingError.AUTHENTICATION), None
        session_id = hkdf_sha512(
            shared,
            b"Pair-Verify-ResumeSessionID-Salt",
            b"Pair-Verify-ResumeSessionID-Info",
            SESSION_ID_LENGTH,
        )
        self._cache.remember(session_id, shared, controller.pairing_id)
        return [_state(4)], VerifiedSession(shared, controller, resumed=False)

    def _resume(self, tlv: dict[int, bytes]) -> tuple[TlvItems, VerifiedSession] | None:
        controller_public = tlv.get(PairingTag.PUBLIC_KEY, b"")
        cached = self._cache.take(tlv.get(PairingTag.SESSION_ID, b""))
        if cached is None or len(controller_public) != 32:
            return None
        old_secret, controller_id = cached
        controller = self._identity.pairings.get(controller_id)
        request_key = hkdf_sha512(
            old_secret, controller_public + tlv[PairingTag.SESSION_ID], b"Pair-Resume-Request-Info"
        )
        try:
            open_sealed(
                request_key, label_nonce(b"PR-Msg01"), tlv.get(PairingTag.ENCRYPTED_DATA, b"")
            )
        except AuthTagError:
            return None
        if controller is None:
            return None
        new_id = os.urandom(SESSION_ID_LENGTH)
        salt = controller_public + new_id
        response_key = hkdf_sha512(old_secret, salt, b"Pair-Resume-Response-Info")
        shared = hkdf_sha512(old_secret, salt, b"Pair-Resume-Shared-Secret-Info")
        self._cache.remember(new_id, shared, controller_id)
        response = [
            _state(2),
            (PairingTag.METHOD, bytes((PairingMethod.PAIR_RESUME,))),
            (PairingTag.SESSION_ID, new_id),
            (PairingTag.ENCRYPTED_DATA, seal(response_key, label_nonce(b"PR-Msg02"), b"")),
        ]
        return response, VerifiedSession(shared, controller, resumed=True)


class PairingsAdmin:
    """Add, remove and list pairings (the Pairings characteristic), for admin controllers."""

    def __init__(self, identity: AccessoryIdentity) -> None:
        self._identity = identity

    def handle(self, request: bytes, caller: ControllerPairing) -> tuple[TlvItems, set[str]]:
        """The response, and the pairing ids removed (whose sessions must end)."""
        tlv = tlv_dict(request)
        if tlv.get(PairingTag.STATE) != b"\x01":
            return _error(2, PairingError.UNKNOWN), set()
        if not caller.admin:
            return _error(2, PairingError.AUTHENTICATION), set()
        method = tlv.get(PairingTag.METHOD, b"\xff")[0]
        if method == PairingMethod.ADD_PAIRING:
            return self._add(tlv), set()
        if method == PairingMethod.REMOVE_PAIRING:
            return self._remove(tlv)
        if method == PairingMethod.LIST_PAIRINGS:
            return self._list(), set()
        return _error(2, PairingError.UNKNOWN), set()

    def _add(self, tlv: dict[int, bytes]) -> TlvItems:
        pairing_id = tlv.get(PairingTag.IDENTIFIER, b"").decode()
        ltpk = tlv.get(PairingTag.PUBLIC_KEY, b"")
        if not pairing_id or len(ltpk) != 32:
            return _error(2, PairingError.UNKNOWN)
        admin = tlv.get(PairingTag.PERMISSIONS, b"\x00") == b"\x01"
        pairings = self._identity.pairings
        if existing := pairings.get(pairing_id):
            if existing.ltpk != ltpk:
                return _error(2, PairingError.UNKNOWN)
            existing.admin = admin
        elif len(pairings) >= MAX_PAIRINGS:
            return _error(2, PairingError.MAX_PEERS)
        else:
            pairings[pairing_id] = ControllerPairing(pairing_id, ltpk, admin)
        return [_state(2)]

    def _remove(self, tlv: dict[int, bytes]) -> tuple[TlvItems, set[str]]:
        pairings = self._identity.pairings
        removed = {tlv.get(PairingTag.IDENTIFIER, b"").decode()} & pairings.keys()
        for pairing_id in removed:
            del pairings[pairing_id]
        if not any(p.admin for p in pairings.values()):
            # The last admin gone: the accessory forgets every pairing and is unpaired again.
            removed |= pairings.keys()
            pairings.clear()
        return [_state(2)], removed

    def _list(self) -> TlvItems:
        items: TlvItems = [_state(2)]
        for index, pairing in enumerate(self._identity.pairings.values()):
            if index:
                items.append((PairingTag.SEPARATOR, b""))
            items += [
                (PairingTag.IDENTIFIER, pairing.pairing_id.encode()),
                (PairingTag.PUBLIC_KEY, pairing.ltpk),
                (PairingTag.PERMISSIONS, b"\x01" if pairing.admin else b"\x00"),
            ]
        return items
