"""The SRP disagreement between aiohomekit 4.0.1 (the bridge's controller) and HAP-python
5.2 (accessories built on it), run with both real libraries in-process: with the right
setup code the proofs differ exactly when `srp_padding_differs` says so, so a refused proof
without such values is a wrong code, which the bridge does not try a second time."""

from __future__ import annotations

import hashlib

from aiohomekit.crypto.srp import HK_KEY_LENGTH, SrpClient, pad_left, to_byte_array
from pyhap.hsrp import Server
from pyhap.params import get_srp_context
from pyhap.util import long_to_bytes

from mqtt_hk_bridge.controller.aiohomekit_adapter import srp_padding_differs

CODE = "482-91-735"
WRONG = "111-22-333"
CONTEXT = get_srp_context(3072, hashlib.sha512, 16)
SALT = bytes.fromhex("00" + "5a" * 15)  # a leading zero in the salt is harmless: both pad it
#: The accessory's password verifier, made once (HAP-python makes one per pair-setup).
VERIFIER = Server(CONTEXT, b"Pair-Setup", CODE.encode(), s=SALT, b=1).v
#: Secrets that give each case with this salt and code, found by trying 2, 3, 4...: the
#: accessory's b for a B shorter than 384 bytes or a full one; the controller's a for a
#: shared secret S with a leading zero, a session key K with one, or neither.
B_SHORT, B_FULL = 1459, 2
A_SHORT_SECRET, A_SHORT_KEY, A_PLAIN = 39, 65, 2


def accessory(b: int) -> Server:
    """HAP-python's side of one pair-setup with the secret `b`."""
    return Server(CONTEXT, b"Pair-Setup", CODE.encode(), s=SALT, v=VERIFIER, b=b)


def controller(server: Server, code: str, a: int) -> SrpClient:
    """aiohomekit's side with the secret `a`, fed M2 as HAP-python sends it (B unpadded)."""
    client = SrpClient("Pair-Setup", code)
    client.a = a
    client.A = pow(client.g, a, client.n)
    client.A_b = pad_left(to_byte_array(client.A), HK_KEY_LENGTH)
    client.set_salt(bytearray(server.s))
    client.set_server_public_key(bytearray(long_to_bytes(server.B)))
    return client


def proof_accepted(server: Server, client: SrpClient) -> bool:
    server.set_A(bytes(client.get_public_key_bytes()))
    return server.verify(client.get_proof_bytes()) is not None


def test_the_cases_are_what_they_say() -> None:
    assert len(long_to_bytes(accessory(B_SHORT).B)) < HK_KEY_LENGTH
    assert len(long_to_bytes(accessory(B_FULL).B)) == HK_KEY_LENGTH
    full = accessory(B_FULL)
    assert controller(full, CODE, A_SHORT_SECRET).get_shared_secret_bytes()[0] == 0
    short_key = controller(full, CODE, A_SHORT_KEY)
    assert short_key.get_shared_secret_bytes()[0] != 0
    assert short_key.get_session_key_bytes()[0] == 0


def test_the_right_code_fails_exactly_on_the_predicted_values() -> None:
    cases = {
        "short B": (B_SHORT, A_PLAIN),
        "short S": (B_FULL, A_SHORT_SECRET),
        "short K": (B_FULL, A_SHORT_KEY),
    }
    for case, (b, a) in cases.items():
        server = accessory(b)
        client = controller(server, CODE, a)
        assert srp_padding_differs(client), case
        assert not proof_accepted(server, client), case
    server = accessory(B_FULL)
    client = controller(server, CODE, A_PLAIN)
    assert not srp_padding_differs(client)
    assert proof_accepted(server, client)


def test_a_wrong_code_fails_on_plain_values() -> None:
    server = accessory(B_FULL)
    client = controller(server, WRONG, A_PLAIN)
    assert not srp_padding_differs(client)  # so the bridge does not try it again
    assert not proof_accepted(server, client)
