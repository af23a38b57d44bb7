"""What the running bridge tells a newcomer: its log (ready, each device by name, pairings,
stop) and its bridge/ topics (a catalogue that does not go stale, requests that are not JSON).
"""

from __future__ import annotations

import json
import re

from tests.support.accessories import aid_of, char_of
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import MqttProbe
from tests.support.wait import wait_for

from .test_exposer_devices import accessories_with

LIGHTBULB, ON = "43", "25"


async def test_the_log_says_ready_names_each_new_device_and_says_stopped(
    bridge: BridgeProcess, probe: MqttProbe
) -> None:
    assert (
        f"Ready: HomeKit bridge 'Test Bridge' on port {bridge.hap_port} (listening on "
        "127.0.0.1, announced as 127.0.0.1), not paired yet (setup code on the terminal); "
        "0 MQTT device(s) shown, 0 HomeKit pairing(s); MQTT broker 127.0.0.1:"
    ) in bridge.logs()
    await probe.publish("HomeKit/esp1/TemperatureSensor/CurrentTemperature", "20")
    await wait_for(
        lambda: re.search(
            r"INFO mqtt_hk_bridge\.exposer\.devices: MQTT device esp1 added to the bridge as "
            r"'esp1' \(aid \d+\): TemperatureSensor$",
            bridge.logs(),
            re.MULTILINE,
        ),
        message="the new device named in the log",
    )
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    await home.close()
    await wait_for(lambda: "(admin)" in bridge.logs(), message="the pairing logged")
    assert re.search(r"Paired with controller [0-9A-Fa-f-]{36} \(admin\)$", bridge.logs(), re.M)
    assert "permissions b'" not in bridge.logs()  # HAP-python's raw-bytes record
    assert bridge.stop() == 0
    assert bridge.logs().rstrip().endswith("INFO mqtt_hk_bridge.app: Stopped")


async def test_bridge_devices_names_the_live_topic_instead_of_a_stale_value(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    await probe.publish("HomeKit/tasmota-1/Lightbulb/On", "ON", retain=True)
    await probe.wait_message("HomeKit/bridge/devices", lambda m: b"tasmota-1" in m.payload)
    await probe.publish("HomeKit/tasmota-1/Lightbulb/On", "OFF", retain=True)

    async def read_false() -> bool:
        accessories = await accessories_with(home, "tasmota-1")
        aid = aid_of(accessories, "tasmota-1")
        return char_of(accessories, aid, LIGHTBULB, ON)["value"] is False

    await wait_for(read_false, message="a HAP read says false")
    [catalogue] = [json.loads(m.payload) for m in probe.messages_on("HomeKit/bridge/devices")[-1:]]
    [device] = [entry for entry in catalogue if entry["id"] == "tasmota-1"]
    [service] = device["services"]
    [on] = service["characteristics"]
    assert "value" not in on  # a copy would still say true
    assert on["topic"] == "HomeKit/tasmota-1/Lightbulb/On"


async def test_a_request_that_is_not_json_is_answered_in_plain_words(
    bridge: BridgeProcess, probe: MqttProbe
) -> None:
    await probe.publish("HomeKit/bridge/request/list-pairings", "hello")
    answer = await probe.wait_message("HomeKit/bridge/response/list-pairings")
    body = json.loads(answer.payload)
    assert body["status"] == "error"
    assert body["error"].startswith("request payload is not JSON (got 'hello')")
    assert "Expecting value" not in body["error"]
