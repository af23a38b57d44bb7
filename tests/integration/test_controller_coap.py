"""The controller side with a Thread accessory: HAP over CoAP (tests/peers/coap_accessory.py,
written from the protocol), paired and mirrored exactly like an IP one, following it when its
`_hap._udp` record moves it, and marking it offline while it does not answer."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mqtt_hk_bridge.controller.mirror import build
from mqtt_hk_bridge.controller.settings import ControllerSettings
from tests.peers.coap_accessory import CoapAccessory
from tests.support.controller_harness import FAST, ControllerHarness
from tests.support.fixtures import ACCESSORY_DATABASES
from tests.support.mosquitto import Mosquitto, MqttProbe
from tests.support.sockets import listening_tcp_ports
from tests.support.wait import wait_for

ALIAS = "bulb"
LIGHT = f"HomeKit/{ALIAS}/Lightbulb"
SENSOR = f"HomeKit/{ALIAS}/TemperatureSensor/CurrentTemperature"
COAP_TCP_PORT = 5683
# iids of the simulator's demo database (tests/peers/coap/database.py)
ON, BRIGHTNESS, TEMPERATURE = 50, 51, 66

#: No slow poll: a move must be followed on the zeroconf record alone, as with the default
#: poll of 300 s. aiohomekit gives up on an unanswered CoAP request after 16 s; a shorter
#: request timeout of ours notices a silent accessory sooner.
SETTINGS = ControllerSettings(**{**FAST.__dict__, "request_timeout": 2.0, "poll_interval": 0.0})
#: Over CoAP nothing is connected between requests: a silent or rebooted accessory shows at
#: the next request.
POLLING = ControllerSettings(**{**SETTINGS.__dict__, "poll_interval": 1.0})


@pytest.fixture
async def accessory() -> AsyncIterator[CoapAccessory]:
    async with CoapAccessory() as running:
        yield running


@pytest.fixture
async def probe(mosquitto: Mosquitto) -> AsyncIterator[MqttProbe]:
    async with mosquitto.probe() as client:
        await client.subscribe("HomeKit/#")
        yield client


async def pair(probe: MqttProbe, accessory: CoapAccessory, alias: str = ALIAS) -> None:
    await probe.publish(
        "HomeKit/bridge/request/pair",
        json.dumps(
            {"device_id": accessory.device_id, "setup_code": accessory.setup_code, "alias": alias}
        ),
    )
    response = await probe.wait_message("HomeKit/bridge/response/pair", timeout=30)
    assert json.loads(response.payload)["status"] == "ok", response.payload


async def wait_payload(probe: MqttProbe, topic: str, payload: bytes, timeout: float = 10) -> None:
    await probe.wait_message(topic, lambda m: m.payload == payload, timeout=timeout)


async def test_a_thread_accessory_is_paired_mirrored_and_written(
    accessory: CoapAccessory, mosquitto: Mosquitto, probe: MqttProbe, tmp_path: Path
) -> None:
    async with ControllerHarness(tmp_path / "data", mosquitto, settings=SETTINGS) as harness:
        asked = iter(range(100))

        async def discovered() -> dict[str, object] | None:
            transaction = f"t{next(asked)}"
            request = {"timeout": 0.5, "transaction": transaction}
            await probe.publish("HomeKit/bridge/request/discover", json.dumps(request))
            answer = await probe.wait_message(
                "HomeKit/bridge/response/discover",
                lambda m: json.loads(m.payload).get("transaction") == transaction,
            )
            found = json.loads(answer.payload)["data"]
            mine = [d for d in found if d["device_id"] == accessory.device_id.lower()]
            return mine[0] if mine else None

        listed = await wait_for(discovered, timeout=10, message="the bulb in discover")
        assert (listed["transport"], listed["paired"], listed["alias"]) == ("coap", False, None)

        await pair(probe, accessory)
        await wait_payload(probe, f"HomeKit/{ALIAS}/availability", b"online")
        await wait_payload(probe, f"{LIGHT}/On", b"0")
        await wait_payload(probe, f"{LIGHT}/Brightness", b"100")
        await wait_payload(probe, SENSOR, b"21.5")

        await probe.publish("HomeKit/bridge/request/list-pairings", "{}")
        listed = await probe.wait_message("HomeKit/bridge/response/list-pairings")
        [entry] = json.loads(listed.payload)["data"]
        assert entry["connection"] == "CoAP"
        assert entry["connected"] and entry["available"]

        # Events: a change on the device reaches MQTT without a poll.
        accessory.set_value(ON, True)
        await wait_payload(probe, f"{LIGHT}/On", b"1", timeout=5)

        # /set: written exactly once.
        await probe.publish(f"{LIGHT}/Brightness/set", "40")
        await wait_for(lambda: (1, BRIGHTNESS, 40) in accessory.writes, timeout=5)
        await wait_payload(probe, f"{LIGHT}/Brightness", b"40")
        assert accessory.writes.count((1, BRIGHTNESS, 40)) == 1
        assert harness.side.sessions[ALIAS].link.transport == "coap"
        # aiocoap would also listen for CoAP over TCP on every interface; the bridge keeps
        # its CoAP sessions to UDP.
        assert COAP_TCP_PORT not in listening_tcp_ports(os.getpid())


async def test_a_moved_accessory_is_followed_without_a_restart(
    accessory: CoapAccessory,
    mosquitto: Mosquitto,
    probe: MqttProbe,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mqtt_hk_bridge.controller")
    async with ControllerHarness(tmp_path / "data", mosquitto, settings=SETTINGS):
        await pair(probe, accessory)
        await wait_payload(probe, f"{LIGHT}/On", b"0")
        old_port = accessory.port

        # The border router restarted: the accessory answers at another endpoint only.
        await accessory.move(host="::ffff:127.0.0.2")
        accessory.set_value(BRIGHTNESS, 55)
        await wait_payload(probe, f"{LIGHT}/Brightness", b"55", timeout=10)
        moved = [r.getMessage() for r in caplog.records if "address changed" in r.getMessage()]
        new = ipaddress.ip_address("::ffff:127.0.0.2").compressed  # as zeroconf gives it
        assert moved == [
            f"{ALIAS}: address changed old=[::1]:{old_port} new=[{new}]:{accessory.port}"
        ]
        # And a /set goes to the new endpoint.
        await probe.publish(f"{LIGHT}/On/set", "1")
        await wait_for(lambda: (1, ON, True) in accessory.writes, timeout=10)


async def test_a_restart_uses_the_current_record_not_the_stored_address(
    accessory: CoapAccessory, mosquitto: Mosquitto, probe: MqttProbe, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    async with ControllerHarness(data_dir, mosquitto, settings=SETTINGS):
        await pair(probe, accessory)
        await wait_payload(probe, f"{LIGHT}/On", b"0")
    # Moved while the bridge was down.
    await accessory.move()
    accessory.set_value(BRIGHTNESS, 7)
    probe.messages.clear()
    async with ControllerHarness(data_dir, mosquitto, settings=SETTINGS):
        await wait_payload(probe, f"{LIGHT}/Brightness", b"7", timeout=15)
        await wait_payload(probe, f"HomeKit/{ALIAS}/availability", b"online")


async def test_a_rebooted_accessory_gets_a_fresh_session(
    accessory: CoapAccessory, mosquitto: Mosquitto, probe: MqttProbe, tmp_path: Path
) -> None:
    # A reboot on the same address announces nothing new: the next request (here the poll)
    # finds the old session refused.
    async with ControllerHarness(tmp_path / "data", mosquitto, settings=POLLING):
        await pair(probe, accessory)
        await wait_payload(probe, f"{LIGHT}/On", b"0")
        sessions = accessory.sessions_established

        await accessory.reboot()
        accessory.set_value(BRIGHTNESS, 12)  # nobody is subscribed after a reboot
        await wait_payload(probe, f"{LIGHT}/Brightness", b"12", timeout=15)
        assert accessory.sessions_established > sessions
        # Subscriptions were made again: a later change arrives as an event.
        accessory.set_value(ON, True)
        await wait_payload(probe, f"{LIGHT}/On", b"1", timeout=5)


async def test_a_silent_accessory_goes_offline_and_comes_back(
    accessory: CoapAccessory, mosquitto: Mosquitto, probe: MqttProbe, tmp_path: Path
) -> None:
    async with ControllerHarness(tmp_path / "data", mosquitto, settings=POLLING):
        await pair(probe, accessory)
        await wait_payload(probe, f"HomeKit/{ALIAS}/availability", b"online")

        await accessory.go_silent()
        await wait_payload(probe, f"HomeKit/{ALIAS}/availability", b"offline", timeout=15)
        await probe.publish(f"{LIGHT}/On/set", "1")
        await probe.wait_message(
            "HomeKit/bridge/event", lambda m: b"offline; not sent" in m.payload, timeout=5
        )

        await accessory.resume()
        await wait_payload(probe, f"HomeKit/{ALIAS}/availability", b"online", timeout=20)
        assert (1, ON, True) not in accessory.writes


async def test_the_nanoleaf_thread_bulb_mirrors_to_the_same_topics_as_over_ip(
    mosquitto: Mosquitto, probe: MqttProbe, tmp_path: Path
) -> None:
    recording = ACCESSORY_DATABASES / "nanoleaf_bulb.json"
    devices, _ = build(ALIAS, "HomeKit", json.loads(recording.read_text()))
    over_ip = sorted(char.topic for device in devices.values() for char in device.chars)
    async with (
        CoapAccessory.from_recording(recording) as accessory,
        ControllerHarness(tmp_path / "data", mosquitto, settings=SETTINGS) as harness,
    ):
        await pair(probe, accessory)
        await wait_payload(probe, f"HomeKit/{ALIAS}/availability", b"online")
        session = harness.side.sessions[ALIAS]
        over_coap = sorted(char.topic for char in session.mirror.by_id.values())
    assert over_coap == over_ip
    digest = hashlib.sha256("\n".join(over_coap).encode()).hexdigest()[:16]
    assert (len(over_coap), digest)[0] == 36
