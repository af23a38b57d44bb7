"""Home Assistant discovery configs as HomeKit services (issue 15, item 2): the recorded
Zigbee2MQTT, Tasmota and ESPHome configs, read with their own state payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mqtt_hk_bridge.errors import PayloadError
from mqtt_hk_bridge.exposer.bindings import AvailabilityMode, CharSpec, Skip
from mqtt_hk_bridge.exposer.ha_discovery import (
    Entity,
    parse_config,
    parse_topic,
    safe_device_id,
)
from mqtt_hk_bridge.exposer.ha_entities import EntityPlan, Unmappable, plan_entity
from mqtt_hk_bridge.exposer.service_slots import ServiceSlots
from mqtt_hk_bridge.exposer.transforms import PayloadView
from mqtt_hk_bridge.mqtt.topics import ServiceKey
from tests.support.recordings import load


def entities(recording: str) -> dict[str, Entity]:
    found: dict[str, Entity] = {}
    for message in load(recording).configs():
        topic = parse_topic(message.topic, "homeassistant")
        assert topic is not None
        for entity in parse_config(topic, message.payload):
            found[entity.key] = entity
    return found


def state(recording: str, topic: str) -> PayloadView:
    payloads = [m.payload for m in load(recording).states() if m.topic == topic]
    return PayloadView(payloads[-1])


def char(plan: EntityPlan, name: str) -> CharSpec:
    return next(c for s in plan.services for c in s.characteristics if c.characteristic == name)


def read(plan: EntityPlan, name: str, view: PayloadView) -> Any:
    spec = char(plan, name)
    assert spec.read is not None
    return spec.read(view)


def write(plan: EntityPlan, name: str, value: Any, siblings: dict[str, Any] | None = None) -> str:
    spec = char(plan, name)
    assert spec.write is not None
    return spec.write(value, (siblings or {}).get)


# -- topics, keys and ids -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "parts"),
    [
        ("homeassistant/switch/A1B2C3_RL_1/config", ("switch", None, "A1B2C3_RL_1")),
        (
            "homeassistant/light/0x000b57fffec6a5b2/light/config",
            ("light", "0x000b57fffec6a5b2", "light"),
        ),
        (
            "homeassistant/sensor/livingroom/temperature/config",
            ("sensor", "livingroom", "temperature"),
        ),
    ],
)
def test_discovery_topics(topic: str, parts: tuple[str, str | None, str]) -> None:
    parsed = parse_topic(topic, "homeassistant")
    assert parsed is not None
    assert (parsed.component, parsed.node_id, parsed.object_id) == parts
    assert parsed.topic == topic


@pytest.mark.parametrize(
    "topic",
    [
        "homeassistant/sensor/x/state",
        "homeassistant/status",
        "homeassistant/a/b/c/d/config",
        "homeassistant/sensor/bad id/config",
        "other/sensor/x/config",
    ],
)
def test_other_topics_under_the_prefix_are_not_configs(topic: str) -> None:
    assert parse_topic(topic, "homeassistant") is None


def test_abbreviations_and_the_topic_base_are_spelled_out() -> None:
    topic = parse_topic("homeassistant/switch/node/relay/config", "homeassistant")
    assert topic is not None
    payload = {
        "~": "node/switch/relay",
        "stat_t": "~/state",
        "cmd_t": "~/command",
        "avty": [{"t": "~/status", "pl_avail": "up"}],
        "uniq_id": "relay1",
        "dev": {"ids": "a4cf12b3c4d5", "mf": "espressif", "mdl": "esp32"},
    }
    [entity] = parse_config(topic, json.dumps(payload).encode())
    assert entity.config["state_topic"] == "node/switch/relay/state"
    assert entity.config["command_topic"] == "node/switch/relay/command"
    assert entity.config["availability"] == [
        {"topic": "node/switch/relay/status", "payload_available": "up"}
    ]
    assert entity.device is not None and entity.device.manufacturer == "espressif"
    assert entity.device_id == "a4cf12b3c4d5"
    assert entity.unique_id == "relay1"


def test_a_device_message_announces_each_of_its_components() -> None:
    topic = parse_topic("homeassistant/device/kitchen/config", "homeassistant")
    assert topic is not None
    payload = {
        "dev": {"ids": "ea334450945afc", "name": "Kitchen"},
        "o": {"name": "bla2mqtt"},
        "cmps": {
            "t": {
                "p": "sensor",
                "device_class": "temperature",
                "value_template": "{{ value_json.t }}",
            },
            "h": {
                "p": "sensor",
                "device_class": "humidity",
                "value_template": "{{ value_json.h }}",
            },
        },
        "state_topic": "kitchen/state",
    }
    found = parse_config(topic, json.dumps(payload).encode())
    assert [(e.key, e.component) for e in found] == [
        ("homeassistant/device/kitchen/config#h", "sensor"),
        ("homeassistant/device/kitchen/config#t", "sensor"),
    ]
    assert {e.config["state_topic"] for e in found} == {"kitchen/state"}
    assert {e.device_id for e in found} == {"ea334450945afc"}


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_a_malformed_config_is_a_payload_error(payload: bytes) -> None:
    topic = parse_topic("homeassistant/switch/x/config", "homeassistant")
    assert topic is not None
    with pytest.raises(PayloadError):
        parse_config(topic, payload)


def test_ids_follow_the_device_identity() -> None:
    bulb = next(iter(entities("discovery/z2m_bulb").values()))
    assert bulb.device_id == "zigbee2mqtt_0x000b57fffec6a5b2"
    assert safe_device_id("a/b+c#d") == "a_b_c_d"
    assert safe_device_id("bridge") == "bridge_"
    long_id = safe_device_id("x" * 100)
    assert len(long_id) == 64 and long_id != safe_device_id("x" * 101)
    orphan = Entity("homeassistant/switch/lone/config", "switch", {}, None, "lone", "u-1")
    assert orphan.device_id == "u-1"


# -- components ---------------------------------------------------------------------------


def test_zigbee2mqtt_bulb() -> None:
    found = entities("discovery/z2m_bulb")
    plan = plan_entity(found["homeassistant/light/0x000b57fffec6a5b2/light/config"])
    assert [s.service for s in plan.services] == ["Lightbulb"]
    view = state("discovery/z2m_bulb", "zigbee2mqtt/bulb")
    assert read(plan, "On", view) is True
    assert round(read(plan, "Brightness", view)) == 79  # 200 of 254
    assert read(plan, "ColorTemperature", view) == 370
    assert write(plan, "On", False) == '{"state":"OFF"}'
    assert write(plan, "Brightness", 50) == '{"brightness":127}'
    assert write(plan, "ColorTemperature", 300) == '{"color_temp":300}'
    assert plan.availability_mode is AvailabilityMode.ALL
    topics = [a.topic for a in plan.availability]
    assert topics == ["zigbee2mqtt/bridge/state", "zigbee2mqtt/bulb/availability"]
    assert plan.availability[0].read(PayloadView(b'{"state":"offline"}')) is False
    with pytest.raises(Unmappable, match="disabled by default"):
        plan_entity(found["homeassistant/sensor/0x000b57fffec6a5b2/linkquality/config"])


def test_zigbee2mqtt_motion_contact_and_weather_sensors() -> None:
    motion = entities("discovery/z2m_motion")
    view = state("discovery/z2m_motion", "zigbee2mqtt/motion_hall")
    occupancy = plan_entity(
        motion["homeassistant/binary_sensor/0x00158d0001a9ec71/occupancy/config"]
    )
    assert occupancy.services[0].service == "MotionSensor"
    assert read(occupancy, "MotionDetected", view) is True
    lux = plan_entity(motion["homeassistant/sensor/0x00158d0001a9ec71/illuminance_lux/config"])
    assert read(lux, "CurrentAmbientLightLevel", view) == 28
    contact = plan_entity(
        entities("discovery/z2m_contact")[
            "homeassistant/binary_sensor/0x00158d000122fcd1/contact/config"
        ]
    )
    # Zigbee2MQTT's contact true is closed: HomeKit's 0 (contact detected).
    assert read(contact, "ContactSensorState", PayloadView(b'{"contact":true}')) == 0
    assert read(contact, "ContactSensorState", PayloadView(b'{"contact":false}')) == 1
    weather = entities("discovery/z2m_weather")
    view = state("discovery/z2m_weather", "zigbee2mqtt/weather_sensor")
    battery = plan_entity(weather["homeassistant/sensor/0x0017880104e45522/battery/config"])
    assert battery.services[0].service == "BatteryService"
    assert read(battery, "BatteryLevel", view) == 15
    assert read(battery, "StatusLowBattery", view) == 1
    assert char(battery, "ChargingState").initial == 2
    with pytest.raises(Unmappable, match="no pressure"):
        plan_entity(weather["homeassistant/sensor/0x0017880104e45522/pressure/config"])


def test_zigbee2mqtt_button_triggers_share_one_switch_per_button() -> None:
    found = entities("discovery/z2m_button")
    plans = {
        key.rsplit("/", 2)[-2]: plan_entity(entity)
        for key, entity in found.items()
        if "device_automation" in key and "release" not in key
    }
    assert {p.services[0].slot for p in plans.values()} == {"button:action"}
    presses = {
        name: read(p, "ProgrammableSwitchEvent", PayloadView(name.split("_")[1].encode()))
        for name, p in plans.items()
    }
    assert presses == {"action_single": 0, "action_double": 1, "action_hold": 2}
    assert (
        read(plans["action_single"], "ProgrammableSwitchEvent", PayloadView(b"double"))
        is Skip.NOTHING
    )
    with pytest.raises(Unmappable, match="not a single, double or long press"):
        plan_entity(
            found["homeassistant/device_automation/0x0017880104e45520/action_release/config"]
        )
    with pytest.raises(Unmappable, match="'event' component"):
        plan_entity(found["homeassistant/event/0x0017880104e45520/action/config"])


def test_tasmota_relay_sensors_and_trigger() -> None:
    plug = entities("discovery/tasmota_plug")
    relay = plan_entity(plug["homeassistant/switch/A1B2C3_RL_1/config"])
    assert relay.services[0].service == "Switch"
    assert read(relay, "On", PayloadView(b'{"POWER":"ON"}')) is True
    assert read(relay, "On", PayloadView(b'{"Dimmer":40}')) is Skip.NOTHING
    assert write(relay, "On", False) == "OFF"
    assert char(relay, "On").command_topic == "cmnd/desk_plug/POWER"
    assert relay.availability[0].read(PayloadView(b"Offline")) is False
    reasons = []
    for key in ("A1B2C3_ENERGY_Power", "A1B2C3_ENERGY_Voltage", "A1B2C3_ENERGY_Total"):
        with pytest.raises(Unmappable) as raised:
            plan_entity(plug[f"homeassistant/sensor/{key}/config"])
        reasons.append(str(raised.value))
    assert reasons == [
        "HomeKit has no service for a sensor of device_class power",
        "a sensor without a device_class has no HomeKit service",
        "HomeKit has no service for a sensor of device_class energy",
    ]
    th = entities("discovery/tasmota_sensor")
    view = state("discovery/tasmota_sensor", "tele/sonoff_th/SENSOR")
    temperature = plan_entity(th["homeassistant/sensor/D4E5F6_AM2301_Temperature/config"])
    assert read(temperature, "CurrentTemperature", view) == 21.3
    trigger = plan_entity(th["homeassistant/device_automation/D4E5F6_BTN_1_SINGLE/config"])
    assert trigger.services[0].slot == "button:button_1"
    assert read(trigger, "ProgrammableSwitchEvent", PayloadView(b'{"TRIG":"SINGLE"}')) == 0


def test_esphome_node() -> None:
    found = entities("discovery/esphome_node")
    relay = plan_entity(found["homeassistant/switch/livingroom/relay/config"])
    assert read(relay, "On", PayloadView(b"OFF")) is False
    assert write(relay, "On", True) == "ON"
    lamp = plan_entity(found["homeassistant/light/livingroom/lamp/config"])
    view = state("discovery/esphome_node", "livingroom/light/lamp/state")
    assert round(read(lamp, "Brightness", view)) == 50  # 128 of 255
    assert read(lamp, "Hue", view) == 240
    assert read(lamp, "Saturation", view) == 100
    assert json.loads(write(lamp, "Hue", 0, {"Saturation": 100})) == {
        "color": {"r": 255, "g": 0, "b": 0}
    }
    pir = plan_entity(found["homeassistant/binary_sensor/livingroom/pir/config"])
    assert read(pir, "MotionDetected", PayloadView(b"ON")) is True


def config_entity(component: str, config: dict[str, Any]) -> Entity:
    topic = parse_topic(f"homeassistant/{component}/test/config", "homeassistant")
    assert topic is not None
    return parse_config(topic, json.dumps(config).encode())[0]


def test_cover_lock_fan_and_climate() -> None:
    cover = plan_entity(
        config_entity(
            "cover",
            {
                "position_topic": "z/blind",
                "position_template": "{{ value_json.position }}",
                "set_position_topic": "z/blind/set",
                "set_position_template": '{"position": {{ position }}}',
                "command_topic": "z/blind/set",
            },
        )
    )
    assert read(cover, "CurrentPosition", PayloadView(b'{"position": 40}')) == 40
    assert write(cover, "TargetPosition", 75) == '{"position": 75}'
    lock = plan_entity(config_entity("lock", {"state_topic": "l/state", "command_topic": "l/set"}))
    assert read(lock, "LockCurrentState", PayloadView(b"LOCKED")) == 1
    assert read(lock, "LockTargetState", PayloadView(b"UNLOCKING")) == 0
    assert write(lock, "LockTargetState", 1) == "LOCK"
    fan = plan_entity(
        config_entity(
            "fan",
            {
                "state_topic": "f/on",
                "command_topic": "f/on/set",
                "percentage_state_topic": "f/speed",
                "percentage_command_topic": "f/speed/set",
                "speed_range_min": 1,
                "speed_range_max": 3,
            },
        )
    )
    assert read(fan, "RotationSpeed", PayloadView(b"3")) == 100
    assert write(fan, "RotationSpeed", 50) == "2"
    climate = plan_entity(
        config_entity(
            "climate",
            {
                "current_temperature_topic": "c/temp",
                "temperature_state_topic": "c/target",
                "temperature_command_topic": "c/target/set",
                "mode_state_topic": "c/mode",
                "mode_command_topic": "c/mode/set",
                "modes": ["off", "heat", "auto"],
                "temperature_unit": "F",
            },
        )
    )
    assert read(climate, "CurrentTemperature", PayloadView(b"68")) == pytest.approx(20)
    assert read(climate, "TargetHeatingCoolingState", PayloadView(b"heat")) == 1
    assert read(climate, "CurrentHeatingCoolingState", PayloadView(b"heat")) == 1
    assert write(climate, "TargetHeatingCoolingState", 3) == "auto"
    assert write(climate, "TargetTemperature", 20) == "68.0"


@pytest.mark.parametrize(
    ("component", "config", "reason"),
    [
        ("vacuum", {"command_topic": "v"}, "no service for the 'vacuum' component"),
        (
            "sensor",
            {"state_topic": "s", "device_class": "temperature", "value_template": "{{ x "},
            "value_template: template",
        ),
        ("switch", {"state_topic": "s/+/x", "command_topic": "c"}, "not a topic we can use"),
        ("light", {"schema": "template", "command_topic": "c"}, "schema 'template'"),
        ("binary_sensor", {"state_topic": "s", "device_class": "vibration"}, "vibration"),
        ("switch", {"state_topic": "s", "availability_mode": "most"}, "availability_mode"),
        (
            "binary_sensor",
            {"state_topic": "s", "device_class": "motion", "off_delay": -5},
            "off_delay -5 is negative",
        ),
        (
            "binary_sensor",
            {"state_topic": "s", "device_class": "motion", "off_delay": "soon"},
            "off_delay 'soon' is not a number",
        ),
        (
            "sensor",
            {"state_topic": "s", "device_class": "temperature", "expire_after": -1},
            "expire_after -1 is negative",
        ),
    ],
)
def test_unmappable_entities_say_why(component: str, config: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unmappable, match=reason):
        plan_entity(config_entity(component, config))


def test_a_template_that_raises_on_a_message_is_a_payload_error() -> None:
    sensor = plan_entity(
        config_entity(
            "sensor",
            {
                "state_topic": "s",
                "device_class": "temperature",
                "value_template": "{{ value_json.t | float }}",
            },
        )
    )
    with pytest.raises(PayloadError, match="failed"):
        read(sensor, "CurrentTemperature", PayloadView(b'{"t": "warm"}'))


def test_service_slots_do_not_depend_on_arrival_order(tmp_path: Path) -> None:
    async def allocate(order: list[str], directory: Path) -> dict[str, ServiceKey]:
        slots = ServiceSlots(directory)
        return {slot: slots.key("plug", slot, "Switch") for slot in order}

    import asyncio

    first = asyncio.run(allocate(["relay1", "relay2"], tmp_path))
    again = asyncio.run(allocate(["relay2", "relay1"], tmp_path))
    assert first == again == {"relay1": ServiceKey("Switch", 1), "relay2": ServiceKey("Switch", 2)}
