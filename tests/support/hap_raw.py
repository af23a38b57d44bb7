"""A raw HAP pair-setup client: one TCP connection, plain HTTP/1.1, TLV8 bodies.

aiohomekit runs pair-setup M1..M6 as one call and turns error codes into exceptions; the
hardening tests need the steps apart (M1 on two connections, a wrong proof, an illegal SRP
key) and the exact kTLVError codes.

The SRP values are serialised the way HAP-python 5 serialises them (minimal big-endian bytes
for B, S and K, A and B zero-padded only inside u), so a correct code never fails at M4
here; aiohomekit disagrees with HAP-python about ~1 pairing in 85.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Self

from aiohomekit.crypto.srp import GENERATOR_VALUE, MODULUS_VALUE
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tests.peers.tlv8 import PairingError, PairingTag, Tlv8

TIMEOUT = 10.0


Tlv = dict[int, bytes]


def error_of(reply: Tlv) -> PairingError | None:
    """The kTLVError in a reply, or None."""
    return PairingError(reply[PairingTag.ERROR][0]) if PairingTag.ERROR in reply else None


class RawHapConnection:
    """One unencrypted HAP connection: POST a TLV body, read the TLV answer."""

    def __init__(
        self, host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.host = host
        self.port = port
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Self:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
        return cls(host, port, reader, writer)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._writer.close()
        try:
            async with asyncio.timeout(TIMEOUT):
                await self._writer.wait_closed()
        except (OSError, TimeoutError):
            pass

    async def post_tlv(self, path: str, items: Iterable[tuple[int, bytes]]) -> Tlv:
        """POST and return the decoded TLV body; AssertionError unless HTTP 200."""
        body = Tlv8.encode(items)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/pairing+tlv8\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        async with asyncio.timeout(TIMEOUT):
            await self._writer.drain()
            status_and_headers = await self._reader.readuntil(b"\r\n\r\n")
            lines = status_and_headers.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines[1:] if line)
            }
            reply = await self._reader.readexactly(int(headers.get("content-length", "0")))
        if status != 200:
            raise AssertionError(f"POST {path}: HTTP {status} {reply!r}")
        return Tlv8.as_dict(reply)


# --- SRP-6a as HAP-python 5 computes it ------------------------------------------------------


def _int_bytes(value: int) -> bytes:
    """Minimal big-endian bytes (b"" for 0), like pyhap.util.long_to_bytes."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _hash(*parts: bytes) -> bytes:
    return hashlib.sha512(b"".join(parts)).digest()


_N = MODULUS_VALUE
_G = GENERATOR_VALUE
_N_BYTES = len(_int_bytes(_N))
_USER = b"Pair-Setup"
_H_GROUP = bytes(a ^ b for a, b in zip(_hash(_int_bytes(_N)), _hash(_int_bytes(_G)), strict=True))


def _pad(data: bytes) -> bytes:
    return data.rjust(_N_BYTES, b"\x00")


@dataclass(frozen=True)
class SrpProof:
    """The controller's M3 values and what it expects back."""

    public: bytes  # A
    proof: bytes  # M
    server_proof: bytes  # H(A, M, K): the accessory's M4 proof
    session_key: bytes  # K, the input to the pair-setup HKDFs

    def m3(self) -> list[tuple[int, bytes]]:
        return [
            (PairingTag.STATE, b"\x03"),
            (PairingTag.PUBLIC_KEY, self.public),
            (PairingTag.PROOF, self.proof),
        ]


def _proof(salt: bytes, server_public: bytes, public: bytes, secret: int) -> SrpProof:
    session_key = _int_bytes(int.from_bytes(_hash(_int_bytes(secret)), "big"))
    proof = _hash(_H_GROUP, _hash(_USER), salt, public, server_public, session_key)
    return SrpProof(public, proof, _hash(public, proof, session_key), session_key)


def srp_proof(m2: Tlv, pin: str) -> SrpProof:
    """What a controller that knows (or guesses) `pin` sends at M3."""
    salt, server_public = m2[PairingTag.SALT], m2[PairingTag.PUBLIC_KEY]
    k = int.from_bytes(_hash(_int_bytes(_N), _pad(_int_bytes(_G))), "big")
    x = int.from_bytes(_hash(salt, _hash(_USER + b":" + pin.encode())), "big")
    a = int.from_bytes(os.urandom(32), "big")
    public = _pad(_int_bytes(pow(_G, a, _N)))
    u = int.from_bytes(_hash(_pad(public), _pad(server_public)), "big")
    b_value = int.from_bytes(server_public, "big")
    secret = pow(b_value - k * pow(_G, x, _N), a + u * x, _N)
    return _proof(salt, server_public, public, secret)


def illegal_key_proof(m2: Tlv) -> SrpProof:
    """A = N: the shared secret is 0 whatever the code, so this proof needs no code at all."""
    return _proof(m2[PairingTag.SALT], m2[PairingTag.PUBLIC_KEY], _int_bytes(_N), 0)


# --- pair-setup steps ------------------------------------------------------------------------

M1 = [(PairingTag.STATE, b"\x01"), (PairingTag.METHOD, b"\x00")]


def _hkdf(key: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA512(), length=32, salt=salt, info=info).derive(key)


