"""Home Assistant's `expire_after` from discovery: a sensor silent that long shows "No
Response" in the Home app (an ESPHome or Tasmota sensor whose battery died), unless
bridge.yaml says otherwise for that device."""

from __future__ import annotations

import json
from typing import Any

from tests.support.accessories import aid_of, char_of
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import MqttProbe
from tests.support.wait import wait_for

TEMPERATURE_SENSOR, CURRENT_TEMPERATURE = "8A", "11"
NO_RESPONSE = -70402


def sensor(device_id: str) -> dict[str, Any]:
    return {
        "name": "Temperature",
        "stat_t": f"{device_id}/sensor/temperature/state",
        "dev_cla": "temperature",
        "unit_of_meas": "°C",
        "exp_aft": 2,
        "uniq_id": f"{device_id}_temperature",
        "dev": {"ids": [device_id], "name": device_id, "mf": "espressif", "mdl": "esp32dev"},
    }


def catalogue(probe: MqttProbe) -> dict[str, Any]:
    found = probe.messages_on("HomeKit/bridge/devices")
    return {entry["id"]: entry for entry in json.loads(found[-1].payload)} if found else {}


async def temperature(home: HapClient, device_id: str) -> tuple[int, int]:
    async def find() -> tuple[int, int] | None:
        accessories = await home.list_accessories()
        try:
            aid = aid_of(accessories, device_id)
            return aid, int(
                char_of(accessories, aid, TEMPERATURE_SENSOR, CURRENT_TEMPERATURE)["iid"]
            )
        except AssertionError:
            return None

    return await wait_for(find, timeout=15, message=f"{device_id} in /accessories")


async def status(home: HapClient, aid: int, iid: int) -> int:
    return int((await home.get([(aid, iid)]))[(aid, iid)].get("status", 0))


async def test_a_silent_discovered_sensor_shows_no_response_after_its_expire_after(
    make_bridge, probe: MqttProbe
) -> None:
    # Both announce expire_after 2 s; bridge.yaml gives the second one a minute.
    bridge: BridgeProcess = make_bridge(
        sources=["homekit_topics", "homeassistant_discovery"],
        devices={"garden": {"expire_after": 60}},
    )
    for device_id in ("attic", "garden"):
        topic = f"homeassistant/sensor/{device_id}/temperature/config"
        await probe.publish(topic, json.dumps(sensor(device_id)), retain=True)
    await wait_for(lambda: {"attic", "garden"} <= set(catalogue(probe)), message="both bound")
    for device_id in ("attic", "garden"):
        await probe.publish(f"{device_id}/sensor/temperature/state", "21.5")
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        attic = await temperature(home, "attic")
        garden = await temperature(home, "garden")
        assert await home.read(*attic) == 21.5

        async def attic_silent() -> bool:
            return await status(home, *attic) == NO_RESPONSE

        await wait_for(attic_silent, timeout=10, message="attic No Response")
        await wait_for(
            lambda: catalogue(probe)["attic"]["available"] is False, message="catalogue says so"
        )
        assert await status(home, *garden) == 0  # its own minute, not discovery's 2 s
        assert catalogue(probe)["attic"]["mapping"]["expire_after"] == 2

        await probe.publish("attic/sensor/temperature/state", "19.0")

        async def attic_back() -> bool:
            return await status(home, *attic) == 0 and await home.read(*attic) == 19.0

        await wait_for(attic_back, timeout=10, message="attic back")
    finally:
        await home.close()
