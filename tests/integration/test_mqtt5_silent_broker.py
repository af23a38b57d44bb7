"""A broker that never answers an MQTT 5 CONNECT (RabbitMQ's MQTT plugin before 3.13 logs
"cannot parse a frame" and says nothing): with the default `mqtt.protocol: auto` the bridge
falls back to MQTT 3.1.1 after one wait for the CONNACK, says so once, and uses 3.1.1 from
then on: on a reconnect, after a restart, and when the broker refuses a 3.1.1 login."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.mqtt311_silent_broker import MQTT_5, MQTT_311, SilentMqtt5Broker
from tests.support.accessories import aid_of, char_of
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import MqttProbe
from tests.support.wait import wait_for

from .test_exposer_devices import accessories_with

#: The bridge waits 10 s for a CONNACK; then 3.1.1 must follow at once.
CONNECT_BOUND = 10.0 + 8.0
FALLBACK_LINE = "gave no answer to an MQTT 5 CONNECT"
CONNECTED_LINE = "Connected to MQTT broker"
#: Where the bridge keeps the protocol a broker needs across restarts.
PROTOCOL_FILE = "mqtt-protocol.json"
#: 3.1.1 CONNACK return code 5: not authorised.
NOT_AUTHORISED = 5
#: The bridge's client id, to tell its connects from the test client's.
BRIDGE_ID = "hk-bridge-under-test"


def bridge_on(broker: SilentMqtt5Broker, directory: Path) -> BridgeProcess:
    return BridgeProcess(directory, broker.port, mqtt={"client_id": BRIDGE_ID})


@pytest.fixture
def broker() -> Iterator[SilentMqtt5Broker]:
    with SilentMqtt5Broker() as running:
        yield running


async def test_the_bridge_falls_back_to_311_and_keeps_it(
    broker: SilentMqtt5Broker, tmp_path: Path
) -> None:
    bridge = bridge_on(broker, tmp_path / "bridge")
    bridge.start(timeout=CONNECT_BOUND)  # fails without the fallback: MQTT 5 for ever
    try:
        assert broker.levels_of(BRIDGE_ID) == [MQTT_5, MQTT_311]
        # The unanswered MQTT 5 connection is not left open at the broker.
        await wait_for(lambda: broker.open_connections == 1, message="one connection")
        async with MqttProbe(broker.host, broker.port) as probe:
            # Exact topics: this broker, like RabbitMQ, sends no retained message to a wildcard.
            await probe.subscribe("HomeKit/bridge/state")
            await probe.wait_message("HomeKit/bridge/state", lambda m: m.payload == b"online")
            await probe.subscribe("HomeKit/bridge/info")
            info = await probe.wait_message("HomeKit/bridge/info")
            assert json.loads(info.payload)["mqtt_protocol"] == "3.1.1"

            await probe.subscribe("HomeKit/TEST/Switch/On/set")
            await probe.publish("HomeKit/TEST/Switch/On", "1")
            home = await HapClient.pair(
                bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code
            )
            try:
                accessories = await accessories_with(home, "TEST")
                aid = aid_of(accessories, "TEST")
                iid = char_of(accessories, aid, "49", "25")["iid"]
                assert (await home.get([(aid, iid)]))[(aid, iid)]["value"] is True
                assert await home.put([(aid, iid, False)]) == {(aid, iid): 0}
                await probe.wait_message("HomeKit/TEST/Switch/On/set", lambda m: m.payload == b"0")
            finally:
                await home.close()
        assert bridge.log().count(FALLBACK_LINE) == 1
        assert (bridge.data_dir / PROTOCOL_FILE).exists()

        broker.drop_connections()  # the broker restarts: the bridge reconnects with 3.1.1
        await wait_for(
            lambda: bridge.log().count(CONNECTED_LINE) == 2, timeout=10, message="a reconnect"
        )
        assert broker.levels_of(BRIDGE_ID) == [MQTT_5, MQTT_311, MQTT_311]

        bridge.stop()
        bridge.start(timeout=CONNECT_BOUND)  # remembered in data_dir: 3.1.1 first
        assert broker.levels_of(BRIDGE_ID) == [MQTT_5, MQTT_311, MQTT_311, MQTT_311]
        assert FALLBACK_LINE not in bridge.log()
        assert "Using MQTT 3.1.1 first" in bridge.log()
    finally:
        bridge.stop()


async def test_a_refused_311_login_does_not_send_the_bridge_back_to_mqtt5(
    broker: SilentMqtt5Broker, tmp_path: Path
) -> None:
    """The broker answered in 3.1.1: that is its protocol, whatever it thought of the login."""
    broker.refuse_code = NOT_AUTHORISED
    bridge = bridge_on(broker, tmp_path / "bridge")
    bridge.start(expect_mqtt=False)
    try:
        await wait_for(
            lambda: len(broker.levels_of(BRIDGE_ID)) >= 4,
            timeout=CONNECT_BOUND + 10,
            message="four connect attempts",
        )
        assert broker.levels_of(BRIDGE_ID)[:4] == [MQTT_5, MQTT_311, MQTT_311, MQTT_311]
        broker.refuse_code = None  # the login is fixed on the broker
        await wait_for(lambda: CONNECTED_LINE in bridge.log(), timeout=10, message="connected")
        assert MQTT_5 not in broker.levels_of(BRIDGE_ID)[1:]
        log = bridge.log()
        assert log.count(FALLBACK_LINE) == 1
        assert log.count("failed: the broker requires a login") == 1  # then at DEBUG only
    finally:
        bridge.stop()
