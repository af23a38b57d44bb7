"""The broker goes away and comes back: the bridge reconnects by
itself, says `online` again, republishes its retained topics (state, info, catalogue, the
mirrored accessories, Home Assistant discovery), and the Home app keeps its accessories and
values throughout."""

from __future__ import annotations

import json

from tests.support.accessories import aid_of, char_of
from tests.support.bridge_api import request
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import MqttProbe
from tests.support.wait import wait_for

from .test_exposer_devices import accessories_with


async def test_broker_restart_reconnects_and_republishes(make_mosquitto, tmp_path) -> None:
    broker = make_mosquitto()  # not persistent: the restarted broker has lost everything
    bridge = BridgeProcess(tmp_path / "bridge", broker.port)
    bridge.start()
    try:
        async with MqttProbe(broker.host, broker.port) as device:
            await device.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "20")
        home = await HapClient.pair(
            bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code
        )
        accessories = await accessories_with(home, "esp")
        aid = aid_of(accessories, "esp")
        iid = char_of(accessories, aid, "8A", "11")["iid"]
        await home.subscribe([(aid, iid)])

        broker.stop()
        assert await home.read(aid, iid) == 20  # HAP carries on without the broker
        broker.start()
        async with MqttProbe(broker.host, broker.port) as late:
            await late.subscribe("HomeKit/bridge/#")
            await late.wait_message(
                "HomeKit/bridge/state", lambda m: m.payload == b"online", timeout=15
            )
            await late.wait_message("HomeKit/bridge/devices")
        async with MqttProbe(broker.host, broker.port) as later:
            # What a Node-RED flow that starts now finds retained on the new broker:
            await later.subscribe("HomeKit/bridge/#")
            state = await later.wait_message("HomeKit/bridge/state")
            assert state.payload == b"online" and state.retain
            devices = await later.wait_message("HomeKit/bridge/devices")
            assert [d["id"] for d in json.loads(devices.payload)] == ["esp"]
            assert devices.retain
            await later.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "21")
            await home.wait_event(aid, iid, 21, timeout=5)
        assert [e.value for e in home.events_for(aid, iid)] == [21]  # no spurious events
        await home.close()
    finally:
        bridge.stop()


async def test_bridge_started_without_broker_connects_when_it_comes(
    make_mosquitto, tmp_path
) -> None:
    broker = make_mosquitto()
    broker.stop()
    bridge = BridgeProcess(tmp_path / "bridge", broker.port)
    bridge.start(expect_mqtt=False)
    try:
        await wait_for(lambda: "MQTT connection" in bridge.log(), message="a failed attempt")
        broker.start()
        await wait_for(
            lambda: "Connected to MQTT broker" in bridge.log(), timeout=15, message="connected"
        )
        async with MqttProbe(broker.host, broker.port) as probe:
            await probe.subscribe("HomeKit/bridge/state")
            await probe.wait_message("HomeKit/bridge/state", lambda m: m.payload == b"online")
        attempts = bridge.log().count("MQTT connection to")
        assert attempts <= 10, f"{attempts} connection attempts: backoff is not working"
    finally:
        bridge.stop()


async def test_a_broker_that_lost_everything_gets_every_retained_topic_back(
    make_mosquitto, tmp_path, accessory
) -> None:
    """After a reconnect the bridge republishes its state, info, catalogue, the mirrored
    accessories and their Home Assistant discovery, whatever the broker lost."""
    broker = make_mosquitto()  # not persistent: the restarted broker has lost everything
    bridge = BridgeProcess(
        tmp_path / "bridge",
        broker.port,
        controller={"reconnect_min": 0.2, "reconnect_max": 1.0, "poll_interval": 0},
        homeassistant={"discovery": True},
    )
    bridge.start()
    light_config = f"homeassistant/light/hk_{accessory.device_id.replace(':', '').lower()}_2"
    expected = {
        "HomeKit/bridge/state",
        "HomeKit/bridge/info",
        "HomeKit/bridge/devices",
        "HomeKit/demo-2/availability",
        "HomeKit/demo-2/Lightbulb/On",
        "HomeKit/demo-3/TemperatureSensor/CurrentTemperature",
        f"{light_config}/lightbulb/config",
    }
    try:
        async with MqttProbe(broker.host, broker.port) as probe:
            await probe.subscribe("HomeKit/#")
            await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "20")
            paired = await request(
                probe,
                "pair",
                {"device_id": accessory.device_id, "setup_code": accessory.pin, "alias": "demo"},
            )
            assert paired["status"] == "ok", paired
            await wait_for(
                lambda: _retained_now(broker, expected),
                timeout=20,
                interval=0.3,
                message="all retained",
            )
        broker.stop()
        broker.start()
        retained = await wait_for(
            lambda: _retained_now(broker, expected),
            timeout=30,
            interval=0.3,
            message="every retained topic back on the new broker",
        )
        assert retained["HomeKit/bridge/state"] == b"online"
        assert json.loads(retained["HomeKit/bridge/info"])["hap_port"] == bridge.hap_port
        devices = {d["id"] for d in json.loads(retained["HomeKit/bridge/devices"])}
        assert {"esp", "demo", "demo-2", "demo-3"} <= devices
        assert retained["HomeKit/demo-3/TemperatureSensor/CurrentTemperature"] == b"21.5"
    finally:
        bridge.stop()


async def _retained_now(broker, topics: set[str]) -> dict[str, bytes] | None:
    """The retained payloads of `topics` a client subscribing now gets, if it gets them all."""
    async with MqttProbe(broker.host, broker.port) as late:
        for pattern in ("HomeKit/#", "homeassistant/#"):
            await late.subscribe(pattern)
        await late.publish("marker/retained", "x")
        await late.subscribe("marker/retained")
        await late.publish("marker/retained", "y")
        await late.wait_message("marker/retained")
        found = {m.topic: m.payload for m in late.messages if m.retain and m.payload}
    return found if topics <= set(found) else None
