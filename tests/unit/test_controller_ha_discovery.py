"""Contract: the Home Assistant discovery configs the controller side publishes for each
recorded accessory database (../shared/fixtures), pinned in tests/golden/ha-discovery.

A change to a golden file is a change to what Home Assistant users see: review the diff.
`UPDATE_GOLDEN=1 pytest tests/unit/test_controller_ha_discovery.py` rewrites them after a deliberate
change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mqtt_hk_bridge.controller.ha_discovery import configs_for
from mqtt_hk_bridge.controller.mirror import MirroredDevice, build
from tests.support.fixtures import DATABASE_FILES

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "ha-discovery"
ACCESSORY_ID = "AA:BB:CC:DD:EE:FF"
NAMES = [path.stem for path in DATABASE_FILES]


def configs_of(name: str) -> tuple[dict[str, MirroredDevice], dict[str, dict[str, Any]]]:
    database = json.loads(next(p for p in DATABASE_FILES if p.stem == name).read_text())
    devices, values = build("dev", "HomeKit", database)
    configs = configs_for(
        devices=devices.values(),
        values=values,
        accessory_id=ACCESSORY_ID,
        base_topic="HomeKit",
        prefix="homeassistant",
    )
    return devices, configs


@pytest.mark.parametrize("name", NAMES)
def test_configs_match_the_golden_file(name: str) -> None:
    _, configs = configs_of(name)
    text = json.dumps(configs, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    golden = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8"), f"{name}: discovery configs changed"


@pytest.mark.parametrize("name", NAMES)
def test_every_config_points_at_the_mirror(name: str) -> None:
    """What Home Assistant reads is a topic we publish; what it writes is a `/set` of a
    writable characteristic; its availability is the accessory's and the bridge's."""
    devices, configs = configs_of(name)
    state = {char.topic: char for device in devices.values() for char in device.chars}
    writable = {f"{t}/set" for t, char in state.items() if char.info.writable}
    unique_ids = [config["unique_id"] for config in configs.values()]
    assert len(unique_ids) == len(set(unique_ids))
    for topic, config in configs.items():
        component = topic.split("/")[1]
        assert component in {
            "light", "switch", "sensor", "binary_sensor", "climate", "cover", "lock", "fan",
            "number",
        }  # fmt: skip
        for key, value in config.items():
            if key.endswith("command_topic") or key == "set_position_topic":
                assert value in writable, (topic, key, value)
            elif key.endswith("_topic") and key != "command_topic":
                assert value in state and state[value].info.readable, (topic, key, value)
        [device_id] = {v.split("/")[1] for k, v in config.items() if k.endswith("_topic")}
        assert config["availability"] == [
            {"topic": f"HomeKit/{device_id}/availability"},
            {"topic": "HomeKit/bridge/state"},
        ]
        assert config["availability_mode"] == "all"


def test_the_platforms_of_real_devices() -> None:
    """A few facts a Home Assistant user relies on, read from the recorded devices."""
    _, ecobee = configs_of("ecobee3")
    thermostat = ecobee["homeassistant/climate/hk_aabbccddeeff_1/thermostat/config"]
    assert thermostat["modes"] == ["off", "heat", "cool", "auto"]
    assert thermostat["device"]["manufacturer"] == "ecobee Inc."
    remote = ecobee[
        "homeassistant/sensor/hk_aabbccddeeff_2/temperature_sensor_current_temperature/config"
    ]
    assert (remote["device_class"], remote["unit_of_measurement"]) == ("temperature", "°C")
    assert remote["device"]["via_device"] == "hk_aabbccddeeff_1"  # behind the thermostat
    motion = ecobee[
        "homeassistant/binary_sensor/hk_aabbccddeeff_2/motion_sensor_motion_detected/config"
    ]
    assert motion["device_class"] == "motion" and motion["payload_on"] == "1"

    _, eve = configs_of("eve_energy")
    outlet = eve["homeassistant/switch/hk_aabbccddeeff_1/outlet/config"]
    assert outlet["device_class"] == "outlet"
    assert outlet["command_topic"] == "HomeKit/dev/Outlet/On/set"

    _, bulb = configs_of("koogeek_ls1")
    light = bulb["homeassistant/light/hk_aabbccddeeff_1/lightbulb/config"]
    assert light["brightness_command_topic"] == "HomeKit/dev/Lightbulb/Brightness/set"
    assert light["brightness_scale"] == 100
    hue = bulb["homeassistant/number/hk_aabbccddeeff_1/lightbulb_hue/config"]
    assert (hue["min"], hue["max"]) == (0, 359)  # what this bulb declares

    _, cameras = configs_of("camera")
    assert cameras == {}  # nothing Home Assistant could use without HAP's camera streams
