"""Narrowing: what a device can do of a characteristic, inside HomeKit's own range."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mqtt_hk_bridge.errors import PayloadError
from mqtt_hk_bridge.exposer.ha_discovery import parse_config, parse_topic
from mqtt_hk_bridge.exposer.ha_entities import plan_entity
from mqtt_hk_bridge.exposer.narrowing import Narrowing
from mqtt_hk_bridge.exposer.registry import Registry
from mqtt_hk_bridge.homekit.catalog import get_catalog
from mqtt_hk_bridge.mqtt.topics import CharKey, ServiceKey

CATALOG = get_catalog()
TARGET_TEMPERATURE = CATALOG.characteristics["TargetTemperature"]  # 10..38, step 0.1
TARGET_MODE = CATALOG.characteristics["TargetHeatingCoolingState"]  # 0..3


def test_never_wider_than_homekit() -> None:
    valve = Narrowing(min_value=5, max_value=30, min_step=0.05).within(TARGET_TEMPERATURE)
    assert valve == Narrowing(min_value=10, max_value=30, min_step=0.1)
    modes = Narrowing(valid_values=(1, 3, 7)).within(TARGET_MODE)
    assert modes == Narrowing(valid_values=(1, 3))


def test_a_number_is_brought_into_range_and_a_mode_outside_is_refused() -> None:
    valve = Narrowing(min_value=15, max_value=30)
    assert valve.check(12.5) == 15.0 and valve.check(31) == 30 and valve.check(21.5) == 21.5
    assert valve.allows(21.5) and not valve.allows(12.5)
    heating = Narrowing(valid_values=(0, 1))
    assert heating.check(1) == 1
    with pytest.raises(PayloadError, match=r"2 is not one the device takes \(0, 1\)"):
        heating.check(2)


def test_where_to_start_when_homekits_own_start_is_not_allowed() -> None:
    assert Narrowing(valid_values=(1, 3)).neutral(TARGET_MODE) == 1
    assert Narrowing(min_value=15).neutral(TARGET_TEMPERATURE) == 15.0
    assert Narrowing(min_step=0.5).neutral(TARGET_TEMPERATURE) is None


def test_hap_python_properties() -> None:
    assert Narrowing(valid_values=(0, 1), min_value=None).hap_properties() == (
        {},
        {"0": 0, "1": 1},
    )
    assert Narrowing(min_value=10, max_value=30, min_step=0.5).hap_properties() == (
        {"minValue": 10, "maxValue": 30, "minStep": 0.5},
        {},
    )


def test_kept_with_the_device_across_a_restart() -> None:
    registry = Registry()
    mode = CharKey(ServiceKey("Thermostat"), "TargetHeatingCoolingState")
    registry.set_value("trv", mode, 1, now=0.0)
    assert registry.set_narrowing("trv", {mode: Narrowing(valid_values=(0, 1))})
    assert not registry.set_narrowing("trv", {mode: Narrowing(valid_values=(0, 1))})
    assert not registry.set_narrowing("unknown", {mode: Narrowing(valid_values=(0, 1))})
    again = Registry.from_json(json.loads(json.dumps(registry.to_json())))
    assert again.devices["trv"].narrowed == {mode: Narrowing(valid_values=(0, 1))}


def climate(config: dict[str, Any]) -> dict[str, Narrowing | None]:
    topic = parse_topic("homeassistant/climate/trv/config", "homeassistant")
    assert topic is not None
    [service] = plan_entity(parse_config(topic, json.dumps(config).encode())[0]).services
    return {spec.characteristic: spec.narrowing for spec in service.characteristics}


def test_a_radiator_valve_from_discovery() -> None:
    narrowed = climate(
        {
            "mode_state_topic": "z/trv",
            "mode_command_topic": "z/trv/set",
            "modes": ["off", "heat"],
            "temperature_state_topic": "z/trv",
            "temperature_command_topic": "z/trv/set",
            "min_temp": 5,
            "max_temp": 30,
            "temp_step": 0.5,
        }
    )
    assert narrowed["TargetHeatingCoolingState"] == Narrowing(valid_values=(0, 1))
    assert narrowed["TargetTemperature"] == Narrowing(min_value=5, max_value=30, min_step=0.5)
    fahrenheit = climate(
        {
            "temperature_command_topic": "t/set",
            "temperature_unit": "F",
            "min_temp": 50,
            "max_temp": 86,
        }
    )
    assert fahrenheit["TargetTemperature"] == Narrowing(min_value=10.0, max_value=30.0)
    # Home Assistant's default modes (auto, off, cool, heat, dry, fan_only): all four.
    default = climate({"mode_command_topic": "m/set"})
    assert default["TargetHeatingCoolingState"] == Narrowing(valid_values=(0, 1, 2, 3))
    assert default.get("TargetTemperature") is None
