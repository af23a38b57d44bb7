"""The CoAP (Thread) accessory simulator, driven by aiohomekit's real CoAP controller path.

Each test starts a simulator on ::1 and an aiohomekit Controller whose zeroconf browses
`_hap._udp.local.` on 127.0.0.1, finds the accessory, pairs with its setup code and loads
the pairing the way the bridge does. Where a test needs a message aiohomekit would never
send (tampered, replayed, skipped counter) it seals it with aiohomekit's own session.
"""

# aiohomekit's methods are mostly unannotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiocoap import Message
from aiocoap.error import LibraryShutdown
from aiocoap.numbers.codes import Code
from aiohomekit.controller import Controller
from aiohomekit.controller.abstract import TransportType
from aiohomekit.controller.coap.connection import EncryptionContext
from aiohomekit.controller.coap.discovery import CoAPDiscovery
from aiohomekit.controller.coap.pairing import CoAPPairing
from aiohomekit.controller.coap.pdu import OpCode, decode_pdu, encode_pdu
from aiohomekit.exceptions import (
    AccessoryDisconnectedError,
    AuthenticationError,
    EncryptionError,
    UnavailableError,
)
from aiohomekit.model import Categories
from aiohomekit.model.status_flags import StatusFlags
from aiohomekit.protocol.tlv import TLV
from aiohomekit.uuid import normalize_uuid
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from tests.peers.coap.mdns import HAP_UDP
from tests.peers.coap_accessory import CATEGORY_LIGHTBULB, CoapAccessory
from tests.support.fixtures import ACCESSORY_DATABASES
from tests.support.hap_client import find_iid, loopback_controller
from tests.support.wait import wait_for

Event = dict[tuple[int, int], dict[str, Any]]
HAP_VALUE = 0x01  # the TLV type that carries a value in a PDU body

# iids of the demo database (tests.peers.coap.database.demo_database)
IDENTIFY, ON, BRIGHTNESS, SENSOR_NAME, TEMPERATURE = 2, 50, 51, 65, 66


