"""The controller side with a Bluetooth accessory (HAP-BLE): aiohomekit's real BLE code over
our simulated air (tests/support/ble_air.py, bleak_backend.py) and the accessory simulator
written from the protocol (tests/peers/ble_accessory.py), in this process."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mqtt_hk_bridge.controller.settings import ControllerSettings
from tests.peers.ble_accessory import HapBleAccessory
from tests.support.ble_air import Air
from tests.support.bleak_backend import installed
from tests.support.bridge_process import BridgeProcess
from tests.support.controller_harness import FAST, ControllerHarness
from tests.support.mosquitto import Mosquitto, MqttProbe
from tests.support.wait import wait_for

ALIAS = "blebulb"
LIGHT = f"HomeKit/{ALIAS}/Lightbulb"
SENSOR = f"HomeKit/{ALIAS}/TemperatureSensor/CurrentTemperature"
# This machine lists no Bluetooth adapter: the simulated air needs the transport forced on.
SETTINGS = ControllerSettings(**{**FAST.__dict__, "request_timeout": 5.0, "bluetooth": True})


@pytest.fixture
def air() -> Iterator[Air]:
    with installed(Air()) as air:
        yield air


@pytest.fixture
def accessory(air: Air) -> HapBleAccessory:
    accessory = HapBleAccessory(air)
    accessory.start()
    return accessory


async def wait_payload(probe: MqttProbe, topic: str, payload: bytes, timeout: float = 10) -> None:
    await probe.wait_message(topic, lambda m: m.payload == payload, timeout=timeout)


async def request(probe: MqttProbe, action: str, body: dict[str, object]) -> object:
    await probe.publish(f"HomeKit/bridge/request/{action}", json.dumps(body))
    answer = await probe.wait_message(f"HomeKit/bridge/response/{action}", timeout=30)
    response = json.loads(answer.payload)
    assert response["status"] == "ok", response
    return response["data"]


async def test_a_bluetooth_accessory_is_discovered_paired_mirrored_and_written(
    accessory: HapBleAccessory, mosquitto: Mosquitto, probe: MqttProbe, tmp_path: Path
) -> None:
    device_id = accessory.identity.device_id
    async with ControllerHarness(tmp_path / "data", mosquitto, settings=SETTINGS):
        found = await request(probe, "discover", {"timeout": 0.5})
        assert isinstance(found, list)
        [listed] = [d for d in found if d["device_id"] == device_id.lower()]
        assert (listed["transport"], listed["paired"], listed["port"]) == ("ble", False, None)

        await request(
            probe,
            "pair",
            {"device_id": device_id, "setup_code": accessory.setup_code, "alias": ALIAS},
        )
        await wait_payload(probe, f"HomeKit/{ALIAS}/availability", b"online")
        await wait_payload(probe, f"{LIGHT}/On", b"0")
        await wait_payload(probe, SENSOR, b"20")

        pairings = await request(probe, "list-pairings", {})
        assert isinstance(pairings, list)
        assert [p["connection"] for p in pairings] == ["BLE"]

        # A Home-app style write from MQTT goes over the air, once.
        await probe.publish(f"{LIGHT}/Brightness/set", "40")
        await wait_payload(probe, f"{LIGHT}/Brightness", b"40")
        assert accessory.brightness.value == 40

        # A change made on the device while no controller is connected: the advertised state
        # number goes up, and aiohomekit connects and reads what changed.
        accessory.disconnect()
        await wait_for(lambda: not accessory.connected, timeout=5, message="link down")
        accessory.set_value(accessory.on, True)
        await wait_payload(probe, f"{LIGHT}/On", b"1", timeout=15)


async def test_a_bridge_restart_keeps_the_bluetooth_pairing_and_its_events(
    accessory: HapBleAccessory, mosquitto: Mosquitto, probe: MqttProbe, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    device_id = accessory.identity.device_id
    async with ControllerHarness(data_dir, mosquitto, settings=SETTINGS):
        await request(
            probe,
            "pair",
            {"device_id": device_id, "setup_code": accessory.setup_code, "alias": ALIAS},
        )
        await wait_payload(probe, f"{LIGHT}/On", b"0")
    assert (data_dir / "controller-cache.json").exists()
    accessory.disconnect()
    probe.messages.clear()
    async with ControllerHarness(data_dir, mosquitto, settings=SETTINGS):
        await wait_payload(probe, f"HomeKit/{ALIAS}/availability", b"online", timeout=15)
        await wait_payload(probe, f"{LIGHT}/On", b"0")
        accessory.disconnect()
        await wait_for(lambda: not accessory.connected, timeout=5, message="link down")
        accessory.set_value(accessory.on, True)
        await wait_payload(probe, f"{LIGHT}/On", b"1", timeout=15)
    await wait_for(lambda: not accessory.connected, timeout=5, message="disconnected at stop")


def uses_dbus(bridge: BridgeProcess) -> bool:
    """Whether bleak's D-Bus library (compiled modules, so they show in the maps) is loaded."""
    return any("/dbus_fast/" in path for path in bridge.mapped_files())


