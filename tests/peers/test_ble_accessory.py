"""aiohomekit's real BLE transport (BleController, BlePairing, bleak, bleak-retry-connector)
against the HAP-BLE accessory simulator, over the simulated air and our bleak backend.

aiohomekit runs unchanged: only bleak's backend lookup points at the simulated air. Each test
starts its own air, accessory and controller; pairing is in-process (SRP-3072 takes ~50 ms).
"""

# aiohomekit's methods are mostly unannotated; calling them is fine in tests.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import bleak  # before aiohomekit's BLE modules, as aiohomekit expects
import pytest
from aiohomekit.characteristic_cache import CharacteristicCacheMemory
from aiohomekit.controller.ble.controller import BleController
from aiohomekit.controller.ble.discovery import BleDiscovery
from aiohomekit.controller.ble.pairing import BlePairing
from aiohomekit.exceptions import AccessoryNotFoundError, AuthenticationError, UnavailableError
from aiohomekit.model import Categories
from aiohomekit.model.status_flags import StatusFlags
from aiohomekit.pdu import OpCode, PDUStatus, decode_pdu, encode_pdu

from tests.peers.ble_accessory import HapBleAccessory
from tests.support.ble_air import Air, Link, LinkLost
from tests.support.bleak_backend import installed
from tests.support.wait import wait_for

ALIAS = "sim-bulb"
WRONG_CODE = "111-22-333"

Events = list[dict[tuple[int, int], dict[str, Any]]]


@pytest.fixture
def air() -> Iterator[Air]:
    with installed(Air()) as air:
        yield air


@pytest.fixture
def accessory(air: Air) -> HapBleAccessory:
    accessory = HapBleAccessory(air)
    accessory.start()
    return accessory


@pytest.fixture
async def controller(air: Air) -> AsyncIterator[BleController]:
    controller = BleController(char_cache=CharacteristicCacheMemory())
    await controller.async_start()
    yield controller
    for pairing in list(controller.pairings.values()):
        await pairing.shutdown()
    await controller.async_stop()


async def discover(controller: BleController, accessory: HapBleAccessory) -> BleDiscovery:
    """async_find does not wait for an advertisement (see the test below): wait first."""
    await wait_for(lambda: hkid(accessory) in controller.discoveries, message="advertisement")
    discovery: BleDiscovery = await controller.async_find(hkid(accessory))
    return discovery


async def pair(controller: BleController, accessory: HapBleAccessory) -> BlePairing:
    """Pair, then load the pairing as a bridge does after saving it, and read the database.

    The BlePairing that finish_pairing returns is filed under its alias, not its device id,
    so advertisements (GSN changes, broadcasts) never reach it: load_pairing with the
    device id is what makes events work. Reading the database first fills the
    characteristic cache; a BlePairing loaded without a cached database raises
    AttributeError on every advertisement until it has been populated (aiohomekit 4.0.1).
    """
    discovery = await discover(controller, accessory)
    finish = await discovery.async_start_pairing(ALIAS)
    pairing = await finish(accessory.setup_code)
    await pairing.list_accessories_and_characteristics()
    pairing_data = dict(pairing.pairing_data)
    await pairing.close()
    loaded = controller.load_pairing(pairing_data["AccessoryPairingID"], pairing_data)
    assert loaded is not None
    await loaded.async_populate_accessories_state(force_update=True)
    return loaded


def hkid(accessory: HapBleAccessory) -> str:
    """The accessory's id as aiohomekit's BLE controller keys discoveries and pairings."""
    return accessory.identity.device_id.lower()


def record_events(pairing: BlePairing) -> Events:
    events: Events = []
    pairing.dispatcher_connect(events.append)
    return events


def values_seen(events: Events, iid: int) -> list[Any]:
    return [event[(1, iid)]["value"] for event in events if (1, iid) in event]


def current_link(air: Air, accessory: HapBleAccessory) -> Link:
    return [link for link in air.links_to(accessory.address) if link.connected][-1]


