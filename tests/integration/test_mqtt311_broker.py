"""Node-RED's own broker (Aedes) speaks MQTT 3.1.1 only: the bridge falls back from MQTT 5
by itself, and without no-local it still never takes its own publications as input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.accessories import aid_of, char_of
from tests.support.aedes import Aedes
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import MqttProbe

from .test_exposer_devices import accessories_with


@pytest.fixture
def aedes() -> Iterator[Aedes]:
    with Aedes() as broker:
        yield broker


async def test_bridge_works_with_a_311_only_broker(aedes: Aedes, tmp_path: Path) -> None:
    bridge = BridgeProcess(
        tmp_path / "bridge", aedes.port, devices={"TEST": {"command_topic": "same"}}
    )
    bridge.start()
    try:
        async with MqttProbe(aedes.host, aedes.port) as probe:
            await probe.subscribe("HomeKit/#")
            info = await probe.wait_message("HomeKit/bridge/info")
            assert json.loads(info.payload)["mqtt_protocol"] == "3.1.1"
            await probe.publish("HomeKit/TEST/Switch/On", "1")
            home = await HapClient.pair(
                bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code
            )
            try:
                accessories = await accessories_with(home, "TEST")
                aid = aid_of(accessories, "TEST")
                iid = char_of(accessories, aid, "49", "25")["iid"]
                await home.subscribe([(aid, iid)])
                assert await home.put([(aid, iid, False)]) == {(aid, iid): 0}
                # command_topic: same -> the bridge publishes on the state topic, which it
                # also subscribes to; on 3.1.1 it gets its own message back and must skip it.
                await probe.wait_message("HomeKit/TEST/Switch/On", lambda m: m.payload == b"0")
                await probe.publish("HomeKit/TEST/Switch/On", "1")  # the device's own change
                await home.wait_event(aid, iid, True, timeout=5)
                assert [e.value for e in home.events_for(aid, iid)] == [True]
                await probe.publish("HomeKit/marker", "x")
                await probe.wait_message("HomeKit/marker")
                state = [m.payload for m in probe.messages_on("HomeKit/TEST/Switch/On")]
                assert state == [b"1", b"0", b"1"]  # no echo loop
            finally:
                await home.close()
    finally:
        bridge.stop()
    assert "Broker refuses MQTT 5; using MQTT 3.1.1" in bridge.log()


async def test_own_echo_on_311_does_not_keep_a_silent_device_alive(
    aedes: Aedes, tmp_path: Path
) -> None:
    """On MQTT 3.1.1 (no no-local) the bridge gets its own `command_topic: same` publication
    back. Taken as device input it would refresh the device's last-seen time, and a Home app
    writing now and then would keep a dead device "available" for ever."""
    bridge = BridgeProcess(
        tmp_path / "bridge",
        aedes.port,
        devices={"TEST": {"command_topic": "same", "expire_after": 1.5}},
    )
    bridge.start()
    try:
        async with MqttProbe(aedes.host, aedes.port) as device:
            await device.publish("HomeKit/TEST/Switch/On", "1")  # its last word
        home = await HapClient.pair(
            bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code
        )
        try:
            accessories = await accessories_with(home, "TEST")
            aid = aid_of(accessories, "TEST")
            iid = char_of(accessories, aid, "49", "25")["iid"]
            statuses = []
            for value in [False, True] * 8:  # a write every 0.4 s for about 6 s
                statuses.append((await home.put([(aid, iid, value)]))[(aid, iid)])
                if statuses[-1] == -70402:
                    break
                await asyncio.sleep(0.4)
            assert statuses[0] == 0
            assert statuses[-1] == -70402, statuses  # it expired despite our own echoes
        finally:
            await home.close()
    finally:
        bridge.stop()
