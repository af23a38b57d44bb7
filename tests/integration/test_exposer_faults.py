"""Availability, bad input and HAP write checks on the accessory side ."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.accessories import aid_of, char_of
from tests.support.bridge_process import REPO_ROOT, BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import Mosquitto, MqttProbe
from tests.support.wait import wait_for

from .test_exposer_devices import accessories_with

NO_RESPONSE = -70402
READ_ONLY = -70404
DOES_NOT_EXIST = -70409
INVALID_VALUE = -70410


async def two_devices(home: HapClient, probe: MqttProbe) -> tuple[int, int, int, int]:
    """A switch `TEST` and a sensor `esp`; returns (switch aid, On iid, sensor aid, temp iid)."""
    await probe.publish("HomeKit/TEST/Switch/On", "1")
    await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "21")
    await accessories_with(home, "TEST")
    accessories = await accessories_with(home, "esp")
    switch, sensor = aid_of(accessories, "TEST"), aid_of(accessories, "esp")
    return (
        switch,
        char_of(accessories, switch, "49", "25")["iid"],
        sensor,
        char_of(accessories, sensor, "8A", "11")["iid"],
    )


async def status_of(home: HapClient, aid: int, iid: int) -> int:
    return int((await home.get([(aid, iid)]))[(aid, iid)].get("status", 0))


async def test_offline_device_shows_no_response_alone_and_recovers(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    switch, on, sensor, temperature = await two_devices(home, probe)
    await probe.publish("HomeKit/TEST/availability", "offline", retain=True)

    async def no_response() -> bool:
        return await status_of(home, switch, on) == NO_RESPONSE

    await wait_for(no_response, message="switch No Response")
    assert await home.read(sensor, temperature) == 21  # the other accessory is unaffected
    assert await home.put([(switch, on, False)]) == {(switch, on): NO_RESPONSE}
    assert not probe.messages_on("HomeKit/TEST/Switch/On/set")  # a refused write sends nothing

    await probe.publish("HomeKit/TEST/availability", "online", retain=True)

    async def back() -> bool:
        return await status_of(home, switch, on) == 0

    await wait_for(back, message="switch available again")
    assert await home.put([(switch, on, False)]) == {(switch, on): 0}


async def test_silent_device_expires_after_its_expire_after(make_bridge, probe: MqttProbe) -> None:
    bridge = make_bridge(devices={"esp": {"expire_after": 1.0}})
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        _, _, sensor, temperature = await two_devices(home, probe)

        async def expired() -> bool:
            return await status_of(home, sensor, temperature) == NO_RESPONSE

        await wait_for(expired, timeout=5, message="sensor expired")
        await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "22")

        async def fresh() -> bool:
            result = (await home.get([(sensor, temperature)]))[(sensor, temperature)]
            return result.get("value") == 22

        await wait_for(fresh, message="sensor back with its new value")
        listed = await probe.wait_message(
            "HomeKit/bridge/devices", lambda m: b'"available": false' in m.payload
        )
        [esp] = [d for d in json.loads(listed.payload) if d["id"] == "esp"]
        assert esp["available"] is False
    finally:
        await home.close()


BAD_INPUT = [
    ("HomeKit/esp/Thermometer/CurrentTemperature", b"30", "unknown HomeKit service"),
    ("HomeKit/esp/TemperatureSensor/Temp", b"30", "unknown HomeKit characteristic"),
    ("HomeKit/esp/TemperatureSensor/On", b"30", "has no characteristic On"),
    ("HomeKit/esp/TemperatureSensor/CurrentTemperature", b"warm", "not a number"),
    ("HomeKit/esp/TemperatureSensor/CurrentTemperature", b"NaN", "finite"),
    ("HomeKit/esp/TemperatureSensor/CurrentTemperature", b"1e309", "finite"),
    ("HomeKit/esp/TemperatureSensor/CurrentTemperature", b"true", "not a boolean"),
    ("HomeKit/esp/TemperatureSensor/CurrentTemperature", b"5000", "range"),
    ("HomeKit/esp/TemperatureSensor/CurrentTemperature", b"\xff\xfe", "not UTF-8"),
    ("HomeKit/esp/TemperatureSensor/CurrentTemperature", b"3" * 1_000_000, "limit"),
    ("HomeKit/esp/TemperatureSensor/CurrentTemperature", b"[" * 1_000, "nested"),
    ("HomeKit/esp/TemperatureSensor/1/2/CurrentTemperature", b"30", "levels"),
    ("HomeKit/esp/TemperatureSensor/99/CurrentTemperature", b"30", "index"),
    ("HomeKit/esp//CurrentTemperature", b"30", "empty"),
]


async def test_bad_input_is_reported_and_the_last_good_value_stays(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    _, _, sensor, temperature = await two_devices(home, probe)
    for topic, payload, reason in BAD_INPUT:
        since = len(probe.messages_on("HomeKit/bridge/event"))
        await probe.publish(topic, payload)

        def reported(reason: str = reason, since: int = since) -> bool:
            events = probe.messages_on("HomeKit/bridge/event")[since:]
            return any(reason in json.loads(m.payload)["message"] for m in events)

        await wait_for(reported, timeout=5, message=f"bridge/event for {topic} ({reason})")
    assert await home.read(sensor, temperature) == 21
    accessories = await home.list_accessories()
    assert len(accessories) == 3  # the bridge, TEST and esp: nothing was created
    event = json.loads(probe.messages_on("HomeKit/bridge/event")[-1].payload)
    assert event["type"] in ("invalid_message", "invalid_topic")
    assert bridge.running
    # The three topics outside the grammar are counted in bridge/info.
    await probe.wait_message(
        "HomeKit/bridge/info", lambda m: json.loads(m.payload)["rejected_topics"] == 3
    )


async def test_no_log_line_or_event_quotes_more_than_a_screenful_of_user_input(
    bridge: BridgeProcess, probe: MqttProbe
) -> None:
    long_level = "T" * 3_000
    await probe.publish(f"HomeKit/esp/TemperatureSensor/{long_level}", "30")
    await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "9" * 4_000)
    await probe.publish(f"HomeKit/esp/{long_level}/1/2/3", "1")  # not the grammar
    await probe.publish("HomeKit/esp/availability", "o" * 4_000)
    await probe.publish("HomeKit/bridge/request/" + "a" * 3_000, "{}")
    await wait_for(
        lambda: (
            len(probe.messages_on("HomeKit/bridge/event")) >= 4
            and probe.messages_on("HomeKit/bridge/response/#")
        ),
        timeout=5,
        message="four events and a response",
    )
    messages = probe.messages_on("HomeKit/bridge/event") + probe.messages_on(
        "HomeKit/bridge/response/#"
    )
    # A response's topic names the request as it was asked; its payload does not repeat it.
    assert max(len(m.payload) for m in messages) < 700, [m.payload[:200] for m in messages]
    assert max(len(line) for line in bridge.logs().splitlines()) < 700


async def test_empty_retained_payload_clears_and_never_reads_as_zero(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "21", retain=True)
    await probe.publish("HomeKit/esp/HumiditySensor/CurrentRelativeHumidity", "40", retain=True)
    accessories = await accessories_with(home, "esp")
    aid = aid_of(accessories, "esp")
    await probe.publish("HomeKit/esp/HumiditySensor/CurrentRelativeHumidity", "", retain=True)

    async def humidity_gone() -> bool:
        listed = await home.list_accessories()
        try:
            char_of(listed, aid, "82", "10")
        except AssertionError:
            return True
        return False

    await wait_for(humidity_gone, message="humidity service removed")
    assert await home.read(aid, char_of(accessories, aid, "8A", "11")["iid"]) == 21

    await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "", retain=True)

    async def device_gone() -> bool:
        return len(await home.list_accessories()) == 1

    await wait_for(device_gone, message="device removed from the bridge")


async def test_device_remove_request_clears_it_and_its_retained_topics(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "21", retain=True)
    await accessories_with(home, "esp")
    await probe.publish("HomeKit/bridge/request/device/remove", '{"id": "esp", "transaction": 5}')
    response = json.loads(
        (await probe.wait_message("HomeKit/bridge/response/device/remove")).payload
    )
    assert response["status"] == "ok" and response["transaction"] == 5
    await wait_for(lambda: _count(home, 1), message="accessory removed")
    async with MqttProbe(probe.host, probe.port) as late:
        await late.subscribe("HomeKit/esp/#")
        await late.subscribe("HomeKit/marker")
        await late.publish("HomeKit/marker", "x")
        await late.wait_message("HomeKit/marker")
        assert not late.messages_on("HomeKit/esp/#")  # nothing retained brings it back

    await probe.publish("HomeKit/bridge/request/device/remove", '{"id": "nope", "transaction": 6}')
    refused = await probe.wait_message(
        "HomeKit/bridge/response/device/remove", lambda m: b'"transaction": 6' in m.payload
    )
    assert json.loads(refused.payload)["status"] == "error"


async def _count(home: HapClient, count: int) -> bool:
    return len(await home.list_accessories()) == count


async def test_hap_writes_get_their_exact_status(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    await probe.publish("HomeKit/lamp/Lightbulb/On", "1")
    await probe.publish("HomeKit/lamp/Lightbulb/Brightness", "50")
    await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "21")
    await accessories_with(home, "lamp")
    accessories = await accessories_with(home, "esp")
    lamp, sensor = aid_of(accessories, "lamp"), aid_of(accessories, "esp")
    on = char_of(accessories, lamp, "43", "25")["iid"]
    brightness = char_of(accessories, lamp, "43", "8")["iid"]
    temperature = char_of(accessories, sensor, "8A", "11")["iid"]

    statuses = await home.put(
        [
            (sensor, temperature, 30),
            (lamp, brightness, 150),
            (lamp, brightness, "abc"),
            (999, 999, 1),
            (lamp, 999, 1),
            (lamp, on, False),
        ]
    )
    assert statuses[(sensor, temperature)] == READ_ONLY
    assert statuses[(lamp, brightness)] == INVALID_VALUE
    assert statuses[(999, 999)] == DOES_NOT_EXIST
    assert statuses[(lamp, 999)] == DOES_NOT_EXIST
    assert statuses[(lamp, on)] == 0
    assert home.last_http_status == 207
    await probe.wait_message("HomeKit/lamp/Lightbulb/On/set")
    assert await home.read(sensor, temperature) == 21
    assert await home.read(lamp, brightness) == 50
    assert not probe.messages_on("HomeKit/lamp/Lightbulb/Brightness/set")


async def test_write_while_broker_is_down_is_refused_at_once(
    bridge: BridgeProcess, home: HapClient, mosquitto: Mosquitto
) -> None:
    async with MqttProbe(mosquitto.host, mosquitto.port) as probe:
        switch, on, _, _ = await two_devices(home, probe)
    mosquitto.stop()
    await wait_for(lambda: "MQTT connection" in bridge.log(), message="bridge saw the loss")
    assert await home.put([(switch, on, False)]) == {(switch, on): NO_RESPONSE}
    assert await home.read(switch, on) is True  # the refused value was not taken


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_one_command_per_write_and_no_echo_loop(
    make_bridge, probe: MqttProbe, protocol: str
) -> None:
    bridge = make_bridge(mqtt={"protocol": protocol})
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        switch, on, _, _ = await two_devices(home, probe)
        await home.put([(switch, on, False)])
        await probe.wait_message("HomeKit/TEST/Switch/On/set")
        await probe.publish("HomeKit/TEST/Switch/On", "0")  # the device echoes its state
        await probe.publish("HomeKit/TEST/Switch/On/set", "1")  # Node-RED commands it too
        await probe.publish("HomeKit/marker", "done")
        await probe.wait_message("HomeKit/marker")
        sets = [m for m in probe.messages_on("HomeKit/TEST/Switch/On/set")]
        assert [m.payload for m in sets] == [b"0", b"1"]  # ours once, Node-RED's once
        assert await home.read(switch, on) is False
    finally:
        await home.close()


async def test_retained_command_found_at_start_is_cleared_not_acted_on(
    make_bridge, probe: MqttProbe
) -> None:
    await probe.publish("HomeKit/lamp/Lightbulb/On", "0", retain=True)
    await probe.publish("HomeKit/lamp/Lightbulb/On/set", "1", retain=True)
    bridge = make_bridge()
    event = await probe.wait_message(
        "HomeKit/bridge/event", lambda m: b"retained_command_cleared" in m.payload
    )
    assert json.loads(event.payload)["topic"] == "HomeKit/lamp/Lightbulb/On/set"
    async with MqttProbe(probe.host, probe.port) as late:
        await late.subscribe("HomeKit/lamp/#")
        await late.wait_message("HomeKit/lamp/Lightbulb/On")
        assert not late.messages_on("HomeKit/lamp/Lightbulb/On/set")
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        accessories = await accessories_with(home, "lamp")
        lamp = aid_of(accessories, "lamp")
        assert char_of(accessories, lamp, "43", "25")["value"] is False
    finally:
        await home.close()


async def test_bridge_state_goes_offline_by_will_on_kill(
    bridge: BridgeProcess, probe: MqttProbe
) -> None:
    await probe.wait_message("HomeKit/bridge/state", lambda m: m.payload == b"online")
    bridge.kill9()
    offline = await probe.wait_message("HomeKit/bridge/state", lambda m: m.payload == b"offline")
    assert offline.payload == b"offline"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mqtt: {port: abc}\n", "mqtt.port"),
        ("homekit: {setup_code: 123-45-678}\n", "homekit.setup_code"),
        ("colour: blue\n", "colour"),
        ("mqtt: [\n", "not valid YAML"),
    ],
)
def test_broken_config_is_refused_naming_key_and_file(
    make_bridge, text: str, expected: str
) -> None:
    bridge: BridgeProcess = make_bridge(start=False)
    bridge.dir.mkdir(parents=True, exist_ok=True)
    bridge.config_path.write_text(text)
    for command in ("check-config", "run"):
        result = _run(bridge, command)
        assert result.returncode == 2
        assert str(bridge.config_path) in result.stderr
        assert expected in result.stderr


def _run(bridge: BridgeProcess, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mqtt_hk_bridge", command, "-c", str(bridge.config_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def test_availability_before_the_first_value_and_recovery_by_a_live_value(
    make_bridge, probe: MqttProbe
) -> None:
    # Retained messages reach a starting bridge in any order: the device's Last Will can
    # come before its first value, and must still count.
    await probe.publish("HomeKit/sleepy/availability", "offline", retain=True)
    await probe.publish("HomeKit/sleepy/TemperatureSensor/CurrentTemperature", "19", retain=True)
    bridge = make_bridge()
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        accessories = await accessories_with(home, "sleepy")
        aid = aid_of(accessories, "sleepy")
        iid = char_of(accessories, aid, "8A", "11")["iid"]
        assert await status_of(home, aid, iid) == NO_RESPONSE

        # It wakes and publishes, without saying `online`: a live value proves it is up.
        await probe.publish("HomeKit/sleepy/TemperatureSensor/CurrentTemperature", "20")
        await wait_for(lambda: _reads(home, aid, iid, 20), message="back with its new value")
    finally:
        await home.close()


async def test_information_updates_show_without_a_restart(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "18")
    await probe.publish("HomeKit/esp/AccessoryInformation/FirmwareRevision", "1.0.0")
    accessories = await accessories_with(home, "esp")
    aid = aid_of(accessories, "esp")
    firmware = char_of(accessories, aid, "3E", "52")["iid"]
    await wait_for(lambda: _reads(home, aid, firmware, "1.0.0"), message="firmware 1.0.0")
    await probe.publish("HomeKit/esp/AccessoryInformation/FirmwareRevision", "1.1.0")
    await wait_for(lambda: _reads(home, aid, firmware, "1.1.0"), message="firmware 1.1.0")


async def _reads(home: HapClient, aid: int, iid: int, value: object) -> bool:
    return (await home.get([(aid, iid)]))[(aid, iid)].get("value") == value


async def test_remove_after_takes_a_silent_device_off_the_bridge(
    make_bridge, probe: MqttProbe
) -> None:
    bridge = make_bridge(devices={"gone": {"remove_after": 1.0}})
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        await probe.publish("HomeKit/gone/TemperatureSensor/CurrentTemperature", "5", retain=True)
        await probe.publish("HomeKit/kept/TemperatureSensor/CurrentTemperature", "6", retain=True)
        await accessories_with(home, "gone")
        await accessories_with(home, "kept")
        event = await probe.wait_message(
            "HomeKit/bridge/event", lambda m: b"device_removed" in m.payload, timeout=5
        )
        assert json.loads(event.payload)["device"] == "gone"

        async def only_kept() -> bool:
            listed = await home.list_accessories()
            try:
                aid_of(listed, "gone")
            except AssertionError:
                return aid_of(listed, "kept") > 1
            return False

        await wait_for(only_kept, message="gone removed, kept kept")
        cleared = await probe.wait_message(
            "HomeKit/gone/TemperatureSensor/CurrentTemperature", lambda m: m.payload == b""
        )
        assert cleared.payload == b""  # the broker will not bring it back
    finally:
        await home.close()


async def test_a_device_that_arrives_while_saves_fail_is_shown_once_they_work(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    # A directory where the id store's temp file goes: saving new accessory ids fails (as a
    # full disk or running out of file descriptors makes it fail).
    blocker = bridge.data_dir / ".accessory-ids.json.tmp"
    blocker.mkdir()
    await probe.publish("HomeKit/late/Switch/On", "1")
    event = await probe.wait_message(
        "HomeKit/bridge/event", lambda m: b"device_not_shown" in m.payload, timeout=5
    )
    assert "saving its accessory ids failed" in json.loads(event.payload)["message"]
    with pytest.raises(AssertionError):
        aid_of(await home.list_accessories(), "late")
    # Later messages from it are no mere value changes: it is still waiting to be shown.
    await probe.publish("HomeKit/late/Switch/On", "0")
    blocker.rmdir()
    await probe.wait_message(
        "HomeKit/bridge/event", lambda m: b"device_shown" in m.payload, timeout=10
    )
    accessories = await accessories_with(home, "late")
    aid = aid_of(accessories, "late")
    assert await home.read(aid, char_of(accessories, aid, "49", "25")["iid"]) is False
    assert len(probe.messages_on("HomeKit/bridge/event")) < 10  # said once, not per retry


async def test_new_devices_that_come_together_while_saves_fail_are_shown_once_they_work(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    # New devices that follow one another are shown together, their ids saved in one go:
    # when that save fails, none of them is shown and each is told so, then shown once
    # saves work again.
    blocker = bridge.data_dir / ".accessory-ids.json.tmp"
    blocker.mkdir()
    devices = {"first", "second", "third"}
    for device_id in sorted(devices):
        await probe.publish(f"HomeKit/{device_id}/Switch/On", "1")

    def told(kind: str) -> set[str]:
        events = [json.loads(m.payload) for m in probe.messages_on("HomeKit/bridge/event")]
        return {event.get("device") for event in events if event["type"] == kind}

    await wait_for(lambda: told("device_not_shown") >= devices, message="each told")
    listed = await home.list_accessories()
    for device_id in devices:
        with pytest.raises(AssertionError):
            aid_of(listed, device_id)
    blocker.rmdir()
    await wait_for(lambda: told("device_shown") >= devices, timeout=10, message="each shown")
    accessories = await home.list_accessories()
    for device_id in devices:
        aid = aid_of(accessories, device_id)
        assert await home.read(aid, char_of(accessories, aid, "49", "25")["iid"]) is True


async def test_ten_thousand_invented_devices_leave_the_bridge_bounded(
    bridge: BridgeProcess, probe: MqttProbe
) -> None:
    await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "21")
    for n in range(10_000):
        await probe.publish(f"HomeKit/fuzz{n}/AccessoryInformation/Name", f"x{n}", qos=0)
    await probe.publish("HomeKit/esp/TemperatureSensor/CurrentTemperature", "22")

    def settled() -> list[dict[str, object]] | None:
        catalogue = probe.messages_on("HomeKit/bridge/devices")
        if not catalogue:
            return None
        entries: list[dict[str, object]] = json.loads(catalogue[-1].payload)
        return entries if any(e["id"] == "esp" for e in entries) else None

    await probe.wait_message(
        "HomeKit/bridge/event", lambda m: b"device_limit" in m.payload, timeout=30
    )
    entries = await wait_for(settled, timeout=10, message="the catalogue after the flood")
    # At most 256 devices wait for a service; the real one is there beside them.
    assert len(entries) <= 257
    assert len(probe.messages_on("HomeKit/bridge/devices")[-1].payload) < 100_000
    limits = [m for m in probe.messages_on("HomeKit/bridge/event") if b"device_limit" in m.payload]
    assert len(limits) == 1  # said once, not ten thousand times
    stored = (bridge.data_dir / "accessory-devices.json").stat().st_size
    assert stored < 200_000
    assert bridge.running
