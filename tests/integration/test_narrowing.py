"""What a device can do narrows what the Home app offers: a Zigbee2MQTT radiator valve
announced by discovery with modes off and heat, 5-30 °C in 0.5 steps."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.support.accessories import aid_of, char_of
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import MqttProbe
from tests.support.wait import wait_for

THERMOSTAT, TARGET_MODE, TARGET_TEMPERATURE = "4A", "33", "35"
DEVICE = "zigbee2mqtt_0xa4c1380a5b6c7d8e"
STATE = "zigbee2mqtt/Radiator"
VALVE = {
    "name": None,
    "uniq_id": "0xa4c1380a5b6c7d8e_climate_zigbee2mqtt",
    "dev": {"ids": [DEVICE], "name": "Radiator", "mf": "TuYa", "mdl": "TS0601_thermostat"},
    "curr_temp_t": STATE,
    "curr_temp_tpl": "{{ value_json.local_temperature }}",
    "temp_stat_t": STATE,
    "temp_stat_tpl": "{{ value_json.current_heating_setpoint }}",
    "temp_cmd_t": f"{STATE}/set/current_heating_setpoint",
    "mode_stat_t": STATE,
    "mode_stat_tpl": "{{ value_json.system_mode }}",
    "mode_cmd_t": f"{STATE}/set/system_mode",
    "modes": ["off", "heat"],
    "min_temp": "5",
    "max_temp": "30",
    "temp_step": 0.5,
}


async def paired(bridge: BridgeProcess) -> HapClient:
    return await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)


async def shown(home: HapClient) -> tuple[int, dict[str, Any], dict[str, Any]]:
    async def find() -> tuple[int, dict[str, Any], dict[str, Any]] | None:
        accessories = await home.list_accessories()
        try:
            aid = aid_of(accessories, DEVICE)
            mode = char_of(accessories, aid, THERMOSTAT, TARGET_MODE)
            target = char_of(accessories, aid, THERMOSTAT, TARGET_TEMPERATURE)
        except AssertionError:
            return None
        return (aid, mode, target) if mode.get("value") == 1 else None

    return await wait_for(find, timeout=15, message="the valve in /accessories, heating")


async def test_a_heating_only_valve_offers_only_off_and_heat_and_its_range(
    make_bridge, probe: MqttProbe
) -> None:
    bridge: BridgeProcess = make_bridge(sources=["homekit_topics", "homeassistant_discovery"])
    await probe.subscribe(f"{STATE}/set/#")
    await probe.publish(f"homeassistant/climate/{DEVICE}/climate/config", json.dumps(VALVE), True)
    state = {"local_temperature": 19.5, "current_heating_setpoint": 21, "system_mode": "heat"}
    home = await paired(bridge)
    try:
        for _ in range(20):  # the bridge subscribes once the config has arrived
            await probe.publish(STATE, json.dumps(state))
            try:
                aid, mode, target = await asyncio.wait_for(shown(home), 0.5)
                break
            except (AssertionError, TimeoutError):
                continue
        else:
            raise AssertionError("the valve never reached the Home app")
        assert mode["valid-values"] == [0, 1]
        # Never wider than HomeKit's 10-38 °C: 5 °C stays HomeKit's 10.
        assert (target["minValue"], target["maxValue"], target["minStep"]) == (10, 30, 0.5)
        assert target["value"] == 21

        # Cool is refused by the accessory itself; nothing goes to the valve.
        refused = await home.put([(aid, mode["iid"], 2)])
        assert refused[(aid, mode["iid"])] != 0
        assert await home.put([(aid, mode["iid"], 0)]) == {(aid, mode["iid"]): 0}
        command = await probe.wait_message(f"{STATE}/set/system_mode")
        assert command.payload == b"off"
        assert [m.payload for m in probe.messages_on(f"{STATE}/set/system_mode")] == [b"off"]
    finally:
        await home.close()

    # A restart shows the same database before discovery speaks again: no new c#.
    assert bridge.stop() == 0
    probe.messages.clear()
    bridge.start()
    await probe.wait_message(
        "HomeKit/bridge/devices", lambda m: DEVICE.encode() in m.payload and m.retain is False
    )
    await asyncio.sleep(1.0)  # past config_debounce (0.2 s): a bump would be logged by now
    assert "Accessory database changed" not in bridge.logs(), bridge.logs()
