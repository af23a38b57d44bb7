"""A start-up flood of retained topics: more than a broker queues
per client at QoS 1, the 149-accessory limit of one HAP bridge when `homekit.bridges` allows
no second one (the device left out waits until there is room), and a restart that must
change nothing."""

from __future__ import annotations

import json

from tests.support.bridge_api import request
from tests.support.bridge_process import BridgeProcess, settled_config_number
from tests.support.hap_client import HapClient
from tests.support.mosquitto import Mosquitto, MqttProbe

#: 13 topics a device: 1,950 retained topics for 150 devices, past Mosquitto's default
#: queue of 1,000 QoS 1 messages per client.
TOPICS = [
    ("TemperatureSensor", "CurrentTemperature", "21.5"),
    ("TemperatureSensor", "StatusActive", "1"),
    ("TemperatureSensor", "StatusLowBattery", "0"),
    ("HumiditySensor", "CurrentRelativeHumidity", "40"),
    ("HumiditySensor", "StatusActive", "1"),
    ("Lightbulb", "On", "1"),
    ("Lightbulb", "Brightness", "50"),
    ("Lightbulb", "Hue", "120"),
    ("Lightbulb", "Saturation", "50"),
    ("AccessoryInformation", "Manufacturer", "Espressif"),
    ("AccessoryInformation", "Model", "ESP8266"),
    ("AccessoryInformation", "FirmwareRevision", "1.0"),
    ("BatteryService", "BatteryLevel", "80"),
]
DEVICES = [f"dev{n:03d}" for n in range(150)]


async def test_a_flood_of_retained_topics_loses_nothing_and_stops_at_149(
    make_bridge, mosquitto: Mosquitto
) -> None:
    async with MqttProbe(mosquitto.host, mosquitto.port) as device:
        for device_id in DEVICES:
            for service, characteristic, value in TOPICS:
                await device.publish(
                    f"HomeKit/{device_id}/{service}/{characteristic}", value, retain=True
                )
    async with MqttProbe(mosquitto.host, mosquitto.port) as probe:
        await probe.subscribe("HomeKit/bridge/#")
        bridge: BridgeProcess = make_bridge(homekit={"bridges": 1})

        def complete(message) -> bool:
            devices = json.loads(message.payload)
            return sum(len(d["services"]) == 5 for d in devices) == 149

        catalogue = json.loads(
            (await probe.wait_message("HomeKit/bridge/devices", complete, timeout=60)).payload
        )
        refused = await probe.wait_message(
            "HomeKit/bridge/event", lambda m: b"the most HomeKit allows" in m.payload
        )
    assert len(refused.payload) < 1000
    assert b"homekit.bridges is 1" in refused.payload
    shown = [d for d in catalogue if d["aid"] is not None]
    assert len(shown) == 149
    [left_out] = [d for d in catalogue if d["aid"] is None]
    assert [s["type"] for s in left_out["services"]] == ["AccessoryInformation"]

    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        accessories = await home.list_accessories()
        assert len(accessories) == 150  # the bridge itself and 149 bridged accessories
        pairing = home.pairing_data
    finally:
        await home.close()
    config_number = await settled_config_number("Test Bridge", bridge.device_id)

    bridge.stop()
    bridge.start()
    home = HapClient.from_pairing_data(pairing)
    try:
        again = await home.list_accessories()
    finally:
        await home.close()
    assert _ids(again) == _ids(accessories)
    assert await settled_config_number("Test Bridge", bridge.device_id) == config_number

    # The device left out waits: once another leaves, its next value makes it an accessory.
    async with MqttProbe(mosquitto.host, mosquitto.port) as probe:
        await probe.subscribe("HomeKit/bridge/#")
        gone = shown[0]["id"]
        assert (await request(probe, "device/remove", {"id": gone}))["status"] == "ok"
        await probe.publish(f"HomeKit/{left_out['id']}/Lightbulb/On", "1", retain=True)

        def joined(message) -> bool:
            entries = {d["id"]: d for d in json.loads(message.payload)}
            return entries[left_out["id"]]["aid"] is not None and gone not in entries

        await probe.wait_message("HomeKit/bridge/devices", joined)


def _ids(accessories: list[dict]) -> set[tuple[int, int, str]]:
    return {
        (a["aid"], c["iid"], c["type"])
        for a in accessories
        for s in a["services"]
        for c in s["characteristics"]
    }