async def test_discovered_from_its_advertisement(
    accessory: HapBleAccessory, controller: BleController
) -> None:
    discovery = await discover(controller, accessory)

    description = discovery.description
    assert description.id == hkid(accessory)
    assert description.name == "Sim Bulb"
    assert description.category == Categories.LIGHTBULB
    assert description.status_flags & StatusFlags.UNPAIRED
    assert (description.config_num, description.state_num) == (1, 1)
    assert description.address == accessory.address
    assert [d.description.id for d in [x async for x in controller.async_discover()]] == [
        description.id
    ]


async def test_async_find_does_not_wait_for_an_advertisement(
    air: Air, controller: BleController
) -> None:
    """aiohomekit 4.0.1 quirk: async_find never files its future, so it only returns devices
    already seen; an accessory that starts advertising during the wait is not found."""
    late = HapBleAccessory(air)
    asyncio.get_running_loop().call_later(0.1, late.start)

    with pytest.raises(AccessoryNotFoundError):
        await controller.async_find(hkid(late), timeout=1.0)

    assert hkid(late) in controller.discoveries  # heard during the wait, yet not returned


async def test_pairs_with_the_setup_code_and_lists_the_database(
    accessory: HapBleAccessory, controller: BleController
) -> None:
    pairing = await pair(controller, accessory)

    assert accessory.identity.paired
    assert pairing.pairing_data["Connection"] == "BLE"
    assert pairing.pairing_data["AccessoryPairingID"] == accessory.identity.device_id
    assert pairing.pairing_data["AccessoryLTPK"] == accessory.identity.ltpk.hex()
    [info] = await pairing.list_accessories_and_characteristics()
    chars = {c["iid"]: c for service in info["services"] for c in service["characteristics"]}
    on, brightness, temperature = (
        chars[accessory.on.iid],
        chars[accessory.brightness.iid],
        chars[accessory.temperature.iid],
    )
    assert (on["format"], on["value"], sorted(on["perms"])) == ("bool", False, ["ev", "pr", "pw"])
    assert on["broadcast_events"] and on["disconnected_events"]
    assert (brightness["format"], brightness["value"], brightness["unit"]) == (
        "int",
        50,
        "percentage",
    )
    assert (brightness["minValue"], brightness["maxValue"], brightness["minStep"]) == (0, 100, 1)
    assert temperature["format"] == "float"
    assert temperature["value"] == pytest.approx(20.0)
    assert temperature["unit"] == "celsius"
    names = [c.get("value") for c in chars.values() if c.get("description") == "Name"]
    assert names == ["Sim Bulb", "Sim Bulb light", "Sim Bulb temperature"]
    # The controller now sees a paired accessory in the advertisement.
    await wait_for(
        lambda: (
            not controller.discoveries[hkid(accessory)].description.status_flags
            & StatusFlags.UNPAIRED
        ),
        message="paired status flag",
    )


async def test_wrong_setup_code_is_refused(
    accessory: HapBleAccessory, controller: BleController
) -> None:
    discovery = await discover(controller, accessory)
    finish = await discovery.async_start_pairing(ALIAS)

    with pytest.raises(AuthenticationError):
        await finish(WRONG_CODE)

    assert not accessory.identity.paired
    assert accessory.identity.failed_setup_attempts == 1
    # The right code still works afterwards (aiohomekit restarts from M1 on a second try).
    pairing = await finish(accessory.setup_code)
    assert pairing.pairing_data["AccessoryPairingID"] == accessory.identity.device_id
    assert accessory.identity.paired


