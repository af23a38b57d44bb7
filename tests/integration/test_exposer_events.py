"""Event delivery to the Home app (docs/topics.md): fast when quiet, polite
when busy, transitions and button presses never merged. Counts and order, not timings:
speed is measured in bench/."""

from __future__ import annotations

import pytest

from tests.support.accessories import aid_of, char_of
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import MqttProbe
from tests.support.wait import wait_for

from .test_exposer_devices import accessories_with

MOTION_SENSOR, MOTION_DETECTED = "85", "22"
BUTTON, SWITCH_EVENT = "89", "73"


async def subscribed(home: HapClient, device: str, service: str, char: str) -> tuple[int, int]:
    """Subscribe to a characteristic once the device shows it in /accessories."""

    async def listed() -> tuple[int, int] | None:
        accessories = await accessories_with(home, device)
        aid = aid_of(accessories, device)
        try:
            return aid, int(char_of(accessories, aid, service, char)["iid"])
        except AssertionError:
            return None

    aid, iid = await wait_for(listed, message=f"{device} {service}/{char}")
    await home.subscribe([(aid, iid)])
    return aid, iid


async def test_motion_on_and_off_within_a_second_both_reach_the_home_app(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    await probe.publish("HomeKit/hall/MotionSensor/MotionDetected", "0")
    aid, iid = await subscribed(home, "hall", MOTION_SENSOR, MOTION_DETECTED)
    for value in ("1", "0", "1", "0"):
        await probe.publish("HomeKit/hall/MotionSensor/MotionDetected", value)
    await wait_for(lambda: len(home.events_for(aid, iid)) >= 4, timeout=5, message="4 events")
    assert [e.value for e in home.events_for(aid, iid)] == [True, False, True, False]


async def test_a_storm_is_paced_and_ends_on_the_last_value(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    topic = "HomeKit/esp/TemperatureSensor/CurrentTemperature"
    await probe.publish(topic, "10")
    aid, iid = await subscribed(home, "esp", "8A", "11")
    await probe.publish("HomeKit/other/TemperatureSensor/CurrentTemperature", "5")
    other = await subscribed(home, "other", "8A", "11")

    values = [round(20 + i / 10, 1) for i in range(100)]
    for value in values:
        await probe.publish(topic, str(value))
    await probe.publish("HomeKit/other/TemperatureSensor/CurrentTemperature", "6")
    await home.wait_event(aid, iid, values[-1], timeout=5)
    received = [e.value for e in home.events_for(aid, iid)]
    # Leading edge: the first change went out as it was, not merged into a later one.
    assert received[0] == values[0]
    assert received[-1] == values[-1]
    # The publishes take well under the 1 s test window on loopback; allow a few windows.
    assert len(received) <= 4, received
    # The other device's change is its own: it arrives and is not merged with the storm.
    assert (await home.wait_event(*other, 6, timeout=5)).value == 6


async def test_every_button_press_is_an_event_but_a_retained_one_is_not(
    make_mosquitto, tmp_path
) -> None:
    broker = make_mosquitto(persistent=True)
    topic = "HomeKit/remote/StatelessProgrammableSwitch/ProgrammableSwitchEvent"
    async with MqttProbe(broker.host, broker.port) as device:
        await device.publish(topic, "0", retain=True)
    bridge = BridgeProcess(tmp_path / "bridge", broker.port)
    bridge.start()
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        aid, iid = await subscribed(home, "remote", BUTTON, SWITCH_EVENT)
        async with MqttProbe(broker.host, broker.port) as device:
            for value in ("0", "0", "2"):  # single, single, long press
                await device.publish(topic, value)
        await wait_for(lambda: len(home.events_for(aid, iid)) >= 3, timeout=5, message="presses")
        assert [e.value for e in home.events_for(aid, iid)] == [0, 0, 2]

        # The broker restarts: the bridge resubscribes and gets the retained "0" again,
        # while the Home app is still subscribed. That stale press must not fire.
        broker.stop()
        broker.start()
        async with MqttProbe(broker.host, broker.port) as device:
            await device.subscribe("HomeKit/bridge/state")
            await device.wait_message("HomeKit/bridge/state", lambda m: m.payload == b"online")
            await wait_for(lambda: bridge.log().count("Connected to MQTT broker") >= 2)
            await device.publish(topic, "1")  # a real double press
            await home.wait_event(aid, iid, 1, timeout=5)
        assert [e.value for e in home.events_for(aid, iid)] == [0, 0, 2, 1]
    finally:
        await home.close()
        bridge.stop()


async def test_a_home_app_write_is_not_undone_by_a_held_back_older_value(
    bridge: BridgeProcess, home: HapClient, probe: MqttProbe
) -> None:
    topic = "HomeKit/lamp/Lightbulb/Brightness"
    await probe.publish("HomeKit/lamp/Lightbulb/On", "1")
    await probe.publish(topic, "40")
    aid, iid = await subscribed(home, "lamp", "43", "8")
    await probe.publish(topic, "50")  # goes out at once
    await home.wait_event(aid, iid, 50, timeout=5)
    await probe.publish(topic, "60")  # held back until the window ends
    await probe.publish("HomeKit/marker", "1")
    await probe.wait_message("HomeKit/marker")
    assert await home.put([(aid, iid, 80)]) == {(aid, iid): 0}
    await probe.wait_message(f"{topic}/set", lambda m: m.payload == b"80")
    await probe.publish(topic, "80")  # the device confirms
    # The held-back 60 is older than the write: it must never reach the Home app, which
    # would then show 60 while the lamp is at 80. (Absence: wait out two event windows.)
    with pytest.raises(AssertionError, match="timed out"):
        await home.wait_event(aid, iid, 60, timeout=2.0)
    assert await home.read(aid, iid) == 80
