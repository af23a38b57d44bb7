"""Two bridge processes on one broker, each with its own data dir, splitting the devices
between them with `device_filter`; the second names its own topics with `instance`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import Mosquitto, MqttProbe
from tests.support.wait import wait_for

from .test_many_bridges import serials

#: One mapping section both processes read: each shows only the devices its filter takes.
MAPPED = {
    f"{device}_plug": {
        "services": [
            {
                "type": "Outlet",
                "characteristics": {
                    "On": {"state_topic": f"plugs/{device}", "values": {"ON": True, "OFF": False}},
                    "OutletInUse": {"value": True},
                },
            }
        ]
    }
    for device in ("kitchen", "hall")
}
DOWNSTAIRS = {"kitchen_1", "kitchen_2", "kitchen_plug"}
UPSTAIRS = {"hall_1", "hall_2", "hall_plug"}


def catalogue(probe: MqttProbe, topic: str) -> dict[str, Any]:
    messages = probe.messages_on(topic)
    return {} if not messages else {d["id"]: d for d in json.loads(messages[-1].payload)}


async def shows(probe: MqttProbe, topic: str, expected: set[str]) -> dict[str, Any]:
    def listed() -> dict[str, Any] | None:
        entries = catalogue(probe, topic)
        shown = {d for d, entry in entries.items() if entry["aid"] is not None}
        return entries if shown == expected else None

    return await wait_for(listed, timeout=15, message=f"{sorted(expected)} on {topic}")


async def answer(probe: MqttProbe, prefix: str, transaction: str) -> list[dict[str, Any]]:
    await probe.publish(f"{prefix}/request/info", json.dumps({"transaction": transaction}))

    def answers() -> list[dict[str, Any]]:
        return [
            json.loads(m.payload)
            for m in probe.messages_on("HomeKit/bridge/#")
            if m.topic.endswith("/response/info")
            and json.loads(m.payload).get("transaction") == transaction
        ]

    await wait_for(answers, message=f"an answer on {prefix}")
    return answers()


async def test_two_processes_split_one_brokers_devices(
    make_bridge: Callable[..., BridgeProcess], mosquitto: Mosquitto
) -> None:
    async with MqttProbe(mosquitto.host, mosquitto.port) as probe:
        await probe.subscribe("HomeKit/bridge/#")
        for device in ("kitchen_1", "kitchen_2", "hall_1", "hall_2"):
            await probe.publish(
                f"HomeKit/{device}/TemperatureSensor/CurrentTemperature", "20", retain=True
            )
        for device in ("kitchen", "hall"):
            await probe.publish(f"plugs/{device}", "ON", retain=True)

        downstairs = make_bridge(devices=MAPPED, device_filter={"include": ["kitchen_*"]})
        upstairs = make_bridge(
            devices=MAPPED, device_filter={"exclude": ["kitchen_*"]}, instance="upstairs"
        )
        await shows(probe, "HomeKit/bridge/devices", DOWNSTAIRS)
        await shows(probe, "HomeKit/bridge/upstairs/devices", UPSTAIRS)

        # Each Home app sees its process's devices, and no device is on both.
        seen = {}
        for bridge in (downstairs, upstairs):
            home = await HapClient.pair(
                bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code
            )
            try:
                seen[bridge] = set(serials(await home.list_accessories()))
            finally:
                await home.close()
        assert seen == {downstairs: DOWNSTAIRS, upstairs: UPSTAIRS}

        # Devices that appear later go to the process that takes them, and only there (in
        # this order, each process's last device comes after the other's: once it is shown,
        # the other's was read and left alone).
        for device in ("kitchen_3", "hall_3", "kitchen_4", "hall_4"):
            await probe.publish(f"HomeKit/{device}/Switch/On", "1", retain=True)
        await shows(probe, "HomeKit/bridge/devices", DOWNSTAIRS | {"kitchen_3", "kitchen_4"})
        await shows(probe, "HomeKit/bridge/upstairs/devices", UPSTAIRS | {"hall_3", "hall_4"})

        # Each process answers its own requests only. The upstairs answer comes after the
        # one request it must ignore, on the same connection: by then a wrong answer is in.
        first = await answer(probe, "HomeKit/bridge", "down")
        second = await answer(probe, "HomeKit/bridge/upstairs", "up")
        assert [a["data"]["hap_port"] for a in first] == [downstairs.hap_port]
        assert [a["data"]["hap_port"] for a in second] == [upstairs.hap_port]
        assert len(probe.messages_on("HomeKit/bridge/response/info")) == 1

        # Each has its own state topic (its Last Will): one stopping leaves the other online.
        upstairs.stop()
        await probe.wait_message("HomeKit/bridge/upstairs/state", lambda m: m.payload == b"offline")
        assert probe.messages_on("HomeKit/bridge/state")[-1].payload == b"online"

        # A narrower filter at the next start: remembered devices it leaves out are gone.
        downstairs.stop()
        downstairs.config["device_filter"] = {"include": ["kitchen_1", "kitchen_plug"]}
        downstairs.start()
        await shows(probe, "HomeKit/bridge/devices", {"kitchen_1", "kitchen_plug"})