def _nonce(label: bytes) -> bytes:
    return label.rjust(12, b"\x00")


@dataclass(frozen=True)
class ControllerKeys:
    """A controller's pairing id and long-term Ed25519 key pair."""

    pairing_id: str
    private_key: ed25519.Ed25519PrivateKey

    @classmethod
    def generate(cls) -> ControllerKeys:
        return cls(str(uuid.uuid4()).upper(), ed25519.Ed25519PrivateKey.generate())

    @property
    def public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def private_bytes(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def pairing_data(
        self, accessory_id: str, accessory_ltpk: bytes, host: str, port: int
    ) -> dict[str, Any]:
        """aiohomekit's pairing data for this controller (HapClient.from_pairing_data)."""
        return {
            "AccessoryPairingID": accessory_id,
            "AccessoryLTPK": accessory_ltpk.hex(),
            "iOSPairingId": self.pairing_id,
            "iOSDeviceLTSK": self.private_bytes.hex(),
            "iOSDeviceLTPK": self.public_bytes.hex(),
            "AccessoryIP": host,
            "AccessoryIPs": [host],
            "AccessoryPort": port,
            "Connection": "IP",
        }


async def exchange_keys(
    conn: RawHapConnection, srp: SrpProof, keys: ControllerKeys
) -> tuple[str, bytes]:
    """M5 -> M6 after an accepted M4: (accessory pairing id, accessory LTPK)."""
    key = srp.session_key
    encrypt_key = _hkdf(key, b"Pair-Setup-Encrypt-Salt", b"Pair-Setup-Encrypt-Info")
    signed = _hkdf(key, b"Pair-Setup-Controller-Sign-Salt", b"Pair-Setup-Controller-Sign-Info")
    pairing_id = keys.pairing_id.encode()
    sub_tlv = Tlv8.encode(
        [
            (PairingTag.IDENTIFIER, pairing_id),
            (PairingTag.PUBLIC_KEY, keys.public_bytes),
            (PairingTag.SIGNATURE, keys.private_key.sign(signed + pairing_id + keys.public_bytes)),
        ]
    )
    cipher = ChaCha20Poly1305(encrypt_key)
    m6 = await conn.post_tlv(
        "/pair-setup",
        [
            (PairingTag.STATE, b"\x05"),
            (PairingTag.ENCRYPTED_DATA, cipher.encrypt(_nonce(b"PS-Msg05"), sub_tlv, None)),
        ],
    )
    if (error := error_of(m6)) is not None:
        raise AssertionError(f"M6 refused: {error!r}")
    accessory = Tlv8.as_dict(
        cipher.decrypt(_nonce(b"PS-Msg06"), m6[PairingTag.ENCRYPTED_DATA], None)
    )
    accessory_id, accessory_ltpk = (
        accessory[PairingTag.IDENTIFIER],
        accessory[PairingTag.PUBLIC_KEY],
    )
    info = _hkdf(key, b"Pair-Setup-Accessory-Sign-Salt", b"Pair-Setup-Accessory-Sign-Info")
    ed25519.Ed25519PublicKey.from_public_bytes(accessory_ltpk).verify(
        accessory[PairingTag.SIGNATURE], info + accessory_id + accessory_ltpk
    )
    return accessory_id.decode(), accessory_ltpk


async def continue_pair_setup(conn: RawHapConnection, m2: Tlv, pin: str) -> dict[str, Any]:
    """M3..M6 after the M2 `m2` on `conn`; returns the new controller's pairing data.

    AssertionError with the kTLVError when M4 or M6 refuses.
    """
    srp = srp_proof(m2, pin)
    m4 = await conn.post_tlv("/pair-setup", srp.m3())
    if (error := error_of(m4)) is not None:
        raise AssertionError(f"M4 refused: {error!r}")
    if m4[PairingTag.PROOF] != srp.server_proof:
        raise AssertionError("M4: the accessory's SRP proof is wrong")
    keys = ControllerKeys.generate()
    accessory_id, accessory_ltpk = await exchange_keys(conn, srp, keys)
    return keys.pairing_data(accessory_id, accessory_ltpk, conn.host, conn.port)


async def start_pair_setup(conn: RawHapConnection) -> Tlv:
    """M1 -> M2 (salt and B, or an error)."""
    return await conn.post_tlv("/pair-setup", M1)


async def pair_setup(host: str, port: int, pin: str) -> dict[str, Any]:
    """A whole pair-setup on a fresh connection; returns the controller's pairing data."""
    async with await RawHapConnection.open(host, port) as conn:
        m2 = await start_pair_setup(conn)
        if (error := error_of(m2)) is not None:
            raise AssertionError(f"M2 refused: {error!r}")
        return await continue_pair_setup(conn, m2, pin)


async def guess(host: str, port: int, pin: str) -> tuple[PairingError | None, PairingError | None]:
    """M1 and M3 with `pin` on a fresh connection: the errors at M2 and at M4.

    M3 is not sent when M2 is refused (its error is then None).
    """
    async with await RawHapConnection.open(host, port) as conn:
        m2 = await start_pair_setup(conn)
        if (m2_error := error_of(m2)) is not None:
            return m2_error, None
        return None, error_of(await conn.post_tlv("/pair-setup", srp_proof(m2, pin).m3()))
