"""Pair-setup and pairing management beyond HAP-python's own rules (exposer/pair_setup.py and
exposer/hap_adapter.py): setup-code guessing, concurrent pair-setups, pairing limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohomekit.exceptions import AuthenticationError
from aiohomekit.protocol.tlv import TLV

from mqtt_hk_bridge.exposer.pair_setup import (
    ATTEMPTS_FILE,
    MAX_FAILED_ATTEMPTS,
    MAX_PAIRINGS,
    PAIR_SETUP_TIMEOUT,
    FailedAttempts,
    PairSetupGuard,
    reset_pair_setup_attempts,
)
from tests.peers.tlv8 import PairingError
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.hap_raw import (
    ControllerKeys,
    RawHapConnection,
    Tlv,
    continue_pair_setup,
    error_of,
    guess,
    illegal_key_proof,
    pair_setup,
    srp_proof,
    start_pair_setup,
)
from tests.support.wait import wait_for

WRONG_CODE = "111-22-333"


def attempts_on_disk(bridge: BridgeProcess) -> int:
    path = bridge.data_dir / ATTEMPTS_FILE
    return int(json.loads(path.read_text())["failed_attempts"]) if path.exists() else 0


def state_file(bridge: BridgeProcess) -> dict[str, Any]:
    return dict(json.loads((bridge.data_dir / "homekit-state.json").read_text()))


# --- PIN brute force -----------------------------------------------------------------------------


async def test_wrong_codes_lock_pair_setup_until_a_local_reset(
    make_bridge: Callable[..., BridgeProcess],
) -> None:
    bridge = make_bridge(start=False)
    bridge.data_dir.mkdir(mode=0o700, parents=True)
    # 99 wrong codes before this run (100 real SRP exchanges would take seconds of CPU).
    (bridge.data_dir / ATTEMPTS_FILE).write_text(json.dumps({"failed_attempts": 99}))
    bridge.start()
    host, port = bridge.host, bridge.hap_port

    # The 100th wrong code is still checked, refused at M4, and counted on disk.
    assert await guess(host, port, WRONG_CODE) == (None, PairingError.AUTHENTICATION)
    assert attempts_on_disk(bridge) == MAX_FAILED_ATTEMPTS
    assert stat.S_IMODE((bridge.data_dir / ATTEMPTS_FILE).stat().st_mode) == 0o600

    # From now on M1 is refused before any SRP work, even for the right code ...
    assert await guess(host, port, bridge.setup_code) == (PairingError.MAX_TRIES, None)
    # ... and after a restart.
    assert bridge.stop() == 0
    bridge.start()
    assert await guess(host, port, bridge.setup_code) == (PairingError.MAX_TRIES, None)

    # The local reset (`mqtt-hk-bridge reset-pair-setup`) unlocks the running bridge.
    assert reset_pair_setup_attempts(bridge.data_dir) == MAX_FAILED_ATTEMPTS
    assert await guess(host, port, WRONG_CODE) == (None, PairingError.AUTHENTICATION)
    assert attempts_on_disk(bridge) == 1
    # The right code pairs and resets the counter (ADK: on the accepted proof).
    pairing = await pair_setup(host, port, bridge.setup_code)
    assert attempts_on_disk(bridge) == 0
    async with HapClient.from_pairing_data(pairing) as home:
        assert await home.list_accessories()


async def test_hap_python_backoff_slows_a_guesser_and_every_guess_is_counted(
    bridge: BridgeProcess,
) -> None:
    host, port = bridge.host, bridge.hap_port
    for _ in range(5):
        assert await guess(host, port, WRONG_CODE) == (None, PairingError.AUTHENTICATION)
    assert attempts_on_disk(bridge) == 5
    # HAP-python 5.2 answers Busy for 60 s after 5 wrong proofs, even to the right code; a
    # refused M1 checks no proof, so nothing more is counted.
    assert await guess(host, port, bridge.setup_code) == (PairingError.BUSY, None)
    assert attempts_on_disk(bridge) == 5


async def test_a_pairing_that_cannot_be_saved_is_refused(bridge: BridgeProcess) -> None:
    # A directory where the state file's temp file goes: every save of the HAP state fails.
    blocker = bridge.data_dir / ".homekit-state.json.tmp"
    blocker.mkdir()
    # HAP-python answers a refused M5 with HTTP 500 (-70410) rather than an M6 error TLV.
    with pytest.raises(AssertionError, match="HTTP 500"):
        await pair_setup(bridge.host, bridge.hap_port, bridge.setup_code)
    assert state_file(bridge)["paired_clients"] == {}
    # Not paired in memory either: once the disk takes writes again, pairing works.
    blocker.rmdir()
    pairing = await pair_setup(bridge.host, bridge.hap_port, bridge.setup_code)
    async with HapClient.from_pairing_data(pairing) as home:
        assert await home.list_accessories()
    assert len(state_file(bridge)["paired_clients"]) == 1


async def test_srp_key_a_multiple_of_n_does_not_replace_the_setup_code(
    bridge: BridgeProcess,
) -> None:
    # A = N makes the SRP shared secret 0, so its proof needs no setup code; HAP-python 5.0
    # accepted it (M4 with its proof, then M5 paired an admin). 5.2 refuses it, and the
    # bridge counts it as a wrong code.
    async with await RawHapConnection.open(bridge.host, bridge.hap_port) as conn:
        m2 = await start_pair_setup(conn)
        m4 = await conn.post_tlv("/pair-setup", illegal_key_proof(m2).m3())
        assert error_of(m4) is PairingError.AUTHENTICATION
    assert attempts_on_disk(bridge) == 1
    assert state_file(bridge)["paired_clients"] == {}


# --- one pair-setup at a time --------------------------------------------------------------------


async def test_second_pair_setup_is_busy_and_cannot_disturb_the_first(
    bridge: BridgeProcess,
) -> None:
    host, port = bridge.host, bridge.hap_port
    # An abandoned pair-setup frees the accessory when its connection closes.
    async with await RawHapConnection.open(host, port) as abandoned:
        assert error_of(await start_pair_setup(abandoned)) is None

    async with await RawHapConnection.open(host, port) as legit:

        async def legit_m1() -> Tlv | None:
            m2 = await start_pair_setup(legit)
            return None if error_of(m2) is PairingError.BUSY else m2

        m2: Tlv = await wait_for(legit_m1, timeout=2.0, message="M1 after the abandoned session")
        assert error_of(m2) is None

        # An attacker's M1 every 100 ms on other connections. HAP-python keeps one SRP
        # session per accessory: each M1 replaced the legitimate controller's, whose M3
        # then failed at M4.
        attacks: list[PairingError | None] = []
        for _ in range(5):
            async with await RawHapConnection.open(host, port) as attacker:
                attacks.append(error_of(await start_pair_setup(attacker)))
            await asyncio.sleep(0.1)  # pacing, not synchronisation
        # Nor may another connection step into the legitimate controller's session at M3.
        async with await RawHapConnection.open(host, port) as attacker:
            m4 = await attacker.post_tlv("/pair-setup", srp_proof(m2, WRONG_CODE).m3())

        pairing = await continue_pair_setup(legit, m2, bridge.setup_code)
        assert attacks == [PairingError.BUSY] * 5
        assert error_of(m4) is PairingError.UNKNOWN

    assert attempts_on_disk(bridge) == 0  # Busy is refused before any proof is checked
    async with HapClient.from_pairing_data(pairing) as home:
        assert await home.list_accessories()
    # Paired: pair-setup is unavailable to everyone now.
    assert await guess(host, port, bridge.setup_code) == (PairingError.UNAVAILABLE, None)


def test_pair_setup_session_expires_after_30_s(tmp_path: Path) -> None:
    now = [0.0]
    guard = PairSetupGuard(FailedAttempts(tmp_path / ATTEMPTS_FILE), clock=lambda: now[0])
    assert guard.begin("first") is None
    now[0] = PAIR_SETUP_TIMEOUT - 0.1
    assert guard.begin("second") == bytes([PairingError.BUSY])
    # Restarting on the same connection does not extend the session.
    assert guard.begin("first") is None
    now[0] = PAIR_SETUP_TIMEOUT
    assert not guard.owns("first")
    assert guard.begin("second") is None


# --- pairing management --------------------------------------------------------------------------


def _user_client(bridge: BridgeProcess, home: HapClient, keys: ControllerKeys) -> HapClient:
    accessory_ltpk = bytes.fromhex(home.pairing_data["AccessoryLTPK"])
    return HapClient.from_pairing_data(
        keys.pairing_data(home.device_id, accessory_ltpk, bridge.host, bridge.hap_port)
    )


async def _pairings(client: HapClient, body: list[Any]) -> PairingError | None:
    """POST /pairings on client's verified session; the kTLVError of the answer."""
    await client.connect()
    reply = dict(await client.pairing.connection.post_tlv("/pairings", body))
    return PairingError(reply[TLV.kTLVType_Error][0]) if TLV.kTLVType_Error in reply else None


