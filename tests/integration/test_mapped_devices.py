"""Devices mapped in bridge.yaml (issue 15, items 1, 4, 5): recorded Tasmota, Shelly Gen2 and
Zigbee2MQTT payloads in, the Home app's view and writes in the device's own form out."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from tests.support.accessories import aid_of, char_of
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import MqttProbe
from tests.support.recordings import Recording, load
from tests.support.wait import wait_for

SWITCH, OUTLET, LIGHTBULB = "49", "47", "43"
ON, OUTLET_IN_USE, BRIGHTNESS, COLOR_TEMPERATURE = "25", "26", "8", "CE"
TEMPERATURE_SENSOR, CURRENT_TEMPERATURE = "8A", "11"
HUMIDITY_SENSOR, CURRENT_HUMIDITY = "82", "10"
INFORMATION, NAME = "3E", "23"
NO_RESPONSE = -70402


async def listed(home: HapClient, device_id: str, ready: Callable[[list[Any], int], bool]) -> Any:
    """/accessories once the device's accessory satisfies `ready(accessories, aid)`."""

    async def check() -> list[Any] | None:
        accessories = await home.list_accessories()
        try:
            aid = aid_of(accessories, device_id)
            return accessories if ready(accessories, aid) else None
        except AssertionError:
            return None

    return await wait_for(check, timeout=10, message=f"{device_id} in /accessories")


def value(service: str, char: str, wanted: Any) -> Callable[[list[Any], int], bool]:
    def ready(accessories: list[Any], aid: int) -> bool:
        try:
            return bool(char_of(accessories, aid, service, char)["value"] == wanted)
        except AssertionError:
            return False

    return ready


async def status_of(home: HapClient, aid: int, iid: int) -> int:
    return int((await home.get([(aid, iid)]))[(aid, iid)].get("status", 0))


async def paired(bridge: BridgeProcess) -> HapClient:
    return await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)


@contextlib.asynccontextmanager
async def played(
    make_bridge: Callable[..., BridgeProcess], probe: MqttProbe, name: str, watch: str
) -> AsyncIterator[tuple[Recording, HapClient]]:
    """A bridge mapping the recording's devices, the probe subscribed to `watch`, the recording
    played into the broker, and the Home app paired."""
    recording = load(name)
    bridge = make_bridge(devices=recording.devices)
    await probe.subscribe(watch)
    await recording.play(probe)
    home = await paired(bridge)
    try:
        yield recording, home
    finally:
        await home.close()


async def test_tasmota_switch_and_sensor_json(make_bridge, probe: MqttProbe) -> None:
    async with played(make_bridge, probe, "mapped/tasmota_th", "cmnd/#") as (_, home):
        accessories = await listed(home, "tasmota_th", value(HUMIDITY_SENSOR, CURRENT_HUMIDITY, 45))
        aid = aid_of(accessories, "tasmota_th")
        assert char_of(accessories, aid, SWITCH, ON)["value"] is True
        assert char_of(accessories, aid, TEMPERATURE_SENSOR, CURRENT_TEMPERATURE)["value"] == 21.3
        on = char_of(accessories, aid, SWITCH, ON)["iid"]

        assert await home.put([(aid, on, False)]) == {(aid, on): 0}
        command = await probe.wait_message("cmnd/tasmota_th/POWER")
        assert command.payload == b"OFF" and not command.retain
        # The device answers on its state topic, then is switched on at the wall: the Home
        # app follows, and no command goes out for either (no echo loop).
        await probe.publish("stat/tasmota_th/POWER", "OFF")
        await probe.publish("stat/tasmota_th/POWER", "ON")

        async def on_again() -> bool:
            return await home.read(aid, on) is True

        await wait_for(on_again, message="the wall switch seen")
        assert len(probe.messages_on("cmnd/#")) == 1

        # Its Last Will: "No Response" in the Home app, writes refused.
        await probe.publish("tele/tasmota_th/LWT", "Offline", retain=True)

        async def no_response() -> bool:
            return await status_of(home, aid, on) == NO_RESPONSE

        await wait_for(no_response, message="writes refused while offline")
        assert await home.put([(aid, on, True)]) == {(aid, on): NO_RESPONSE}
        assert len(probe.messages_on("cmnd/#")) == 1


async def test_shelly_gen2_json_status_and_words_for_commands(
    make_bridge, probe: MqttProbe
) -> None:
    prefix = "shellyplus1pm-a8032ab12345"
    async with played(make_bridge, probe, "mapped/shelly_plus_1pm", f"{prefix}/command/#") as (
        recording,
        home,
    ):
        accessories = await listed(home, "kitchen_plug", value(OUTLET, ON, True))
        aid = aid_of(accessories, "kitchen_plug")
        assert char_of(accessories, aid, OUTLET, OUTLET_IN_USE)["value"] is True
        assert char_of(accessories, aid, TEMPERATURE_SENSOR, CURRENT_TEMPERATURE)["value"] == 53.3
        assert char_of(accessories, aid, INFORMATION, NAME)["value"] == "Kitchen plug"
        on = char_of(accessories, aid, OUTLET, ON)["iid"]
        await home.put([(aid, on, False)])
        command = await probe.wait_message(f"{prefix}/command/switch:0")
        assert command.payload == b"off"
        status = json.loads(recording.messages[1].payload) | {"output": False, "apower": 0}
        await probe.publish(f"{prefix}/status/switch:0", json.dumps(status), retain=True)
        await listed(home, "kitchen_plug", value(OUTLET, OUTLET_IN_USE, False))
        assert len(probe.messages_on(f"{prefix}/command/#")) == 1