@pytest.fixture(autouse=True)
def _coap_over_udp_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohomekit's session sockets are aiocoap server contexts bound to ("::", 0), and
    aiocoap then also listens for CoAP over TCP on [::]:5683, every interface. Keep its
    server transports to UDP (aiocoap reads this at each context creation)."""
    monkeypatch.setenv("AIOCOAP_SERVER_TRANSPORT", "udp6")


@pytest.fixture
async def controller() -> AsyncIterator[Controller]:
    async with loopback_controller() as controller:
        yield controller
        # Stopping the controller leaves each CoAP session's socket open.
        for pairing in controller.pairings.values():
            session = pairing.connection.enc_ctx if isinstance(pairing, CoAPPairing) else None
            if session is not None and session.coap_ctx is not None:
                await session.coap_ctx.shutdown()


@pytest.fixture
async def accessory() -> AsyncIterator[CoapAccessory]:
    async with CoapAccessory() as accessory:
        yield accessory


async def find(controller: Controller, accessory: CoapAccessory) -> CoAPDiscovery:
    discovery = await controller.async_find(accessory.device_id, timeout=10)
    assert isinstance(discovery, CoAPDiscovery), discovery
    return discovery


async def pair(
    controller: Controller, accessory: CoapAccessory, alias: str = "thread-bulb"
) -> CoAPPairing:
    """Discover, pair with the setup code and load the pairing as the bridge does.

    finish_pairing() files the new pairing under its alias, where mDNS updates never reach
    it (they look pairings up by device id); load_pairing() files it by id. Loading also
    starts a database read in the background (the c# is news to it); a second read racing
    it can return values unset, because both share one parsed database, so wait for it.
    """
    finish = await (await find(controller, accessory)).async_start_pairing(alias)
    paired = await finish(accessory.setup_code)
    pairing = controller.load_pairing(alias, dict(paired.pairing_data))
    assert isinstance(pairing, CoAPPairing)
    await wait_for(lambda: pairing.accessories is not None, message="first database read")
    return pairing


def session_of(pairing: CoAPPairing) -> EncryptionContext:
    enc_ctx = pairing.connection.enc_ctx
    assert enc_ctx is not None and enc_ctx.coap_ctx is not None, "no verified session"
    return enc_ctx


async def post_sealed(session: EncryptionContext, payload: bytes) -> Message:
    """POST already-sealed bytes from the session's own socket (so from its address)."""
    request = Message(code=Code.POST, payload=payload, uri=session.uri)
    async with asyncio.timeout(10):
        return await session.coap_ctx.request(request).response


def write_pdu(iid: int, value: bytes, tid: int = 7) -> bytes:
    return encode_pdu(OpCode.CHAR_WRITE, tid, iid, TLV.encode_list([(HAP_VALUE, value)]))


async def read(pairing: CoAPPairing, iid: int) -> Any:
    result = (await pairing.get_characteristics([(1, iid)]))[(1, iid)]
    assert "value" in result, result
    return result["value"]


async def read_eventually(pairing: CoAPPairing, iid: int, timeout: float = 10.0) -> Any:
    """Read once aiohomekit manages to; what it raises meanwhile is collected, not hidden."""
    errors: list[BaseException] = []

    async def attempt() -> tuple[Any] | None:
        try:
            return (await read(pairing, iid),)
        except (AccessoryDisconnectedError, EncryptionError, LibraryShutdown) as err:
            errors.append(err)
            return None

    (value,) = await wait_for(attempt, timeout=timeout, interval=0.1, message="a read")
    return value


# --- discovery and pairing ------------------------------------------------------------------


async def test_announced_over_hap_udp_and_identifies_while_unpaired(
    controller: Controller, accessory: CoapAccessory
) -> None:
    discovery = await find(controller, accessory)
    description = discovery.description
    assert description.type == HAP_UDP
    assert (description.address, description.port) == ("::1", accessory.port)
    assert description.id == accessory.device_id.lower()
    assert description.status_flags == StatusFlags.UNPAIRED
    assert description.category == Categories(CATEGORY_LIGHTBULB)
    assert (description.config_num, description.state_num) == (1, 1)
    assert (description.model, description.protocol_version) == ("CoAP-Sim", "1.2")

    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"])
    try:
        info = AsyncServiceInfo(HAP_UDP, f"{accessory.name}.{HAP_UDP}")
        assert await info.async_request(zeroconf.zeroconf, 3000)
    finally:
        await zeroconf.async_close()
    assert info.decoded_properties == {
        "c#": "1",
        "s#": "1",
        "id": accessory.device_id,
        "ff": "0",
        "sf": "1",
        "ci": str(CATEGORY_LIGHTBULB),
        "md": "CoAP-Sim",
        "pv": "1.2",
    }

    # Identify over /0 is for unpaired accessories only.
    assert await discovery.async_identify() is True
    assert accessory.identify_count == 1

    await pair(controller, accessory)
    assert accessory.paired

    def status_flags() -> StatusFlags:
        coap = controller.transports[TransportType.COAP]
        return coap.discoveries[accessory.device_id.lower()].description.status_flags

    await wait_for(lambda: status_flags() == StatusFlags(0), message="sf=0 once paired")


async def test_wrong_setup_code_is_refused_at_m4(
    controller: Controller, accessory: CoapAccessory
) -> None:
    discovery = await find(controller, accessory)
    wrong = "111-22-333"
    assert wrong != accessory.setup_code
    finish = await discovery.async_start_pairing("thread-bulb")
    with pytest.raises(AuthenticationError):
        await finish(wrong)
    assert not accessory.paired
    assert accessory.failed_setup_attempts == 1

    finish = await discovery.async_start_pairing("thread-bulb")
    assert isinstance(await finish(accessory.setup_code), CoAPPairing)
    assert accessory.paired
    assert accessory.failed_setup_attempts == 1

    # Paired: pair-setup is unavailable until the pairing is removed.
    with pytest.raises(UnavailableError):
        await discovery.async_start_pairing("someone-else")


# --- a paired session -----------------------------------------------------------------------


async def test_database_reads_writes_and_statuses(
    controller: Controller, accessory: CoapAccessory
) -> None:
    pairing = await pair(controller, accessory)
    accessories = await pairing.list_accessories_and_characteristics()
    assert [a["aid"] for a in accessories] == [1]
    assert find_iid(accessories, 1, "25", "43") == ON
    assert find_iid(accessories, 1, "11", "8A") == TEMPERATURE
    brightness = next(
        c
        for s in accessories[0]["services"]
        for c in s["characteristics"]
        if c["iid"] == BRIGHTNESS
    )
    assert brightness == {
        "type": normalize_uuid("8"),
        "iid": BRIGHTNESS,
        "perms": ["pr", "pw", "ev"],
        "format": "int",
        "unit": "percentage",
        "value": 100,
        "minValue": 0,
        "maxValue": 100,
        "minStep": 1,
    }

    ids = [(1, ON), (1, BRIGHTNESS), (1, TEMPERATURE)]
    assert await pairing.get_characteristics(ids) == {
        (1, ON): {"value": False},
        (1, BRIGHTNESS): {"value": 100},
        (1, TEMPERATURE): {"value": 21.5},
    }
    assert await pairing.put_characteristics([(1, ON, True), (1, BRIGHTNESS, 40)]) == {}
    assert accessory.writes == [(1, ON, True), (1, BRIGHTNESS, 40)]
    assert await read(pairing, BRIGHTNESS) == 40

    # What a device refuses comes back as HAP-BLE PDU statuses (aiohomekit negates them).
    refused = await pairing.put_characteristics([(1, BRIGHTNESS, 150)])
    assert refused[(1, BRIGHTNESS)]["status"] == -6  # invalid request: above maxValue
    statuses = await pairing.get_characteristics([(1, 999), (1, IDENTIFY)])
    assert statuses[(1, 999)]["status"] == -4  # invalid instance id
    assert statuses[(1, IDENTIFY)]["status"] == -6  # write-only
    assert accessory.writes == [(1, ON, True), (1, BRIGHTNESS, 40)]
    assert await read(pairing, BRIGHTNESS) == 40


async def test_events_reach_subscribers_only(
    controller: Controller, accessory: CoapAccessory
) -> None:
    pairing = await pair(controller, accessory)
    events: list[Event] = []
    pairing.dispatcher_connect(events.append)

    def seen(iid: int, value: Any) -> bool:
        return any(e.get((1, iid)) == {"value": value} for e in events)

    statuses = await pairing.subscribe([(1, ON), (1, TEMPERATURE), (1, SENSOR_NAME)])
    assert statuses == {(1, SENSOR_NAME): {"descripton": "Invalid request", "status": -6}}

    assert accessory.set_value(TEMPERATURE, 23.5)
    await wait_for(lambda: seen(TEMPERATURE, 23.5), timeout=5, message="temperature event")
    assert accessory.set_value(ON, True)
    await wait_for(lambda: seen(ON, True), timeout=5, message="On event")

    # Unsubscribed: no event. Events of one session arrive in order, so once the later
    # On event is in, an event for the earlier change would be too.
    await pairing.unsubscribe([(1, TEMPERATURE)])
    assert accessory.set_value(TEMPERATURE, 19.0)
    assert accessory.set_value(ON, False)
    await wait_for(lambda: seen(ON, False), timeout=5, message="second On event")
    assert not seen(TEMPERATURE, 19.0)
    assert accessory.events_sent == 3


async def test_identify_when_paired_is_the_identify_characteristic(
    controller: Controller, accessory: CoapAccessory
) -> None:
    pairing = await pair(controller, accessory)
    # aiohomekit's identify() posts to /0, which a paired accessory refuses.
    assert await pairing.identify() is False
    assert accessory.identify_count == 0
    assert await pairing.put_characteristics([(1, IDENTIFY, True)]) == {}
    assert accessory.identify_count == 1


async def test_signature_reads(controller: Controller, accessory: CoapAccessory) -> None:
    pairing = await pair(controller, accessory)
    session = session_of(pairing)

    _, body = await session.post(OpCode.CHAR_SIG_READ, BRIGHTNESS, b"")
    signature = dict(TLV.decode_bytes(body))
    assert signature[0x04] == b"\x08"  # Brightness, short Apple type
    assert signature[0x07] == (48).to_bytes(2, "little")  # its service's iid
    assert signature[0x06] == b"\x43"  # Lightbulb
    assert int.from_bytes(signature[0x0A], "little") == 0x0010 | 0x0020 | 0x0080

    _, body = await session.post(OpCode.SERV_SIG_READ, 48, b"")
    assert dict(TLV.decode_bytes(body))[0x0F] == b"\x01\x00"  # primary service


async def test_pairings_list_and_remove(controller: Controller, accessory: CoapAccessory) -> None:
    pairing = await pair(controller, accessory)
    (listed,) = await pairing.list_pairings()
    assert listed["pairingId"] == pairing.pairing_data["iOSPairingId"]
    assert listed["controllerType"] == "admin"
    assert accessory.controllers == [listed["pairingId"]]

    keys = dict(pairing.pairing_data)
    await controller.remove_pairing("thread-bulb")
    assert not accessory.paired
    assert accessory.session_count == 0

    # The removed controller's keys no longer pass pair-verify (M3 is refused).
    removed = controller.load_pairing("removed", keys)
    with pytest.raises(AccessoryDisconnectedError):
        await read(removed, ON)
    assert accessory.sessions_established == 1


async def test_config_number_bump_makes_aiohomekit_read_the_database_again(
    controller: Controller, accessory: CoapAccessory
) -> None:
    pairing = await pair(controller, accessory)
    config_numbers: list[int] = []
    pairing.dispatcher_connect_config_changed(config_numbers.append)
    await accessory.bump_config()
    await wait_for(lambda: config_numbers == [2], message="c# 2 noticed and read")
    assert pairing.config_num == 2


# --- what a real accessory refuses ----------------------------------------------------------


async def test_tampered_request_is_refused_and_ends_the_session(
    controller: Controller, accessory: CoapAccessory
) -> None:
    pairing = await pair(controller, accessory)
    session = session_of(pairing)
    sealed = bytearray(session.encrypt(write_pdu(ON, b"\x01")))
    sealed[-1] ^= 0x01  # one bit of the authentication tag

    response = await post_sealed(session, bytes(sealed))
    assert response.code == Code.NOT_FOUND
    assert accessory.refusals == ["authentication failed"]
    assert accessory.session_count == 0
    assert accessory.writes == []

    # aiohomekit's next request meets the closed session; the one after verifies afresh.
    with pytest.raises(EncryptionError):
        await read(pairing, ON)
    assert await read(pairing, ON) is False
    assert accessory.sessions_established == 2


async def test_replayed_request_is_refused(
    controller: Controller, accessory: CoapAccessory
) -> None:
    pairing = await pair(controller, accessory)
    session = session_of(pairing)
    sealed = session.encrypt(write_pdu(ON, b"\x01"))
    response = await post_sealed(session, sealed)
    assert response.code == Code.CHANGED
    _, status = decode_pdu(7, session.decrypt(response.payload))
    assert status == b""  # success, no body
    assert accessory.writes == [(1, ON, True)]
    accessory.set_value(ON, False)

    # The same bytes again, as a new CoAP message (CoAP's own duplicate detection would
    # answer a retransmission of the first from its cache without asking the accessory).
    response = await post_sealed(session, sealed)
    assert response.code == Code.NOT_FOUND
    assert accessory.refusals == ["authentication failed"]
    assert accessory.writes == [(1, ON, True)]
    assert accessory.database.characteristic(ON).value is False  # type: ignore[union-attr]


async def test_skipped_counter_is_refused(controller: Controller, accessory: CoapAccessory) -> None:
    pairing = await pair(controller, accessory)
    session_of(pairing).send_ctr += 1  # as if a request had been lost on the way
    with pytest.raises(EncryptionError):
        await read(pairing, ON)
    assert accessory.refusals == ["authentication failed"]
    assert await read(pairing, ON) is False
    assert accessory.sessions_established == 2


# --- reboots, silence, moves ----------------------------------------------------------------


async def test_reboot_refuses_the_old_session_and_pair_verify_recovers(
    controller: Controller, accessory: CoapAccessory
) -> None:
    pairing = await pair(controller, accessory)
    events: list[Event] = []
    pairing.dispatcher_connect(events.append)
    await pairing.subscribe([(1, TEMPERATURE)])

    await accessory.reboot()
    assert accessory.session_count == 0
    # The first request after the reboot fails (4.04, then EncryptionError); aiohomekit
    # does not retry it. The next one pair-verifies and re-subscribes.
    with pytest.raises(EncryptionError):
        await read(pairing, ON)
    assert accessory.refusals == ["no session"]
    assert await read(pairing, ON) is False
    assert accessory.sessions_established == 2

    assert accessory.set_value(TEMPERATURE, 26.0)
    await wait_for(
        lambda: {(1, TEMPERATURE): {"value": 26.0}} in events,
        timeout=5,
        message="event after re-subscribing",
    )


async def test_silent_accessory_times_out_then_recovers(
    controller: Controller, accessory: CoapAccessory
) -> None:
    """aiohomekit gives a silent accessory 16 s (its fixed CoAP request timeout)."""
    pairing = await pair(controller, accessory)
    await accessory.go_silent()
    async with asyncio.timeout(30):
        with pytest.raises(AccessoryDisconnectedError):
            await read(pairing, ON)
    assert accessory.dropped_while_silent >= 1
    assert accessory.refusals == []

    await accessory.resume()
    assert await read(pairing, ON) is False
    assert accessory.sessions_established == 2  # aiohomekit dropped the timed-out session


async def test_move_to_another_port_is_followed(
    controller: Controller, accessory: CoapAccessory
) -> None:
    pairing = await pair(controller, accessory)
    old_port = accessory.port
    await accessory.move()
    assert accessory.port != old_port

    assert await read_eventually(pairing, ON) is False
    assert pairing.connection.address == f"[::1]:{accessory.port}"
    assert accessory.sessions_established == 2


async def test_move_to_another_loopback_address_is_followed(
    controller: Controller, accessory: CoapAccessory
) -> None:
    """::ffff:127.0.0.2 is a second IPv6 loopback address without a network namespace."""
    pairing = await pair(controller, accessory)
    await accessory.move(host="::ffff:127.0.0.2")

    assert await read_eventually(pairing, ON) is False
    assert pairing.connection.address == f"[::ffff:7f00:2]:{accessory.port}"
    assert accessory.sessions_established == 2


async def test_request_in_flight_when_a_move_is_announced_raises_library_shutdown(
    controller: Controller, accessory: CoapAccessory
) -> None:
    """A known aiohomekit 4.0.1 pitfall, pinned so that a fix shows up here: the move makes
    it shut its CoAP context under the waiting request, which gets aiocoap's raw error."""
    pairing = await pair(controller, accessory)
    await accessory.go_silent()
    waiting = asyncio.create_task(read(pairing, ON))
    await wait_for(lambda: accessory.dropped_while_silent >= 1, message="request at old address")
    await accessory.move()
    with pytest.raises(LibraryShutdown):
        async with asyncio.timeout(10):
            await waiting
    # Requests made while that shutdown finishes get the same error; then it reconnects.
    assert await read_eventually(pairing, ON) is False
    assert pairing.connection.address == f"[::1]:{accessory.port}"


# --- a real device's database ---------------------------------------------------------------


def _canonical(accessories: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(aid, service type, service iid, characteristic type, iid, perms, format, unit,
    value) for every characteristic; empty data reads as None over CoAP in aiohomekit."""
    return [
        (
            accessory["aid"],
            normalize_uuid(service["type"]),
            service["iid"],
            normalize_uuid(char["type"]),
            char["iid"],
            sorted(char["perms"]),
            char.get("format"),
            char.get("unit"),
            char.get("value") if char.get("value") != "" else None,
        )
        for accessory in accessories
        for service in accessory["services"]
        for char in service["characteristics"]
    ]


async def test_recorded_nanoleaf_thread_bulb_is_served_faithfully(
    controller: Controller,
) -> None:
    recording = ACCESSORY_DATABASES / "nanoleaf_bulb.json"
    async with CoapAccessory.from_recording(recording) as accessory:
        pairing = await pair(controller, accessory)
        served = await pairing.list_accessories_and_characteristics()
        assert _canonical(served) == _canonical(json.loads(recording.read_text()))

        on = accessory.database.find("43", "25").iid
        events: list[Event] = []
        pairing.dispatcher_connect(events.append)
        await pairing.subscribe([(1, on)])
        assert accessory.set_value(on, False)
        await wait_for(lambda: {(1, on): {"value": False}} in events, message="On event")