def _add(keys: ControllerKeys, admin: bool = False, public: bytes | None = None) -> list[Any]:
    return [
        (TLV.kTLVType_State, TLV.M1),
        (TLV.kTLVType_Method, TLV.AddPairing),
        (TLV.kTLVType_Identifier, keys.pairing_id.encode()),
        (TLV.kTLVType_PublicKey, public or keys.public_bytes),
        (TLV.kTLVType_Permissions, b"\x01" if admin else b"\x00"),
    ]


def _remove(pairing_id: str) -> list[Any]:
    return [
        (TLV.kTLVType_State, TLV.M1),
        (TLV.kTLVType_Method, TLV.RemovePairing),
        (TLV.kTLVType_Identifier, pairing_id.encode()),
    ]


LIST = [(TLV.kTLVType_State, TLV.M1), (TLV.kTLVType_Method, TLV.ListPairings)]


async def test_at_most_16_pairings_and_users_cannot_manage_pairings(
    bridge: BridgeProcess, home: HapClient
) -> None:
    user_keys = ControllerKeys.generate()
    assert await _pairings(home, _add(user_keys)) is None
    async with _user_client(bridge, home, user_keys) as user:
        assert await user.list_accessories()
        # A user (non-admin) controller may not add, remove or list pairings.
        assert await _pairings(user, _add(ControllerKeys.generate())) is PairingError.AUTHENTICATION
        assert await _pairings(user, _remove(home.pairing_data["iOSPairingId"])) is (
            PairingError.AUTHENTICATION
        )
        assert await _pairings(user, LIST) is PairingError.AUTHENTICATION

    for _ in range(MAX_PAIRINGS - 2):  # admin + user + 14 = 16
        assert await _pairings(home, _add(ControllerKeys.generate())) is None
    assert await _pairings(home, _add(ControllerKeys.generate())) is PairingError.MAX_PEERS
    # A known controller may still change its permissions, but never its key.
    assert await _pairings(home, _add(user_keys, admin=True)) is None
    other_key = ControllerKeys.generate().public_bytes
    assert await _pairings(home, _add(user_keys, public=other_key)) is PairingError.UNKNOWN
    pairings = await home.list_pairings()
    assert len(pairings) == MAX_PAIRINGS
    assert len(state_file(bridge)["paired_clients"]) == MAX_PAIRINGS


async def test_removed_controller_loses_its_open_session(
    bridge: BridgeProcess, home: HapClient
) -> None:
    user_keys = ControllerKeys.generate()
    assert await _pairings(home, _add(user_keys)) is None
    user = _user_client(bridge, home, user_keys)
    try:
        assert await user.list_accessories()

        assert await _pairings(home, _remove(user_keys.pairing_id)) is None
        await wait_for(lambda: not user.is_connected, timeout=1.0, message="user session closed")
        with pytest.raises(AuthenticationError):
            await user.list_accessories()
        # The admin was not removed and keeps its session.
        assert home.is_connected
        assert await home.list_accessories()
    finally:
        # aiohomekit re-raises its failed reconnect (pair-verify refused) on close.
        with contextlib.suppress(AuthenticationError):
            await user.close()

    # The last admin removes itself: every pairing goes; its own answer still arrives first.
    assert await _pairings(home, _remove(home.pairing_data["iOSPairingId"])) is None
    assert state_file(bridge)["paired_clients"] == {}
    await wait_for(lambda: not home.is_connected, timeout=1.0, message="admin session closed")
