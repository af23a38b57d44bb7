"""Sensors that only ever say ON (a PIR, an RF door or motion sensor behind a Tasmota RF
bridge): Home Assistant's `off_delay` from discovery, and `off_delay` of a mapped
characteristic, turn them off in the Home app once they have been quiet that long."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tests.support.accessories import aid_of, char_of
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import MqttProbe
from tests.support.wait import wait_for

MOTION_SENSOR, MOTION_DETECTED = "85", "22"
CONTACT_SENSOR, CONTACT_STATE = "80", "6A"
SOURCES = {"sources": ["homekit_topics", "homeassistant_discovery"]}
#: What a Tasmota RF bridge publishes for each code it receives (tele/<topic>/RESULT).
RF_TOPIC = "tele/rfbridge/RESULT"


def rf_code(data: str) -> str:
    return json.dumps(
        {
            "Time": "2026-12-07T09:15:02",
            "RfReceived": {"Sync": 12120, "Low": 400, "High": 1180, "Data": data, "RfKey": "None"},
        }
    )


async def paired(bridge: BridgeProcess) -> HapClient:
    return await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)


async def char_iid(home: HapClient, device_id: str, service: str, char: str) -> tuple[int, int]:
    async def find() -> tuple[int, int] | None:
        accessories: list[Any] = await home.list_accessories()
        try:
            aid = aid_of(accessories, device_id)
            return aid, int(char_of(accessories, aid, service, char)["iid"])
        except AssertionError:
            return None

    return await wait_for(find, timeout=15, message=f"{device_id} in /accessories")


async def test_a_discovered_motion_sensor_turns_off_after_its_off_delay(
    make_bridge, probe: MqttProbe
) -> None:
    bridge = make_bridge(**SOURCES)
    config = {
        "name": "Hall PIR",
        "stat_t": "rf/hall_pir",
        "dev_cla": "motion",
        "off_dly": 2,
        "uniq_id": "rf_hall_pir",
        "dev": {"ids": ["rf_hall_pir"], "name": "Hall PIR"},
    }
    topic = "homeassistant/binary_sensor/hall_pir/config"
    await probe.publish(topic, json.dumps(config), retain=True)
    # Bound (subscribed) once the catalogue lists it, waiting for its first state.
    await wait_for(lambda: catalogue_entry(probe, "rf_hall_pir"), message="rf_hall_pir bound")
    loop = asyncio.get_running_loop()
    first_on = loop.time()
    await probe.publish("rf/hall_pir", "ON")
    home = await paired(bridge)
    try:
        aid, iid = await char_iid(home, "rf_hall_pir", MOTION_SENSOR, MOTION_DETECTED)
        await home.subscribe([(aid, iid)])
        assert await home.read(aid, iid) is True
        # Motion again before the delay is over: the sensor stays on, counted from then.
        await asyncio.sleep(first_on + 1.2 - loop.time())
        await probe.publish("rf/hall_pir", "ON")
        again = time.monotonic()
        await asyncio.sleep(1.2)
        assert await home.read(aid, iid) is True  # past the first ON's 2 s
        off = await home.wait_event(aid, iid, False, timeout=10)
        assert off.at - again >= 1.8
        entry = catalogue_entry(probe, "rf_hall_pir")
        assert entry is not None
        [motion] = [
            char
            for char in entry["mapping"]["characteristics"]
            if char["characteristic"] == "MotionSensor/MotionDetected"
        ]
        assert motion["off_delay"] == 2
    finally:
        await home.close()


async def test_a_mapped_rf_sensor_turns_off_after_its_off_delay_also_across_a_restart(
    make_bridge, probe: MqttProbe
) -> None:
    devices = {
        "hall_door": {
            "services": [
                {
                    "type": "ContactSensor",
                    "characteristics": {
                        "ContactSensorState": {
                            "state_topic": RF_TOPIC,
                            "json_path": "$.RfReceived.Data",
                            "values": {"E5D80E": 1},
                            "off_delay": "3s",
                        }
                    },
                }
            ]
        }
    }
    bridge: BridgeProcess = make_bridge(devices=devices)
    await probe.publish(RF_TOPIC, rf_code("E5D80E"))
    home = await paired(bridge)
    try:
        aid, iid = await char_iid(home, "hall_door", CONTACT_SENSOR, CONTACT_STATE)
        assert await home.read(aid, iid) == 1
    finally:
        await home.close()
    # Stopped while open: the remembered state returns to closed after a restart too.
    assert bridge.stop() == 0
    bridge.start()
    home = HapClient.from_pairing_data(home.pairing_data)
    try:
        await home.connect()
        assert await home.read(aid, iid) == 1
        await home.subscribe([(aid, iid)])
        await home.wait_event(aid, iid, 0, timeout=10)
    finally:
        await home.close()


def catalogue_entry(probe: MqttProbe, device_id: str) -> dict[str, Any] | None:
    found = probe.messages_on("HomeKit/bridge/devices")
    entries = json.loads(found[-1].payload) if found else []
    return next((entry for entry in entries if entry["id"] == device_id), None)


async def test_rf_sensors_sharing_the_rf_bridges_topic_each_take_their_own_codes(
    make_bridge, probe: MqttProbe
) -> None:
    def rf_sensor(kind: str, char: str, code: str, on: object) -> dict[str, Any]:
        reading = {
            "state_topic": RF_TOPIC,
            "json_path": "$.RfReceived.Data",
            "values": {code: on},
            "off_delay": 30,
            "ignore_unmatched": True,
        }
        return {"services": [{"type": kind, "characteristics": {char: reading}}]}

    devices = {
        "hall_door": rf_sensor("ContactSensor", "ContactSensorState", "E5D80E", 1),
        "hall_pir": rf_sensor("MotionSensor", "MotionDetected", "A1B2C3", True),
    }
    bridge: BridgeProcess = make_bridge(devices=devices)
    home = await paired(bridge)
    try:
        await probe.publish(RF_TOPIC, rf_code("A1B2C3"))
        aid, iid = await char_iid(home, "hall_pir", MOTION_SENSOR, MOTION_DETECTED)
        assert await home.read(aid, iid) is True
        # An unknown remote's code and the bridge's answer to a command, then the door's.
        await probe.publish(RF_TOPIC, rf_code("FFFFFF"))
        await probe.publish(RF_TOPIC, json.dumps({"RfRaw": {"Data": "AAA055"}}))
        await probe.publish(RF_TOPIC, rf_code("E5D80E"))
        door = await char_iid(home, "hall_door", CONTACT_SENSOR, CONTACT_STATE)
        assert await home.read(*door) == 1
        assert await home.read(aid, iid) is True
        # Anything the bridge said about those messages is out before its answer to this.
        await probe.publish("HomeKit/bridge/request/info", "{}")
        await probe.wait_message("HomeKit/bridge/response/info")
        assert probe.messages_on("HomeKit/bridge/event") == []
    finally:
        await home.close()
