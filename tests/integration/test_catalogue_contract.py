"""Contract: `HomeKit/bridge/devices` has one schema for both sides (catalogue.py,
docs/topics.md). A real bridge with MQTT devices and a paired HomeKit accessory publishes
entries that all validate, with the same fields whatever their origin."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import voluptuous as vol

from mqtt_hk_bridge.catalogue import ENTRY_SCHEMA
from tests.support.accessory_process import AccessoryProcess
from tests.support.bridge_api import request
from tests.support.bridge_process import BridgeProcess
from tests.support.mosquitto import MqttProbe

FAST_CONTROLLER = {"reconnect_min": 0.2, "reconnect_max": 1.0, "poll_interval": 0}
#: Fields every entry has, on both sides; each side adds one of its own.
COMMON = {"id", "origin", "source", "name", "aid", "available", "services"}


async def test_both_sides_publish_one_schema(
    make_bridge: Callable[..., BridgeProcess], accessory: AccessoryProcess, probe: MqttProbe
) -> None:
    make_bridge(controller=FAST_CONTROLLER)
    await probe.subscribe("homeassistant/#")
    await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "20.5", retain=True)
    await probe.publish("HomeKit/lamp/Lightbulb/On", "1", retain=True)
    paired = await request(
        probe,
        "pair",
        {"device_id": accessory.device_id, "setup_code": accessory.pin, "alias": "demo"},
    )
    assert paired["status"] == "ok", paired

    def complete(message: Any) -> bool:
        entries = {entry["id"]: entry for entry in json.loads(message.payload)}
        return {"esp", "lamp", "demo-2", "demo-3"} <= set(entries) and entries["demo-3"][
            "available"
        ]

    message = await probe.wait_message("HomeKit/bridge/devices", complete, timeout=20)
    entries = {entry["id"]: entry for entry in json.loads(message.payload)}
    for entry in entries.values():
        try:
            ENTRY_SCHEMA(entry)
        except vol.Invalid as err:
            raise AssertionError(f"{entry['id']}: {err}") from None
        assert set(entry) >= COMMON
    esp, demo = entries["esp"], entries["demo-3"]
    assert (esp["origin"], esp["source"], esp["available"]) == ("mqtt", "homekit_topics", True)
    assert (demo["origin"], demo["source"], demo["alias"]) == ("homekit", "ip", "demo")
    # The same characteristic reads the same way from either side.
    mqtt_side = _characteristic(esp, "TemperatureSensor", "CurrentTemperature")
    homekit_side = _characteristic(demo, "TemperatureSensor", "CurrentTemperature")
    # Each names where its live value is retained (no copy that would go stale).
    assert mqtt_side["topic"] == "HomeKit/esp/TemperatureSensor/CurrentTemperature"
    assert homekit_side["topic"] == "HomeKit/demo-3/TemperatureSensor/CurrentTemperature"
    assert "value" not in mqtt_side and "value" not in homekit_side
    shared = {"name", "format", "perms", "unit", "min_value", "max_value"}
    assert {k: v for k, v in mqtt_side.items() if k in shared}.keys() == shared
    assert mqtt_side["format"] == homekit_side["format"] == "float"
    assert mqtt_side["unit"] == homekit_side["unit"] == "celsius"
    # Home Assistant discovery is off by default: nothing is published for it.
    assert not probe.messages_on("homeassistant/#")


def _characteristic(entry: dict[str, Any], service: str, name: str) -> dict[str, Any]:
    [found] = [
        char
        for svc in entry["services"]
        if svc["type"] == service
        for char in svc["characteristics"]
        if char["name"] == name
    ]
    return found
