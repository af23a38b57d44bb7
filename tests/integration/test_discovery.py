"""Home Assistant MQTT discovery as a source (issue 15, items 2-5): recorded Zigbee2MQTT,
Tasmota and ESPHome configs and states played into a real Mosquitto, the bridge as a
subprocess, aiohomekit as the Home app."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.support.accessories import aid_of, char_of, services_of, structure
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import MqttProbe, ReceivedMessage
from tests.support.recordings import Recording, load
from tests.support.wait import wait_for

SOURCES = {"sources": ["homekit_topics", "homeassistant_discovery"]}
INFORMATION, NAME, MANUFACTURER = "3E", "23", "20"
LIGHTBULB, ON, BRIGHTNESS, COLOR_TEMPERATURE, HUE = "43", "25", "8", "CE", "13"
SWITCH, MOTION_SENSOR, MOTION_DETECTED = "49", "85", "22"
LIGHT_SENSOR, AMBIENT_LIGHT = "84", "6B"
BATTERY, BATTERY_LEVEL, LOW_BATTERY = "96", "68", "79"
CONTACT_SENSOR, CONTACT_STATE = "80", "6A"
TEMPERATURE_SENSOR, CURRENT_TEMPERATURE = "8A", "11"
HUMIDITY_SENSOR, CURRENT_HUMIDITY = "82", "10"
BUTTON, SWITCH_EVENT = "89", "73"
NO_RESPONSE = -70402

BULB = "zigbee2mqtt_0x000b57fffec6a5b2"
MOTION = "zigbee2mqtt_0x00158d0001a9ec71"
CONTACT = "zigbee2mqtt_0x00158d000122fcd1"
WEATHER = "zigbee2mqtt_0x0017880104e45522"
Z2M_BUTTON = "zigbee2mqtt_0x0017880104e45520"
WALL = "zigbee2mqtt_0x0017880104e45542"
Z2M = ("z2m_bulb", "z2m_motion", "z2m_contact", "z2m_weather", "z2m_button")


def recordings(*names: str) -> list[Recording]:
    return [load(f"discovery/{name}") for name in names]


async def play(probe: MqttProbe, *names: str) -> None:
    for recording in recordings(*names):
        await recording.play(probe)


async def status_of(home: HapClient, aid: int, iid: int) -> int:
    return int((await home.get([(aid, iid)]))[(aid, iid)].get("status", 0))


async def paired(bridge: BridgeProcess) -> HapClient:
    return await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)


async def accessories_where(
    home: HapClient, ready: Callable[[list[Any]], bool], what: str, timeout: float = 15
) -> list[Any]:
    async def check() -> list[Any] | None:
        accessories = await home.list_accessories()
        try:
            return accessories if ready(accessories) else None
        except (AssertionError, StopIteration):
            return None

    return await wait_for(check, timeout=timeout, message=what)


def has(device_id: str, service: str, char: str, wanted: Any) -> Callable[[list[Any]], bool]:
    def ready(accessories: list[Any]) -> bool:
        return bool(
            char_of(accessories, aid_of(accessories, device_id), service, char)["value"] == wanted
        )

    return ready


def all_of(*checks: Callable[[list[Any]], bool]) -> Callable[[list[Any]], bool]:
    return lambda accessories: all(check(accessories) for check in checks)


async def telemetry(
    home: HapClient, probe: MqttProbe, topic: str, payload: str, ready: Callable[[list[Any]], bool]
) -> list[Any]:
    """Publish a non-retained state every half second, as a device's periodic telemetry
    does, until the Home app sees it (the bridge subscribes when the config arrives)."""
    for _ in range(20):
        await probe.publish(topic, payload)
        try:
            return await accessories_where(home, ready, f"{topic} seen", timeout=0.5)
        except AssertionError:
            continue
    raise AssertionError(f"{topic} {payload} never reached the Home app")


def events(probe: MqttProbe) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in probe.messages_on("HomeKit/bridge/event")]


def catalogue(probe: MqttProbe) -> dict[str, Any]:
    found = probe.messages_on("HomeKit/bridge/devices")
    return {entry["id"]: entry for entry in json.loads(found[-1].payload)} if found else {}


async def test_zigbee2mqtt_devices_appear_with_their_services_beside_a_seed_device(
    make_bridge, probe: MqttProbe
) -> None:
    bridge = make_bridge(**SOURCES)
    await play(probe, *Z2M)
    await probe.publish("HomeKit/esp_1/TemperatureSensor/CurrentTemperature", "19", retain=True)
    home = await paired(bridge)
    try:
        accessories = await accessories_where(
            home,
            all_of(
                has(BULB, LIGHTBULB, COLOR_TEMPERATURE, 370),
                has(MOTION, BATTERY, BATTERY_LEVEL, 91),
                has(CONTACT, CONTACT_SENSOR, CONTACT_STATE, 0),
                has(WEATHER, HUMIDITY_SENSOR, CURRENT_HUMIDITY, 45),
                has(WEATHER, BATTERY, BATTERY_LEVEL, 15),
                has("esp_1", TEMPERATURE_SENSOR, CURRENT_TEMPERATURE, 19),
                lambda found: bool(services_of(found, aid_of(found, Z2M_BUTTON), BUTTON)),
            ),
            "every Zigbee2MQTT device and the seed device",
        )
        assert len([a for a in accessories if a["aid"] != 1]) == 6
        bulb = aid_of(accessories, BULB)
        assert char_of(accessories, bulb, LIGHTBULB, ON)["value"] is True
        assert char_of(accessories, bulb, LIGHTBULB, BRIGHTNESS)["value"] == 79  # 200 of 254
        assert char_of(accessories, bulb, INFORMATION, MANUFACTURER)["value"] == "IKEA"
        assert char_of(accessories, bulb, INFORMATION, NAME)["value"] == "bulb"
        motion = aid_of(accessories, MOTION)
        assert char_of(accessories, motion, MOTION_SENSOR, MOTION_DETECTED)["value"] is True
        assert char_of(accessories, motion, LIGHT_SENSOR, AMBIENT_LIGHT)["value"] == 28
        weather = aid_of(accessories, WEATHER)
        assert (
            char_of(accessories, weather, TEMPERATURE_SENSOR, CURRENT_TEMPERATURE)["value"] == 21.5
        )
        assert char_of(accessories, weather, BATTERY, LOW_BATTERY)["value"] == 1
        # One accessory per device: the weather sensor's four entities, pressure skipped.
        assert {s["type"] for a in accessories if a["aid"] == weather for s in a["services"]} >= {
            "0000008A-0000-1000-8000-0026BB765291",
            "00000082-0000-1000-8000-0026BB765291",
            "00000096-0000-1000-8000-0026BB765291",
        }
        entry = await wait_for(
            lambda: (
                catalogue(probe).get(WEATHER, {}).get("mapping", {}).get("skipped")
                and catalogue(probe)[WEATHER]["mapping"]
            )
        )
        assert entry["skipped"] == [
            {
                "config_topic": "homeassistant/sensor/0x0017880104e45522/pressure/config",
                "component": "sensor",
                "reason": "HomeKit has no pressure characteristic",
            }
        ]
        assert catalogue(probe)[WEATHER]["source"] == "homeassistant_discovery"

        # Button presses, live: single, double and long, each an event.
        button = aid_of(accessories, Z2M_BUTTON)
        press = char_of(accessories, button, BUTTON, SWITCH_EVENT)["iid"]
        await home.subscribe([(button, press)])
        for action, value in (("double", 1), ("hold", 2), ("single", 0)):
            await probe.publish("zigbee2mqtt/button/action", action)
            await home.wait_event(button, press, value)
        assert [e.value for e in home.events_for(button, press)] == [1, 2, 0]
    finally:
        await home.close()


async def test_zigbee2mqtt_writes_go_out_as_its_json_once(make_bridge, probe: MqttProbe) -> None:
    bridge = make_bridge(**SOURCES)
    await probe.subscribe("zigbee2mqtt/bulb/set")
    await play(probe, "z2m_bulb")
    home = await paired(bridge)
    try:
        accessories = await accessories_where(home, has(BULB, LIGHTBULB, ON, True), "the bulb")
        aid = aid_of(accessories, BULB)
        on = char_of(accessories, aid, LIGHTBULB, ON)["iid"]
        brightness = char_of(accessories, aid, LIGHTBULB, BRIGHTNESS)["iid"]
        assert await home.put([(aid, on, False)]) == {(aid, on): 0}
        assert await home.put([(aid, brightness, 50)]) == {(aid, brightness): 0}

        def sent() -> list[ReceivedMessage]:
            return probe.messages_on("zigbee2mqtt/bulb/set")

        await wait_for(lambda: len(sent()) >= 2)
        assert [json.loads(m.payload) for m in sent()] == [{"state": "OFF"}, {"brightness": 127}]
        # Zigbee2MQTT answers on the state topic; then the bulb is switched at the wall.
        answer = {"state": "OFF", "brightness": 127, "color_temp": 370, "linkquality": 110}
        await probe.publish("zigbee2mqtt/bulb", json.dumps(answer), retain=True)
        await probe.publish("zigbee2mqtt/bulb", json.dumps(answer | {"state": "ON"}), retain=True)
        await accessories_where(home, has(BULB, LIGHTBULB, ON, True), "the wall switch seen")
        assert len(sent()) == 2, "no echo: the device's own answers send nothing"
        assert await home.read(aid, brightness) == 50

        # availability_mode all: the bridge going offline is "No Response".
        await probe.publish("zigbee2mqtt/bridge/state", '{"state":"offline"}', retain=True)

        async def no_response() -> bool:
            return await status_of(home, aid, on) == NO_RESPONSE

        await wait_for(no_response, message="No Response while Zigbee2MQTT is offline")
        assert await home.put([(aid, on, True)]) == {(aid, on): NO_RESPONSE}
        assert len(sent()) == 2
    finally:
        await home.close()


async def test_tasmota_and_esphome(make_bridge, probe: MqttProbe) -> None:
    bridge = make_bridge(**SOURCES)
    await probe.subscribe("cmnd/#")
    await probe.subscribe("livingroom/+/+/command")
    await play(probe, "tasmota_plug", "tasmota_sensor", "esphome_node")
    home = await paired(bridge)
    try:
        # Tasmota retains neither RESULT nor SENSOR: the plug shows (off) before its first
        # RESULT, the sensor once its telemetry comes.
        await accessories_where(home, has("A1B2C3", SWITCH, ON, False), "the plug, off")
        tasmota = {m.topic: m.payload.decode() for m in load("discovery/tasmota_sensor").states()}
        await telemetry(
            home, probe, "stat/desk_plug/RESULT", '{"POWER":"ON"}', has("A1B2C3", SWITCH, ON, True)
        )
        await telemetry(
            home,
            probe,
            "tele/sonoff_th/SENSOR",
            tasmota["tele/sonoff_th/SENSOR"],
            has("D4E5F6", HUMIDITY_SENSOR, CURRENT_HUMIDITY, 45),
        )
        accessories = await accessories_where(
            home,
            all_of(
                has("A1B2C3", SWITCH, ON, True),
                has("D4E5F6", HUMIDITY_SENSOR, CURRENT_HUMIDITY, 45),
                has("a4cf12b3c4d5", LIGHTBULB, HUE, 240),
                has("a4cf12b3c4d5", TEMPERATURE_SENSOR, CURRENT_TEMPERATURE, 21.4),
                has("a4cf12b3c4d5", MOTION_SENSOR, MOTION_DETECTED, False),
            ),
            "the Tasmota plug and sensor, the ESPHome node",
        )
        plug = aid_of(accessories, "A1B2C3")
        assert char_of(accessories, plug, INFORMATION, NAME)["value"] == "Desk plug"
        on = char_of(accessories, plug, SWITCH, ON)["iid"]
        await home.put([(plug, on, False)])
        command = await probe.wait_message("cmnd/desk_plug/POWER")
        assert command.payload == b"OFF"
        node = aid_of(accessories, "a4cf12b3c4d5")
        relay = char_of(accessories, node, SWITCH, ON)["iid"]
        await home.put([(node, relay, True)])
        assert (await probe.wait_message("livingroom/switch/relay/command")).payload == b"ON"

        # Tasmota's button trigger, its payload a JSON text compared as it is.
        sensor = aid_of(accessories, "D4E5F6")
        press = char_of(accessories, sensor, BUTTON, SWITCH_EVENT)["iid"]
        await home.subscribe([(sensor, press)])
        await probe.publish("stat/sonoff_th/BUTTON1T", '{"TRIG":"SINGLE"}')
        await home.wait_event(sensor, press, 0)

        # The power readings have no HomeKit form: bridge/devices says so.
        entry = await wait_for(
            lambda: (
                len(catalogue(probe).get("A1B2C3", {}).get("mapping", {}).get("skipped", [])) == 3
                and catalogue(probe)["A1B2C3"]["mapping"]
            )
        )
        reasons = {item["config_topic"].split("/")[2]: item["reason"] for item in entry["skipped"]}
        assert (
            reasons["A1B2C3_ENERGY_Power"]
            == "HomeKit has no service for a sensor of device_class power"
        )

        # ESPHome's status topic going offline: No Response.
        await probe.publish("livingroom/status", "offline", retain=True)

        async def no_response() -> bool:
            return await status_of(home, node, relay) == NO_RESPONSE

        await wait_for(no_response, message="No Response while the node is offline")
        assert await home.put([(node, relay, False)]) == {(node, relay): NO_RESPONSE}
    finally:
        await home.close()


async def test_bad_discovery_input_is_reported_and_the_last_good_value_stays(
    make_bridge, probe: MqttProbe
) -> None:
    bridge = make_bridge(**SOURCES)
    await play(probe, "z2m_weather")
    sensor = {
        "state_topic": "garden/state",
        "device_class": "temperature",
        "value_template": "{{ value_json.t | float }}",
        "unique_id": "garden_t",
        "device": {"identifiers": ["garden"], "name": "Garden"},
    }
    await probe.publish("homeassistant/sensor/garden/t/config", json.dumps(sensor), retain=True)
    await probe.publish("garden/state", '{"t": "12.5"}', retain=True)
    await probe.publish("homeassistant/sensor/broken/config", "{not json", retain=True)
    await probe.publish("homeassistant/siren/x/config", '{"command_topic": "s"}', retain=True)
    bad_template = {
        **sensor,
        "value_template": "{{ value_json.t | float ",
        "unique_id": "g2",
        "device": {"identifiers": ["garden2"]},
    }
    await probe.publish(
        "homeassistant/sensor/garden2/t/config", json.dumps(bad_template), retain=True
    )
    home = await paired(bridge)
    try:
        accessories = await accessories_where(
            home, has("garden", TEMPERATURE_SENSOR, CURRENT_TEMPERATURE, 12.5), "the garden sensor"
        )
        aid = aid_of(accessories, "garden")
        iid = char_of(accessories, aid, TEMPERATURE_SENSOR, CURRENT_TEMPERATURE)["iid"]
        await probe.publish("garden/state", '{"t": "warm"}', retain=True)  # the template raises

        expected = [
            "invalid_discovery: homeassistant/sensor/broken/config: payload is not JSON",
            "discovery_skipped: homeassistant/siren/x/config: siren entity skipped",
            "homeassistant/sensor/garden2/t/config: sensor entity skipped: value_template",
            "invalid_message: garden TemperatureSensor/CurrentTemperature: template",
        ]

        def reported() -> str:
            return " | ".join(f"{e['type']}: {e['message']}" for e in events(probe))

        await wait_for(
            lambda: all(text in reported() for text in expected),
            message=f"bridge/events {expected}",
        )
        assert await home.read(aid, iid) == 12.5
        assert bridge.running
        unmapped = await wait_for(lambda: catalogue(probe).get("garden2", {}).get("unmapped"))
        assert unmapped == "none of its entities has a HomeKit form"

        # An empty retained config removes the entity; the device had only it: it goes.
        await probe.publish("homeassistant/sensor/garden/t/config", "", retain=True)

        async def gone() -> bool:
            try:
                aid_of(await home.list_accessories(), "garden")
            except AssertionError:
                return True
            return False

        await wait_for(gone, message="the garden sensor removed")
        aid_of(await home.list_accessories(), WEATHER)
    finally:
        await home.close()


async def test_ids_follow_the_device_across_restarts_reordering_and_a_move_from_a_mapping(
    make_bridge, probe: MqttProbe
) -> None:
    # A bulb first mapped by hand under the id discovery gives it (docs/mapping.md).
    mapped = load("mapped/z2m_light").devices["desk_lamp"]
    mapped = json.loads(json.dumps(mapped).replace("desk_lamp", "bulb"))
    bridge = make_bridge(devices={BULB: mapped})
    await probe.publish("zigbee2mqtt/bulb", '{"state": "ON", "brightness": 254}', retain=True)
    home = await paired(bridge)
    accessories = await accessories_where(home, has(BULB, LIGHTBULB, ON, True), "the mapped bulb")
    bulb_aid = aid_of(accessories, BULB)
    pairing = home.pairing_data
    await home.close()
    bridge.stop()

    # The mapping removed, discovery on: the same accessory id. Tasmota's configs first.
    bridge.config.pop("devices")
    bridge.config.update(SOURCES)
    bridge.start()
    played = ("tasmota_plug", "z2m_bulb", "z2m_weather", "z2m_wall_switch")
    for recording in recordings(*played):
        await recording.play(probe)
    home = HapClient.from_pairing_data(pairing)
    try:
        ready = all_of(
            has(BULB, LIGHTBULB, COLOR_TEMPERATURE, 370),
            has(WEATHER, BATTERY, BATTERY_LEVEL, 15),
            has(WEATHER, HUMIDITY_SENSOR, CURRENT_HUMIDITY, 45),
            has(WEATHER, TEMPERATURE_SENSOR, CURRENT_TEMPERATURE, 21.5),
            lambda found: bool(services_of(found, aid_of(found, "A1B2C3"), SWITCH)),
            lambda found: (
                sorted(
                    on_char(service)["value"]
                    for service in services_of(found, aid_of(found, WALL), SWITCH)
                )
                == [False, True]
            ),
        )
        first = await accessories_where(home, ready, "discovered devices")
        assert aid_of(first, BULB) == bulb_aid
        wall = aid_of(first, WALL)
        rockers = {  # the left rocker's state_left is ON, the right's OFF
            "left" if on_char(service)["value"] else "right": int(on_char(service)["iid"])
            for service in services_of(first, wall, SWITCH)
        }
    finally:
        await home.close()
    bridge.stop()

    # Every config cleared and announced again in reverse order, after a restart: the same
    # ids, and each rocker keeps its service (the left one now off, the right one on).
    configs = [m for r in recordings(*played) for m in r.configs()]
    for message in configs:
        await probe.publish(message.topic, "", retain=True)
    states = '{"state_left": "OFF", "state_right": "ON"}'
    await probe.publish("zigbee2mqtt/wall_switch_double", states, retain=True)
    bridge.start()
    for message in reversed(configs):
        await probe.publish(message.topic, message.payload, retain=True)
    home = HapClient.from_pairing_data(pairing)
    try:
        again = await accessories_where(home, ready, "discovered devices after the restart")
        assert structure(again) == structure(first)

        async def rockers_follow() -> bool:
            values = await home.get([(wall, rockers["left"]), (wall, rockers["right"])])
            return (
                values[(wall, rockers["left"])].get("value") is False
                and values[(wall, rockers["right"])].get("value") is True
            )

        await wait_for(rockers_follow, message="each rocker in its own service")
    finally:
        await home.close()


def on_char(service: dict[str, Any]) -> dict[str, Any]:
    return next(
        char for char in service["characteristics"] if char["type"].upper().startswith("00000025")
    )
