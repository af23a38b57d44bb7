"""Mapped devices and sources in bridge.yaml: what a user writes, and errors that name the
device and the key (issue 15, item 1)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mqtt_hk_bridge import const
from mqtt_hk_bridge.config import Config, load, parse
from mqtt_hk_bridge.errors import ConfigError
from mqtt_hk_bridge.exposer.narrowing import Narrowing
from mqtt_hk_bridge.mapping_config import CharMapping

TASMOTA = """\
devices:
  tasmota_th:
    name: Hall sensor
    availability:
      topic: tele/tasmota_th/LWT
      payload_available: Online
      payload_not_available: Offline
    services:
      - type: Switch
        characteristics:
          On:
            state_topic: stat/tasmota_th/POWER
            command_topic: cmnd/tasmota_th/POWER
            values: {'ON': true, 'OFF': false}
      - type: temperaturesensor
        characteristics:
          CurrentTemperature: {state_topic: tele/tasmota_th/SENSOR, json_path: $.AM2301.Temperature}
      - type: TemperatureSensor
        characteristics:
          CurrentTemperature:
            state_topic: tele/tasmota_th/SENSOR
            json_path: "$['DS18B20-1'].Temperature"
      - type: Lightbulb
        characteristics:
          On: {command_topic: cmnd/tasmota_th/POWER2}
          Brightness: {state_topic: stat/tasmota_th/RESULT, json_path: $.Dimmer, scale: 1.0,
                       command_topic: cmnd/tasmota_th/Dimmer}
  esp_1: {expire_after: 60}