async def test_a_paired_accessory_refuses_another_pair_setup(
    air: Air, accessory: HapBleAccessory, controller: BleController
) -> None:
    await pair(controller, accessory)
    await controller.pairings[hkid(accessory)].close()
    other = BleController(char_cache=CharacteristicCacheMemory())
    await other.async_start()
    try:
        discovery = await discover(other, accessory)
        with pytest.raises(UnavailableError):
            await discovery.async_start_pairing("intruder")
    finally:
        await other.async_stop()
    assert list(accessory.identity.pairings) == [
        controller.pairings[hkid(accessory)].pairing_data["iOSPairingId"]
    ]


async def test_identify_unpaired_in_the_clear_and_paired_in_the_session(
    accessory: HapBleAccessory, controller: BleController
) -> None:
    discovery = await discover(controller, accessory)
    await discovery.async_identify()
    assert accessory.stats.identifies == 1

    pairing = await pair(controller, accessory)
    await pairing.identify()
    assert accessory.stats.identifies == 2


async def test_reads_and_writes(accessory: HapBleAccessory, controller: BleController) -> None:
    pairing = await pair(controller, accessory)
    accessory.set_value(accessory.temperature, 23.5)

    values = await pairing.get_characteristics(
        [(1, accessory.temperature.iid), (1, accessory.brightness.iid)]
    )
    assert values[(1, accessory.temperature.iid)]["value"] == pytest.approx(23.5)
    assert values[(1, accessory.brightness.iid)]["value"] == 50

    await pairing.put_characteristics(
        [(1, accessory.on.iid, True), (1, accessory.brightness.iid, 77)]
    )
    assert (accessory.on.value, accessory.brightness.value) == (True, 77)
    assert accessory.stats.writes == [(accessory.on.iid, True), (accessory.brightness.iid, 77)]


async def test_connected_events_are_indications_then_reads(
    accessory: HapBleAccessory, controller: BleController
) -> None:
    pairing = await pair(controller, accessory)
    events = record_events(pairing)
    await pairing.subscribe([(1, accessory.temperature.iid), (1, accessory.brightness.iid)])
    await wait_for(
        lambda: (
            accessory.indications_enabled == {accessory.temperature.iid, accessory.brightness.iid}
        ),
        message="indications enabled",
    )
    connections = accessory.stats.connections

    accessory.set_value(accessory.temperature, 24.5)

    await wait_for(lambda: values_seen(events, accessory.temperature.iid), message="event")
    assert values_seen(events, accessory.temperature.iid) == [pytest.approx(24.5)]
    assert accessory.stats.connections == connections  # over the open connection


async def test_disconnected_events_bump_the_state_number_and_the_controller_reads(
    accessory: HapBleAccessory, controller: BleController
) -> None:
    pairing = await pair(controller, accessory)
    await pairing.subscribe([(1, accessory.temperature.iid)])
    accessory.disconnect()
    await wait_for(lambda: not pairing.is_connected, message="link down")
    events = record_events(pairing)
    gsn, connections = accessory.gsn, accessory.stats.connections

    accessory.set_value(accessory.temperature, 18.5)

    assert accessory.gsn == gsn + 1
    await wait_for(lambda: values_seen(events, accessory.temperature.iid), message="catch-up read")
    assert values_seen(events, accessory.temperature.iid) == [pytest.approx(18.5)]
    assert accessory.stats.connections == connections + 1
    assert accessory.stats.resumed_sessions >= 1  # the reconnect resumed the earlier session


async def test_broadcast_notifications_arrive_without_a_connection(
    accessory: HapBleAccessory, controller: BleController
) -> None:
    pairing = await pair(controller, accessory)
    await pairing.subscribe([(1, accessory.on.iid)])
    await wait_for(lambda: accessory.broadcast_iids == {accessory.on.iid}, message="broadcast on")
    accessory.disconnect()
    await wait_for(lambda: not pairing.is_connected, message="link down")
    events = record_events(pairing)
    connections = accessory.stats.connections

    accessory.set_value(accessory.on, True)

    await wait_for(lambda: values_seen(events, accessory.on.iid), message="broadcast event")
    assert values_seen(events, accessory.on.iid) == [True]
    assert accessory.stats.connections == connections  # decrypted from the advertisement


