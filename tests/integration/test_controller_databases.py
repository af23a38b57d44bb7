"""Every recorded accessory database, served by a real HAP-python peer, paired and mirrored
by the controller side over the whole path (aiohomekit -> mirror -> Mosquitto)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mqtt_hk_bridge.controller.mirror import build
from tests.support.accessory_process import AccessoryProcess
from tests.support.controller_harness import ControllerHarness
from tests.support.fixtures import ACCESSORY_DATABASES, DATABASE_FILES
from tests.support.mosquitto import Mosquitto
from tests.support.wait import wait_for

DATABASES = ACCESSORY_DATABASES
NAMES = [path.stem for path in DATABASE_FILES]


@pytest.mark.parametrize("name", NAMES)
async def test_database_is_mirrored(name: str, tmp_path: Path, mosquitto: Mosquitto) -> None:
    database = json.loads((DATABASES / f"{name}.json").read_text())
    devices, values = build("dev", "HomeKit", database)
    readable = {
        char.topic
        for device in devices.values()
        for char in device.chars
        if char.info.readable and values.get(char.char_id) is not None
    }
    every_topic = {char.topic for device in devices.values() for char in device.chars}
    async with (
        AccessoryProcess(tmp_path, database=DATABASES / f"{name}.json") as peer,
        mosquitto.probe() as probe,
        ControllerHarness(tmp_path / "data", mosquitto) as harness,
    ):
        await probe.subscribe("HomeKit/#")
        await probe.publish(
            "HomeKit/bridge/request/pair",
            json.dumps({"device_id": peer.device_id, "setup_code": peer.pin, "alias": "dev"}),
        )
        response = await probe.wait_message("HomeKit/bridge/response/pair", timeout=30)
        assert json.loads(response.payload)["status"] == "ok", response.payload
        for device_id in devices:
            await probe.wait_message(
                f"HomeKit/{device_id}/availability", lambda m: m.payload == b"online", timeout=20
            )
        session = harness.side.sessions["dev"]
        assert set(session.mirror.devices) == set(devices)

        def published() -> set[str]:
            return {
                m.topic
                for m in probe.messages
                if m.topic.startswith("HomeKit/dev") and not m.topic.endswith("/availability")
            }

        await wait_for(
            lambda: readable <= published(),
            timeout=10,
            message=f"{name}: every readable value on MQTT",
        )
        assert published() <= every_topic
        # The same database maps to the same topics every time (built from the peer's copy).
        served = {char.topic for char in session.mirror.by_id.values()}
        assert served == every_topic