sources: [homekit_topics, homeassistant_discovery]
homeassistant: {prefix: ha}
"""


def test_a_mapped_device_as_written(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(TASMOTA, encoding="utf-8")
    config = load(path, environ={})
    options = config.devices["tasmota_th"]
    assert options.name == "Hall sensor"
    mapping = options.mapping
    assert mapping is not None
    assert mapping.availability is not None
    assert mapping.availability.payload_not_available == "Offline"
    assert [(s.service, s.index) for s in mapping.services] == [
        ("Switch", 1),
        ("TemperatureSensor", 1),
        ("TemperatureSensor", 2),
        ("Lightbulb", 1),
    ]
    on = mapping.services[0].characteristics[0]
    assert on == CharMapping(
        "On",
        state_topic="stat/tasmota_th/POWER",
        command_topic="cmnd/tasmota_th/POWER",
        values={"ON": True, "OFF": False},
    )
    assert str(mapping.services[2].characteristics[0].json_path) == "$['DS18B20-1'].Temperature"
    assert config.devices["esp_1"].mapping is None
    assert config.sources == (const.SOURCE_HOMEKIT_TOPICS, const.SOURCE_HOMEASSISTANT_DISCOVERY)
    assert config.homeassistant.prefix == "ha"


def test_defaults_are_our_layout_only() -> None:
    config = parse({})
    assert config.sources == (const.SOURCE_HOMEKIT_TOPICS,)
    assert config.homeassistant.prefix == "homeassistant"


def service(characteristics: str, kind: str = "Switch") -> str:
    return (
        f"devices: {{plug: {{services: [{{type: {kind}, characteristics: {characteristics}}}]}}}}"
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            service("{On: {state_topic: a}}", kind="Dimmer"),
            "devices.plug.services.0.type: unknown HomeKit service 'Dimmer'",
        ),
        (
            service("{Brightness: {state_topic: a}}"),
            "devices.plug.services.0.characteristics.Brightness: Switch has no characteristic",
        ),
        (
            service("{On: {state_topic: a, values: {ON: true}}}"),
            "devices.plug.services.0.characteristics.On.values.True: YAML reads unquoted ON",
        ),
        (
            service("{On: {command_topic: a, command_values: {true: on}}}"),
            "characteristics.On.command_values.True: YAML reads unquoted",
        ),
        (
            service("{ContactSensorState: {state_topic: a, values: {open: 2}}}", "ContactSensor"),
            "characteristics.ContactSensorState.values.open: 2 is not a valid ContactSensorState",
        ),
        (
            service("{On: {state_topic: a, json_path: state}}"),
            "characteristics.On.json_path: a JSON path starts with $",
        ),
        (service("{On: {}}"), "characteristics.On: needs a state_topic, a command_topic"),
        (
            service("{On: {command_topic: a, off_delay: 30}}"),
            "characteristics.On.off_delay: off_delay needs a state_topic",
        ),
        (
            service("{On: {state_topic: a, off_delay: 0}}"),
            "characteristics.On.off_delay: expected a duration >= 0.1 s",
        ),
        (
            service("{On: {state_topic: 'a/+/b'}}"),
            "characteristics.On.state_topic: must be an MQTT topic",
        ),
        (
            service("{CurrentTemperature: {command_topic: a}}", "TemperatureSensor"),
            "CurrentTemperature.command_topic: CurrentTemperature is read-only in HomeKit",
        ),
        (
            service("{On: {state_topic: a, values: {'ON': true}, scale: 2}}"),
            "characteristics.On.scale: values and scale/offset do not go together",
        ),
        (
            service("{Brightness: {state_topic: a, scale: 0}}", "Lightbulb"),
            "characteristics.Brightness.scale: must not be 0",
        ),
        (
            service("{On: {value: true, state_topic: a}}"),
            "characteristics.On.value: a fixed value takes no topics",
        ),
        (
            "devices: {plug: {availability: {topic: a}}}",
            "devices.plug.availability: availability belongs to a mapped device",
        ),
        ("sources: [homekit_topics, zigbee]", "sources.1: expected one of homekit_topics"),
        ("homeassistant: {prefix: 'ha/#'}", "homeassistant.prefix"),
    ],
)
def test_errors_name_the_device_and_the_key(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load(path, environ={})
    assert f"{path}: " in str(raised.value)
    assert error in str(raised.value)


def load_text(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "bridge.yaml"
    path.write_text(text, encoding="utf-8")
    return load(path, environ={})


def test_what_a_mapped_device_can_do_narrows_homekits_range(tmp_path: Path) -> None:
    heating_only = (
        "{TargetHeatingCoolingState: {command_topic: t/mode, valid_values: [0, 1]},"
        " TargetTemperature: {command_topic: t/temp, min_value: 15, max_value: 30, min_step: 0.5}}"
    )
    mapping = load_text(tmp_path, service(heating_only, "Thermostat")).devices["plug"].mapping
    assert mapping is not None
    [chars] = [mapped.characteristics for mapped in mapping.services]
    narrowed = {char.characteristic: char.narrowing for char in chars}
    assert narrowed["TargetHeatingCoolingState"] == Narrowing(valid_values=(0, 1))
    assert narrowed["TargetTemperature"] == Narrowing(min_value=15, max_value=30, min_step=0.5)


@pytest.mark.parametrize(
    ("chars", "error"),
    [
        (
            "{TargetHeatingCoolingState: {command_topic: t, valid_values: [1, 5]}}",
            "TargetHeatingCoolingState.valid_values: 5 is not a valid TargetHeatingCoolingState",
        ),
        (
            "{TargetTemperature: {command_topic: t, min_value: 5}}",
            "TargetTemperature.min_value: goes beyond HomeKit's own range for TargetTemperature",
        ),
        (
            "{TargetTemperature: {command_topic: t, min_value: 30, max_value: 20}}",
            "TargetTemperature.min_value: min_value is above max_value",
        ),
        (
            "{TargetHeatingCoolingState: {command_topic: t, min_value: 1}}",
            "min_value: TargetHeatingCoolingState is not a number with a range",
        ),
        (
            "{TargetTemperature: {command_topic: t, valid_values: [20]}}",
            "valid_values: TargetTemperature has no valid values",
        ),
    ],
)
def test_narrowing_that_cannot_be_is_refused_with_the_key(
    tmp_path: Path, chars: str, error: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        load_text(tmp_path, service(chars, "Thermostat"))
