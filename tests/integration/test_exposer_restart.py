"""What survives a restart or a kill -9."""

from __future__ import annotations

import json
import signal

import pytest

from tests.support.accessories import aid_of, char_of, structure
from tests.support.bridge_process import BridgeProcess, advertised_txt, settled_config_number
from tests.support.hap_client import HapClient
from tests.support.mosquitto import Mosquitto, MqttProbe
from tests.support.wait import wait_for

from .test_exposer_devices import accessories_with


def stored(bridge: BridgeProcess, text: str) -> bool:
    """The bridge has written `text` into its device store (values reach disk in 0.1 s)."""
    path = bridge.data_dir / "accessory-devices.json"
    return path.exists() and text in path.read_text()


@pytest.mark.parametrize("ending", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill9"])
async def test_restart_keeps_pairing_ids_values_and_config_number(
    make_bridge, mosquitto: Mosquitto, ending: signal.Signals
) -> None:
    bridge: BridgeProcess = make_bridge()
    async with MqttProbe(mosquitto.host, mosquitto.port) as probe:
        # Not retained: after the restart only the bridge's own store can know these.
        await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "20.5")
        await probe.publish("HomeKit/esp/HumiditySensor/CurrentRelativeHumidity", "58")
        await probe.publish("HomeKit/TEST/Switch/On", "1")
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    await accessories_with(home, "TEST")
    before = await accessories_with(home, "esp")
    await wait_for(lambda: stored(bridge, "58"), message="values on disk")
    config_before = await settled_config_number("Test Bridge", bridge.device_id)
    pairing = home.pairing_data
    await home.close()

    if ending is signal.SIGKILL:
        bridge.kill9()
    else:
        assert bridge.stop() == 0
    bridge.start()

    home = HapClient.from_pairing_data(pairing)
    try:
        after = await home.list_accessories()
        assert structure(after) == structure(before)
        aid = aid_of(after, "esp")
        assert char_of(after, aid, "8A", "11")["value"] == 20.5
        assert char_of(after, aid, "82", "10")["value"] == 58
        assert char_of(after, aid_of(after, "TEST"), "49", "25")["value"] is True
    finally:
        await home.close()
    txt_after = await advertised_txt("Test Bridge", bridge.device_id)
    assert int(txt_after["c#"]) == config_before
    assert txt_after["sf"] == "0"  # still paired: not discoverable for new pairings


async def test_service_added_later_keeps_the_aid_and_bumps_config_once(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "20")
    first = await accessories_with(home, "esp")
    aid = aid_of(first, "esp")
    config_before = await settled_config_number("Test Bridge", bridge.device_id)

    await probe.publish("HomeKit/esp/HumiditySensor/CurrentRelativeHumidity", "58")

    async def humidity_shown() -> list | None:
        accessories = await home.list_accessories()
        try:
            char_of(accessories, aid, "82", "10")
        except AssertionError:
            return None
        return accessories

    second = await wait_for(humidity_shown, message="humidity service")
    assert aid_of(second, "esp") == aid
    assert structure(first) <= structure(second)  # nothing that existed moved

    assert await settled_config_number("Test Bridge", bridge.device_id) == config_before + 1
    # A value change is not a structural change.
    await probe.publish("HomeKit/esp/HumiditySensor/CurrentRelativeHumidity", "59")
    await wait_for(lambda: stored(bridge, "59"), message="value stored")
    assert await settled_config_number("Test Bridge", bridge.device_id) == config_before + 1


async def test_known_accessories_are_served_while_the_broker_is_down(
    make_bridge, mosquitto: Mosquitto
) -> None:
    bridge: BridgeProcess = make_bridge()
    async with MqttProbe(mosquitto.host, mosquitto.port) as probe:
        await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "18")
    await wait_for(lambda: stored(bridge, "18"), message="stored")
    bridge.stop()
    mosquitto.stop()
    bridge.start(expect_mqtt=False)
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        accessories = await home.list_accessories()
        assert char_of(accessories, aid_of(accessories, "esp"), "8A", "11")["value"] == 18
    finally:
        await home.close()


async def test_state_files_are_private(bridge: BridgeProcess, probe: MqttProbe) -> None:
    await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "18")
    await wait_for(lambda: stored(bridge, "18"), message="stored")
    assert bridge.data_dir.stat().st_mode & 0o777 == 0o700
    files = [p for p in bridge.data_dir.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {
        "homekit-state.json",
        "accessory-ids.json",
        "accessory-devices.json",
        "setup.json",
    }
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600, path


@pytest.mark.parametrize(
    "name", ["homekit-state.json", "accessory-ids.json", "accessory-devices.json", "setup.json"]
)
async def test_corrupt_state_file_stops_startup_and_names_it(
    make_bridge, probe: MqttProbe, name: str
) -> None:
    bridge: BridgeProcess = make_bridge()
    await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "18")
    await wait_for(lambda: stored(bridge, "18"), message="stored")
    bridge.stop()
    path = bridge.data_dir / name
    for victim in (path, path.with_name(name + ".bak")):
        if victim.exists() or victim == path:
            victim.write_text('{"truncated": ')
    with pytest.raises(AssertionError, match=name):
        bridge.start(timeout=10)
    assert path.read_text() == '{"truncated": '  # never silently replaced


async def test_corrupt_primary_recovers_from_backup(make_bridge, probe: MqttProbe) -> None:
    bridge: BridgeProcess = make_bridge()
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    pairing = home.pairing_data
    await home.close()
    await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "18")
    await wait_for(lambda: stored(bridge, "18"), message="stored")
    bridge.stop()
    state = bridge.data_dir / "homekit-state.json"
    backup = state.with_name(state.name + ".bak")
    if not json.loads(backup.read_text())["paired_clients"]:
        backup.write_text(state.read_text())  # the .bak predates the pairing; make it current
    state.write_bytes(b"")  # truncated by a crash
    bridge.start()
    home = HapClient.from_pairing_data(pairing)
    try:
        accessories = await home.list_accessories()
        assert aid_of(accessories, "esp") >= 2
    finally:
        await home.close()
    # Said in the log and, once connected, on bridge/event.
    assert f"State file {state} is corrupt; restored from {backup}" in bridge.logs()
    event = await probe.wait_message(
        "HomeKit/bridge/event", lambda m: b"state_file_restored" in m.payload, timeout=10
    )
    assert json.loads(event.payload)["message"] == (
        f"state file {state} is corrupt; restored from {backup}"
    )
