"""Home Assistant discovery for the accessories the bridge controls, on a real bridge
process, a real Mosquitto and a real HomeKit accessory: what Home Assistant would read off
the broker, and what happens when it writes where the configs point."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.support.accessory_process import AccessoryProcess
from tests.support.bridge_api import request
from tests.support.bridge_process import BridgeProcess
from tests.support.mosquitto import MqttProbe
from tests.support.wait import wait_for

FAST_CONTROLLER = {"reconnect_min": 0.2, "reconnect_max": 1.0, "poll_interval": 0}
HA = {"discovery": True, "prefix": "homeassistant"}


def node(accessory: AccessoryProcess, aid: int) -> str:
    return f"hk_{str(accessory.device_id).replace(':', '').lower()}_{aid}"


async def retained(probe: MqttProbe, pattern: str) -> dict[str, bytes]:
    """What a client subscribing now gets retained under `pattern`."""
    async with MqttProbe(probe.host, probe.port) as late:
        await late.subscribe(pattern)
        await late.subscribe("marker/ha")
        await late.publish("marker/ha", "x")
        await late.wait_message("marker/ha")
        return {m.topic: m.payload for m in late.messages if m.retain}


async def test_discovery_follows_pairing_and_drives_the_accessory(
    make_bridge: Callable[..., BridgeProcess], accessory: AccessoryProcess, probe: MqttProbe
) -> None:
    make_bridge(controller=FAST_CONTROLLER, homeassistant=HA)
    await probe.subscribe("homeassistant/#")
    paired = await request(
        probe,
        "pair",
        {"device_id": accessory.device_id, "setup_code": accessory.pin, "alias": "demo"},
    )
    assert paired["status"] == "ok", paired
    light_topic = f"homeassistant/light/{node(accessory, 2)}/lightbulb/config"
    sensor_topic = (
        f"homeassistant/sensor/{node(accessory, 3)}/temperature_sensor_current_temperature/config"
    )
    await probe.wait_message(light_topic, timeout=20)
    configs = await retained(probe, "homeassistant/#")
    light = json.loads(configs[light_topic])
    assert light["state_topic"] == "HomeKit/demo-2/Lightbulb/On"
    assert light["command_topic"] == "HomeKit/demo-2/Lightbulb/On/set"
    assert light["brightness_command_topic"] == "HomeKit/demo-2/Lightbulb/Brightness/set"
    assert light["device"]["name"] == "Demo Light"
    assert light["availability"][0] == {"topic": "HomeKit/demo-2/availability"}
    sensor = json.loads(configs[sensor_topic])
    assert sensor["device_class"] == "temperature" and sensor["unit_of_measurement"] == "°C"
    # Every topic Home Assistant reads holds a value, retained, for it to start from.
    state = await retained(probe, "HomeKit/#")
    assert state[sensor["state_topic"]] == b"21.5"
    assert state["HomeKit/demo-2/availability"] == b"online"

    # Home Assistant turns the light on at 40 %: the accessory gets exactly those writes.
    await probe.publish(light["command_topic"], light["payload_on"])
    await probe.publish(light["brightness_command_topic"], "40")

    async def writes() -> list[object]:
        return [w["value"] for w in await accessory.writes() if w["aid"] == 2]

    await wait_for(
        lambda: _equals(writes(), [True, 40]), message="Home Assistant's writes reached it"
    )

    # Home Assistant restarted and lost its retained configs: `online` brings them back.
    await probe.publish(light_topic, "", retain=True)
    assert light_topic not in await retained(probe, "homeassistant/#")
    await probe.publish("homeassistant/status", "online")
    await wait_for(
        lambda: _has(retained(probe, "homeassistant/#"), light_topic),
        message="discovery published again on homeassistant/status online",
    )

    # Unpaired: every entity goes (its config cleared), and nothing stays retained.
    unpaired = await request(probe, "unpair", {"alias": "demo"})
    assert unpaired["status"] == "ok", unpaired
    await wait_for(
        lambda: _empty(retained(probe, "homeassistant/#")), message="every config cleared"
    )
    cleared = {m.topic for m in probe.messages_on("homeassistant/+/+/+/config") if not m.payload}
    assert {light_topic, sensor_topic} <= cleared


async def _equals(values, expected) -> bool:
    return await values == expected


async def _has(configs, topic: str) -> bool:
    return topic in await configs


async def _empty(configs) -> bool:
    return not await configs


async def test_both_directions_on_do_not_mirror_the_bridges_own_accessories_back(
    make_bridge: Callable[..., BridgeProcess], accessory: AccessoryProcess, probe: MqttProbe
) -> None:
    """Publishing discovery for paired accessories and reading discovery as a source at once:
    the bridge's own configs must not come back as MQTT devices (a loop). They would after a
    restart: its configs are retained, and only its own live publications are not echoed."""
    bridge = make_bridge(
        controller=FAST_CONTROLLER,
        homeassistant=HA,
        sources=["homekit_topics", "homeassistant_discovery"],
    )
    await probe.subscribe("homeassistant/#")
    paired = await request(
        probe,
        "pair",
        {"device_id": accessory.device_id, "setup_code": accessory.pin, "alias": "demo"},
    )
    assert paired["status"] == "ok", paired
    await probe.wait_message(
        f"homeassistant/light/{node(accessory, 2)}/lightbulb/config", timeout=20
    )
    bridge.stop()
    bridge.start()
    # A discovered device of someone else's beside it is taken up as usual.
    await probe.publish(
        "homeassistant/switch/plug1/config",
        json.dumps({"name": "Plug", "unique_id": "plug1", "command_topic": "plug1/set",
                    "state_topic": "plug1/state", "device": {"identifiers": ["plug1"]}}),
        retain=True,
    )  # fmt: skip
    await probe.publish("plug1/state", "ON", retain=True)

    def catalogue() -> dict[str, dict[str, object]]:
        devices = probe.messages_on("HomeKit/bridge/devices")
        return {d["id"]: d for d in json.loads(devices[-1].payload)} if devices else {}

    await wait_for(lambda: "plug1" in catalogue(), timeout=10, message="plug1 discovered")
    # Every retained config of the bridge's own has been read by now (it came before).
    origins = {device_id: entry["origin"] for device_id, entry in catalogue().items()}
    assert [d for d, origin in origins.items() if origin == "mqtt"] == ["plug1"]
