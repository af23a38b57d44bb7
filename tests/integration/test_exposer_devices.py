"""MQTT devices in the Home app: accessories, values, events and writes (issue 2, items 2-3, 7)."""

from __future__ import annotations

import json

from tests.support.accessories import aid_of, char_of, services_of
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import MqttProbe
from tests.support.wait import wait_for

TEMPERATURE_SENSOR, CURRENT_TEMPERATURE = "8A", "11"
HUMIDITY_SENSOR, CURRENT_HUMIDITY = "82", "10"
SWITCH, ON = "49", "25"
ESP = "esp8266_12345678"


async def accessories_with(home: HapClient, device_id: str) -> list:
    async def listed() -> list | None:
        accessories = await home.list_accessories()
        try:
            aid_of(accessories, device_id)
        except AssertionError:
            return None
        return accessories

    return await wait_for(listed, timeout=10, message=f"{device_id} in /accessories")


async def test_two_services_on_one_device_make_one_accessory(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    await probe.publish(f"HomeKit/{ESP}/TemperatureSensor/CurrentTemperature", "20", retain=True)
    await probe.publish(f"HomeKit/{ESP}/HumiditySensor/CurrentRelativeHumidity", "58")

    async def both() -> list | None:
        accessories = await accessories_with(home, ESP)
        aid = aid_of(accessories, ESP)
        if services_of(accessories, aid, HUMIDITY_SENSOR):
            return accessories
        return None

    accessories = await wait_for(both, message="humidity service")
    aid = aid_of(accessories, ESP)
    assert len([a for a in accessories if a["aid"] != 1]) == 1
    assert char_of(accessories, aid, TEMPERATURE_SENSOR, CURRENT_TEMPERATURE)["value"] == 20
    assert char_of(accessories, aid, HUMIDITY_SENSOR, CURRENT_HUMIDITY)["value"] == 58


async def test_switch_write_from_home_app_goes_out_on_set_topic(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    await probe.publish("HomeKit/TEST/Switch/On", "1")
    accessories = await accessories_with(home, "TEST")
    aid = aid_of(accessories, "TEST")
    on = char_of(accessories, aid, SWITCH, ON)
    assert on["value"] is True

    status = await home.put([(aid, on["iid"], False)])
    assert status == {(aid, on["iid"]): 0}
    command = await probe.wait_message("HomeKit/TEST/Switch/On/set")
    assert command.payload == b"0"
    assert not command.retain
    assert await home.read(aid, on["iid"]) is False


async def test_command_topic_same_publishes_retained_on_state_topic(
    make_bridge, probe: MqttProbe
) -> None:
    bridge = make_bridge(devices={"TEST": {"command_topic": "same"}})
    await probe.publish("HomeKit/TEST/Switch/On", "1")
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        accessories = await accessories_with(home, "TEST")
        aid = aid_of(accessories, "TEST")
        iid = char_of(accessories, aid, SWITCH, ON)["iid"]
        await home.put([(aid, iid, False)])
        echo = await probe.wait_message("HomeKit/TEST/Switch/On", lambda m: m.payload == b"0")
        assert echo.retain is False  # live delivery; the broker keeps it retained:
        async with MqttProbe(probe.host, probe.port) as late:
            await late.subscribe("HomeKit/TEST/Switch/On")
            retained = await late.wait_message("HomeKit/TEST/Switch/On")
            assert retained.payload == b"0" and retained.retain
        assert not probe.messages_on("HomeKit/TEST/Switch/On/set")
    finally:
        await home.close()


async def test_new_values_arrive_as_hap_events(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    await probe.publish(f"HomeKit/{ESP}/TemperatureSensor/CurrentTemperature", "20")
    accessories = await accessories_with(home, ESP)
    aid = aid_of(accessories, ESP)
    iid = char_of(accessories, aid, TEMPERATURE_SENSOR, CURRENT_TEMPERATURE)["iid"]
    await home.subscribe([(aid, iid)])
    await probe.publish(f"HomeKit/{ESP}/TemperatureSensor/CurrentTemperature", "21.5")
    event = await home.wait_event(aid, iid, 21.5, timeout=5)
    assert event.value == 21.5


async def test_an_event_and_a_read_give_the_same_value(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    topic = f"HomeKit/{ESP}/TemperatureSensor/CurrentTemperature"
    await probe.publish(topic, "20")
    accessories = await accessories_with(home, ESP)
    aid = aid_of(accessories, ESP)
    iid = char_of(accessories, aid, TEMPERATURE_SENSOR, CURRENT_TEMPERATURE)["iid"]
    await home.subscribe([(aid, iid)])
    # HAP-python's own minStep arithmetic turns 38.4 into 38.40000000000001.
    await probe.publish(topic, "38.4")
    event = await home.wait_event(aid, iid, 38.4, timeout=5)
    assert event.value == 38.4
    assert await home.read(aid, iid) == 38.4


async def test_second_service_of_a_type_takes_an_index_level(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    await probe.publish("HomeKit/esp1/TemperatureSensor/CurrentTemperature", "20")
    await probe.publish("HomeKit/esp1/TemperatureSensor/2/CurrentTemperature", "5")

    async def two() -> list | None:
        accessories = await accessories_with(home, "esp1")
        aid = aid_of(accessories, "esp1")
        return accessories if len(services_of(accessories, aid, TEMPERATURE_SENSOR)) == 2 else None

    accessories = await wait_for(two, message="two temperature services")
    aid = aid_of(accessories, "esp1")
    assert char_of(accessories, aid, TEMPERATURE_SENSOR, CURRENT_TEMPERATURE, 1)["value"] == 20
    assert char_of(accessories, aid, TEMPERATURE_SENSOR, CURRENT_TEMPERATURE, 2)["value"] == 5


async def test_accessory_information_topics_fill_the_information_service(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    await probe.publish("HomeKit/esp2/AccessoryInformation/Manufacturer", "Espressif")
    await probe.publish("HomeKit/esp2/AccessoryInformation/Name", "Garden sensor")
    await probe.publish("HomeKit/esp2/TemperatureSensor/CurrentTemperature", "11")
    accessories = await accessories_with(home, "esp2")
    aid = aid_of(accessories, "esp2")
    assert char_of(accessories, aid, "3E", "20")["value"] == "Espressif"
    assert char_of(accessories, aid, "3E", "23")["value"] == "Garden sensor"


async def test_bridge_topics_state_info_and_devices(
    bridge: BridgeProcess, probe: MqttProbe
) -> None:
    state = await probe.wait_message("HomeKit/bridge/state")
    assert state.payload == b"online" and state.retain
    await probe.publish("HomeKit/TEST/Switch/On", "1")
    devices_msg = await probe.wait_message(
        "HomeKit/bridge/devices", lambda m: b'"TEST"' in m.payload
    )
    devices = json.loads(devices_msg.payload)
    [test] = [d for d in devices if d["id"] == "TEST"]
    assert test["origin"] == "mqtt" and test["available"] is True
    [service] = test["services"]
    assert service["type"] == "Switch"
    # The live value is retained on `topic`; the catalogue does not carry a copy.
    assert service["characteristics"] == [
        {
            "name": "On",
            "format": "bool",
            "perms": ["pr", "pw", "ev"],
            "topic": "HomeKit/TEST/Switch/On",
        }
    ]
    info = json.loads((await probe.wait_message("HomeKit/bridge/info")).payload)
    assert info["hap_device_id"] == bridge.device_id
    assert info["hap_port"] == bridge.hap_port
    assert info["paired"] is False


async def test_unpaired_bridge_shows_setup_code_uri_and_qr(bridge: BridgeProcess) -> None:
    log = bridge.log()
    assert bridge.setup_code in log
    assert "X-HM://" in log
    png = bridge.data_dir / "setup-qr.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    assert png.stat().st_mode & 0o777 == 0o600