async def test_a_machine_without_bluetooth_says_so_once_and_carries_on(
    make_bridge: Callable[..., BridgeProcess], probe: MqttProbe
) -> None:
    # Our test machines list no Bluetooth adapter: the bridge as users run it (`auto`)
    # leaves aiohomekit's Bluetooth transport, bleak and dbus-fast unloaded.
    bridge = make_bridge()
    await wait_for(lambda: "Controller side started" in bridge.logs(), message="started")
    assert bridge.logs().count("Bluetooth is off (no adapter here") == 1
    await probe.publish("HomeKit/esp/Switch/On", "1")
    await probe.wait_message("HomeKit/bridge/devices", lambda m: b'"esp"' in m.payload)
    assert not uses_dbus(bridge)


async def test_bluetooth_turned_on_without_an_adapter_or_bluez_says_so_once(
    make_bridge: Callable[..., BridgeProcess], probe: MqttProbe
) -> None:
    bridge = make_bridge(controller={"bluetooth": True})
    await wait_for(lambda: "Controller side started" in bridge.logs(), message="started")
    assert bridge.logs().count("Bluetooth is not available here") == 1
    assert uses_dbus(bridge)
    await probe.publish("HomeKit/esp/Switch/On", "1")
    await probe.wait_message("HomeKit/bridge/devices", lambda m: b'"esp"' in m.payload)


async def test_a_stored_bluetooth_pairing_with_bluetooth_off_is_skipped_with_the_reason(
    make_bridge: Callable[..., BridgeProcess], probe: MqttProbe
) -> None:
    bridge = make_bridge(start=False, controller={"bluetooth": False})
    bridge.data_dir.mkdir(parents=True)
    keys = {"AccessoryLTPK": "00" * 32, "iOSPairingId": "bridge", "iOSDeviceLTSK": "00" * 32}
    pairing = {"AccessoryPairingID": "AA:BB:CC:DD:EE:01", "Connection": "BLE", **keys}
    stored = {"version": 1, "pairings": {ALIAS: pairing}}
    (bridge.data_dir / "controller-pairings.json").write_text(json.dumps(stored))
    bridge.start()
    skipped = await probe.wait_message(
        "HomeKit/bridge/event", lambda m: json.loads(m.payload)["type"] == "pairing_skipped"
    )
    event = json.loads(skipped.payload)
    assert event["device"] == ALIAS
    assert "Bluetooth is off here (controller.bluetooth)" in event["message"], event
    # The rest of the bridge works.
    await probe.publish("HomeKit/esp/Switch/On", "1")
    await probe.wait_message("HomeKit/bridge/devices", lambda m: b'"esp"' in m.payload)