async def test_survives_a_reboot_with_a_fresh_pair_verify(
    accessory: HapBleAccessory, controller: BleController
) -> None:
    pairing = await pair(controller, accessory)
    full_verifies = accessory.stats.full_verifies
    # An ordinary reconnect resumes the session ...
    accessory.disconnect()
    await wait_for(lambda: not pairing.is_connected, message="link down")
    await pairing.get_characteristics([(1, accessory.on.iid)])
    assert accessory.stats.resumed_sessions == 1
    assert accessory.stats.full_verifies == full_verifies
    accessory.set_value(accessory.brightness, 33)

    accessory.reboot()

    # ... but after a reboot the accessory has forgotten it: a full pair-verify instead.
    await wait_for(lambda: not pairing.is_connected, message="link down")
    values = await pairing.get_characteristics([(1, accessory.brightness.iid)])
    assert values[(1, accessory.brightness.iid)]["value"] == 33
    assert accessory.stats.resumes_refused == 1
    assert accessory.stats.resumed_sessions == 1
    assert accessory.stats.full_verifies == full_verifies + 1


async def test_a_fragment_with_a_bad_tag_ends_the_link(
    air: Air, accessory: HapBleAccessory, controller: BleController
) -> None:
    pairing = await pair(controller, accessory)
    link = current_link(air, accessory)
    link.corrupt_next_write()

    # aiohomekit retries once on a new connection, so its write lands the second time.
    await pairing.put_characteristics([(1, accessory.on.iid, True)])

    assert accessory.stats.rejected_fragments == 1
    assert not link.connected
    assert accessory.stats.writes == [(accessory.on.iid, True)]  # only the retried write
    assert current_link(air, accessory) is not link


async def test_a_replayed_fragment_is_refused(
    air: Air, accessory: HapBleAccessory, controller: BleController
) -> None:
    pairing = await pair(controller, accessory)
    await pairing.put_characteristics([(1, accessory.on.iid, True)])
    link = current_link(air, accessory)
    captured = [data for handle, data in link.central_writes if handle == accessory.on.handle][-1]
    accessory.set_value(accessory.on, False)

    with pytest.raises(LinkLost):
        await link.replay(accessory.on.handle, captured)

    assert accessory.stats.rejected_fragments == 1
    assert accessory.on.value is False
    assert not link.connected


async def test_insecure_requests_get_insufficient_authentication(
    accessory: HapBleAccessory, controller: BleController
) -> None:
    """Before pair-verify only signatures and pairing answer; a read of On is refused."""
    await pair(controller, accessory)
    await controller.pairings[hkid(accessory)].close()
    await wait_for(lambda: not accessory.connected, message="link down")
    device = controller.discoveries[hkid(accessory)].device

    async with bleak.BleakClient(device) as client:
        char = client.services.get_characteristic(accessory.on.handle)
        assert char is not None
        tid = 0x42
        for fragment in encode_pdu(OpCode.CHAR_READ, tid, accessory.on.iid):
            await client.write_gatt_char(char, fragment, response=True)
        status, _, _ = decode_pdu(tid, bytes(await client.read_gatt_char(char)))

    assert status == PDUStatus.INSUFFICIENT_AUTHENTICATION


async def test_removing_the_only_pairing_unpairs_the_accessory(
    accessory: HapBleAccessory, controller: BleController
) -> None:
    pairing = await pair(controller, accessory)
    [listed] = await pairing.list_pairings()
    assert listed["pairingId"] == pairing.pairing_data["iOSPairingId"]
    assert listed["controllerType"] == "admin"

    await pairing.remove_pairing(pairing.pairing_data["iOSPairingId"])

    assert not accessory.identity.paired
    await wait_for(
        lambda: (
            controller.discoveries[hkid(accessory)].description.status_flags & StatusFlags.UNPAIRED
        ),
        message="unpaired status flag",
    )