async def test_one_zigbee2mqtt_message_updates_three_characteristics_in_one_event(
    make_bridge, probe: MqttProbe
) -> None:
    async with played(make_bridge, probe, "mapped/z2m_light", "zigbee2mqtt/desk_lamp/set") as (
        _,
        home,
    ):
        accessories = await listed(home, "desk_lamp", value(LIGHTBULB, COLOR_TEMPERATURE, 250))
        aid = aid_of(accessories, "desk_lamp")
        assert char_of(accessories, aid, LIGHTBULB, ON)["value"] is True
        assert char_of(accessories, aid, LIGHTBULB, BRIGHTNESS)["value"] == 100  # 254 of 254
        iids = {
            name: char_of(accessories, aid, LIGHTBULB, short)["iid"]
            for name, short in (("on", ON), ("brightness", BRIGHTNESS), ("ct", COLOR_TEMPERATURE))
        }
        await home.subscribe([(aid, iid) for iid in iids.values()])
        state = {
            "state": "OFF",
            "brightness": 127,
            "color_temp": 370,
            "color_mode": "color_temp",
            "linkquality": 99,
        }
        await probe.publish("zigbee2mqtt/desk_lamp", json.dumps(state), retain=True)
        events = [await home.wait_event(aid, iid) for iid in iids.values()]
        assert [e.value for e in events] == [False, 50, 370]
        assert len({e.at for e in events}) == 1, "one EVENT frame for the whole message"

        # Writes go out as the device's JSON, brightness back on its 0-254 scale.
        await home.put([(aid, iids["brightness"], 100)])
        await home.put([(aid, iids["on"], True)])
        sent = [
            m.payload
            for m in await wait_for(
                lambda: (
                    len(probe.messages_on("zigbee2mqtt/desk_lamp/set")) >= 2
                    and probe.messages_on("zigbee2mqtt/desk_lamp/set")
                )
            )
        ]
        assert [json.loads(p) for p in sent] == [{"brightness": 254}, {"state": "ON"}]


async def test_a_path_that_does_not_match_or_a_word_not_in_the_map_keeps_the_last_value(
    make_bridge, probe: MqttProbe
) -> None:
    async with played(make_bridge, probe, "mapped/tasmota_th", "HomeKit/bridge/event") as (_, home):
        accessories = await listed(home, "tasmota_th", value(HUMIDITY_SENSOR, CURRENT_HUMIDITY, 45))
        aid = aid_of(accessories, "tasmota_th")
        temperature = char_of(accessories, aid, TEMPERATURE_SENSOR, CURRENT_TEMPERATURE)["iid"]
        on = char_of(accessories, aid, SWITCH, ON)["iid"]
        await probe.publish("tele/tasmota_th/SENSOR", '{"DS18B20": {"Temperature": 30}}')
        await probe.publish("stat/tasmota_th/POWER", "TOGGLE")

        def events() -> list[dict[str, Any]]:
            return [json.loads(m.payload) for m in probe.messages_on("HomeKit/bridge/event")]

        found = await wait_for(lambda: len(events()) >= 3 and events())
        messages = " | ".join(event["message"] for event in found)
        assert "the payload has no $.AM2301.Temperature" in messages
        assert "'TOGGLE' is not in the value map" in messages
        assert {event["device"] for event in found} == {"tasmota_th"}
        assert await home.read(aid, temperature) == 21.3
        assert await home.read(aid, on) is True


async def test_bridge_devices_shows_source_and_mapping_beside_a_seed_device(
    make_bridge, probe: MqttProbe
) -> None:
    recording = load("mapped/tasmota_th")
    devices = {
        **recording.devices,
        "taken": {
            "services": [
                {"type": "Switch", "characteristics": {"On": {"state_topic": "taken/state"}}}
            ]
        },
    }
    # A device our own layout reported first keeps its id: the mapping of it is refused.
    first = make_bridge()
    await probe.publish("HomeKit/taken/Switch/On", "1", retain=True)
    await probe.publish("HomeKit/esp_1/TemperatureSensor/CurrentTemperature", "20", retain=True)
    await wait_for(
        lambda: (
            (first.data_dir / "accessory-devices.json").exists()
            and "taken" in (first.data_dir / "accessory-devices.json").read_text()
        )
    )
    first.stop()
    first.config["devices"] = devices
    first.start()
    await recording.play(probe)

    def catalogue() -> dict[str, Any] | None:
        found = probe.messages_on("HomeKit/bridge/devices")
        if not found:
            return None
        entries = {entry["id"]: entry for entry in json.loads(found[-1].payload)}
        ready = entries.get("tasmota_th", {}).get("services") and "esp_1" in entries
        return entries if ready else None

    entries = await wait_for(catalogue, message="bridge/devices with the mapped device")
    mapped = entries["tasmota_th"]
    assert mapped["source"] == "mapped"
    assert mapped["mapping"]["availability"][0]["topic"] == "tele/tasmota_th/LWT"
    switch = next(
        c for c in mapped["mapping"]["characteristics"] if c["characteristic"] == "Switch/On"
    )
    assert switch["command_topic"] == "cmnd/tasmota_th/POWER"
    assert switch["values"] == {"ON": True, "OFF": False}
    assert entries["esp_1"]["source"] == "homekit_topics"
    assert entries["taken"]["source"] == "homekit_topics"
    assert "mapping" not in entries["taken"]
    assert entries["taken"]["not_mapped"]["source"] == "mapped"
    assert "already used by homekit_topics" in entries["taken"]["not_mapped"]["reason"]
    # Refused at start-up, before the broker is there for a bridge/event: the log says it.
    assert "device_not_mapped: devices.taken: device id taken is already used" in first.logs()
