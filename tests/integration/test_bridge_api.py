"""The request API of a real bridge process on a real Mosquitto, as a Node-RED flow uses it:
each action, and each malformed form refused with the field named and nothing changed.
(Pairing actions against a real accessory: test_controller_api.py.)"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tests.support.accessories import aid_of, char_of
from tests.support.bridge_api import request
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import MqttProbe
from tests.support.wait import wait_for

from .test_exposer_devices import accessories_with

ESP = "HomeKit/esp/TemperatureSensor/CurrentTemperature"

#: (action, body or raw payload, what the error says, the field it names)
MALFORMED: list[tuple[str, Any, str, str | None]] = [
    ("device/rename", b"{not json", "request payload is not JSON", None),
    ("device/rename", b"[1, 2]", "a request body must be a JSON object", None),
    ("device/rename", b'"esp"', "a request body must be a JSON object", None),
    ("device/rename", b"\xff\xfe{}", "not UTF-8", None),
    ("device/rename", b"[" * 3000, "request payload is not JSON", None),
    ("no/such/action", {}, "unknown request 'no/such/action'", None),
    ("device/rename", {"id": "esp"}, "field 'name': missing", "name"),
    ("device/rename", {"id": "esp", "name": 5}, "field 'name': must be a non-empty", "name"),
    ("device/rename", {"id": "esp", "name": "x" * 65}, "at most 64 characters", "name"),
    ("device/rename", {"id": "esp", "name": "Hall", "nmae": "x"}, "'nmae': unknown field", "nmae"),
    ("device/remove", {}, "field 'id': missing", "id"),
    ("device/remove", {"id": ["esp"]}, "field 'id': must be a non-empty string", "id"),
    ("device/options", {"id": "esp", "expire_after": "60"}, "number of seconds", "expire_after"),
    ("device/options", {"id": "esp", "expire_after": True}, "number of seconds", "expire_after"),
    ("device/options", {"id": "esp", "expire_after": -1}, "between 0 and", "expire_after"),
    ("device/options", {"id": "esp", "command_topic": "both"}, "'set' or 'same'", "command_topic"),
    ("device/options", {"id": "esp", "retain_commands": 1}, "true or false", "retain_commands"),
    ("device/options", {"id": "esp", "reset": "expire_after"}, "list of option names", "reset"),
    ("device/options", {"id": "esp", "name": "Hall"}, "'name': unknown field", "name"),
    (
        "device/options",
        {"id": "esp", "expire_after": 5, "reset": ["expire_after"]},
        "both set and reset",
        "expire_after",
    ),
    ("discover", {"timeout": "5"}, "field 'timeout': must be a number", "timeout"),
    ("discover", {"timeout": 3600}, "at most 60 seconds", "timeout"),
    ("pair", {"device_id": "AA:BB:CC:DD:EE:FF", "setup_code": "1"}, "'alias': missing", "alias"),
    ("pair", {"device_id": 7, "setup_code": "1", "alias": "x"}, "'device_id': must", "device_id"),
    ("unpair", {"alias": "x", "force": "yes"}, "field 'force': must be true or false", "force"),
    ("list-pairings", {"verbose": True}, "'verbose': unknown field", "verbose"),
    ("info", {"all": True}, "'all': unknown field", "all"),
    ("health_check", {"deep": 1}, "'deep': unknown field", "deep"),
    ("restart", {"now": True}, "'now': unknown field", "now"),
]


async def catalogue_entry(probe: MqttProbe, device_id: str, check: Callable[[Any], bool]) -> Any:
    """The newest `bridge/devices` entry of a device, once it satisfies `check`."""

    def newest() -> Any:
        messages = probe.messages_on("HomeKit/bridge/devices")
        if not messages:
            return None
        entries = {entry["id"]: entry for entry in json.loads(messages[-1].payload)}
        entry = entries.get(device_id)
        return entry if entry is not None and check(entry) else None

    return await wait_for(newest, timeout=10, message=f"{device_id} in bridge/devices")


async def test_malformed_requests_name_the_field_and_change_nothing(
    bridge: BridgeProcess, probe: MqttProbe
) -> None:
    await probe.publish(ESP, "21", retain=True)
    await catalogue_entry(probe, "esp", lambda entry: True)
    for action, body, error, field in MALFORMED:
        if isinstance(body, bytes):
            response = await request(probe, action, raw=body)
        else:
            response = await request(probe, action, body)
            assert response["transaction"].startswith("t"), (action, body, response)
        assert response["status"] == "error", (action, body, response)
        assert error in response["error"], (action, body, response)
        assert response.get("field") == field, (action, body, response)
    # Nothing changed: the device kept its name and is still there, no options were
    # stored, and the malformed `restart` did not restart the bridge.
    entry = await catalogue_entry(probe, "esp", lambda entry: True)
    assert entry["name"] == "esp"
    assert not (bridge.data_dir / "device-options.json").exists()
    assert bridge.log().count("Connected to MQTT broker") == 1
    assert "Restart requested" not in bridge.log()
    assert (await request(probe, "info"))["status"] == "ok"  # still answering


async def test_info_and_health_check(bridge: BridgeProcess, probe: MqttProbe) -> None:
    info = await request(probe, "info", {})
    retained = await probe.wait_message("HomeKit/bridge/info")
    assert info["status"] == "ok"
    assert info["data"] == json.loads(retained.payload)
    assert info["data"]["hap_port"] == bridge.hap_port and info["data"]["paired"] is False
    health = await request(probe, "health_check")
    assert health["data"] == {
        "healthy": True,
        "mqtt_connected": True,
        "hap_listening": True,
        "problems": [],
    }


async def test_rename_and_remove(bridge: BridgeProcess, home: HapClient, probe: MqttProbe) -> None:
    await probe.publish(ESP, "21", retain=True)
    await accessories_with(home, "esp")
    renamed = await request(probe, "device/rename", {"id": "esp", "name": "Hall sensor"})
    assert renamed["data"] == {"id": "esp", "name": "Hall sensor"}
    await catalogue_entry(probe, "esp", lambda entry: entry["name"] == "Hall sensor")
    removed = await request(probe, "device/remove", {"id": "esp"})
    assert removed["status"] == "ok" and removed["data"]["id"] == "esp"
    missing = await request(probe, "device/rename", {"id": "esp", "name": "Hall"})
    assert missing == {
        "status": "error",
        "error": "no MQTT device 'esp'",
        "transaction": missing["transaction"],
    }


async def test_device_options_take_effect_and_survive_a_restart(
    make_bridge: Callable[..., BridgeProcess], probe: MqttProbe
) -> None:
    bridge = make_bridge(devices={"fixed": {"expire_after": 600}})
    await probe.publish("HomeKit/esp/Switch/On", "0")
    await probe.publish("HomeKit/fixed/Switch/On", "0")
    await catalogue_entry(probe, "fixed", lambda entry: entry["available"])

    answer = await request(probe, "device/options", {"id": "esp", "expire_after": 1})
    assert answer["data"] == {
        "id": "esp",
        "options": {
            "expire_after": 1.0,
            "command_topic": "set",
            "retain_commands": False,
            "bridge": None,
        },
        "set_by_request": {"expire_after": 1.0},
        "set_in_config": [],
    }
    await catalogue_entry(probe, "esp", lambda entry: not entry["available"])  # silent > 1 s
    await probe.publish("HomeKit/esp/Switch/On", "1")
    await catalogue_entry(probe, "esp", lambda entry: entry["available"])
    same = await request(probe, "device/options", {"id": "esp", "command_topic": "same"})
    assert same["data"]["options"]["command_topic"] == "same"

    # A key bridge.yaml sets for the device is the owner's: refused, and nothing changes.
    saved = (bridge.data_dir / "device-options.json").read_bytes()
    refused = await request(
        probe, "device/options", {"id": "fixed", "expire_after": 5, "retain_commands": True}
    )
    assert refused["status"] == "error" and refused["field"] == "expire_after"
    assert "devices.fixed.expire_after" in refused["error"]
    assert (bridge.data_dir / "device-options.json").read_bytes() == saved
    unchanged = await request(probe, "device/options", {"id": "fixed"})
    assert unchanged["data"]["options"]["expire_after"] == 600
    assert unchanged["data"]["set_in_config"] == ["expire_after"]

    bridge.stop()
    bridge.start()
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        kept = await request(probe, "device/options", {"id": "esp"})
        assert kept["data"]["set_by_request"] == {"expire_after": 1.0, "command_topic": "same"}
        # command_topic: same after the restart: a Home-app write lands on the state topic.
        accessories = await accessories_with(home, "esp")
        aid = aid_of(accessories, "esp")
        on = char_of(accessories, aid, "49", "25")["iid"]
        await probe.publish("HomeKit/esp/Switch/On", "0")  # available again for the write
        await catalogue_entry(probe, "esp", lambda entry: entry["available"])
        written = time.monotonic()  # the probe's own earlier "1" must not count
        await home.put([(aid, on, True)])
        await probe.wait_message(
            "HomeKit/esp/Switch/On", lambda m: m.payload == b"1" and m.at > written
        )
        assert not probe.messages_on("HomeKit/esp/Switch/On/set")
        async with MqttProbe(probe.host, probe.port) as late:  # and it is retained
            await late.subscribe("HomeKit/esp/Switch/On")
            retained = await late.wait_message("HomeKit/esp/Switch/On")
            assert retained.retain and retained.payload == b"1"
    finally:
        await home.close()
    reset = await request(
        probe, "device/options", {"id": "esp", "reset": ["expire_after", "command_topic"]}
    )
    assert reset["data"]["set_by_request"] == {}
    assert reset["data"]["options"]["expire_after"] is None


async def test_restart_request_restarts_in_place(bridge: BridgeProcess, probe: MqttProbe) -> None:
    await probe.publish(ESP, "21", retain=True)
    await catalogue_entry(probe, "esp", lambda entry: True)
    pid = bridge.pid
    answer = await request(probe, "restart", {})
    assert answer["status"] == "ok" and answer["data"] == {"restarting": True}
    await probe.wait_message("HomeKit/bridge/state", lambda m: m.payload == b"offline")
    await wait_for(
        lambda: bridge.log().count("Connected to MQTT broker") == 2,
        timeout=20,
        message="the bridge connected again after its restart",
    )
    assert bridge.running and bridge.pid == pid  # the same process: no supervisor needed
    states = probe.messages_on("HomeKit/bridge/state")
    offline_at = next(m.at for m in states if m.payload == b"offline")
    await probe.wait_message(
        "HomeKit/bridge/state", lambda m: m.payload == b"online" and m.at > offline_at
    )
    info = await request(probe, "info")
    assert info["data"]["hap_port"] == bridge.hap_port
    assert "Restarting" in bridge.log()
    assert bridge.stop() == 0
