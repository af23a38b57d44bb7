"""Controller side against a real HAP-python accessory (the demo bridge: a light at aid 2,
a temperature sensor at aid 3), a real Mosquitto and real aiohomekit; mDNS on 127.0.0.1.

One peer is paired once for the module (through the CLI's `pair` function); every test runs
its own ControllerHarness (in-process controller side) on a fresh broker with that pairing.
Tests that kill or move the peer restart it before they end.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from mqtt_hk_bridge.config import Config
from mqtt_hk_bridge.controller import commands
from mqtt_hk_bridge.controller.settings import DEFAULT_PAIRING_FILE
from tests.support.accessory_process import AccessoryProcess
from tests.support.controller_harness import ControllerHarness
from tests.support.mosquitto import Mosquitto, MqttProbe
from tests.support.wait import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

_LOGGER = logging.getLogger(__name__)

LIGHT = "HomeKit/demo-2/Lightbulb"
SENSOR = "HomeKit/demo-3/TemperatureSensor/CurrentTemperature"
# The demo peer's iids (HAP-python numbers them in creation order; stable for the demo).
ON_IID, BRIGHTNESS_IID, TEMPERATURE_IID = 9, 10, 9

# Empty strings (the demo's FirmwareRevision, the bridge's Manufacturer and Model) go out
# as `""`: a zero-length retained payload would mean "no retained value" to the broker.
EMPTY_STRING_TOPICS = {
    "HomeKit/demo/AccessoryInformation/Manufacturer",
    "HomeKit/demo/AccessoryInformation/Model",
    "HomeKit/demo/AccessoryInformation/FirmwareRevision",
    "HomeKit/demo-2/AccessoryInformation/FirmwareRevision",
    "HomeKit/demo-3/AccessoryInformation/FirmwareRevision",
}
EXPECTED_TOPICS = EMPTY_STRING_TOPICS | {
    "HomeKit/demo/ProtocolInformation/Version",
    "HomeKit/demo/AccessoryInformation/Name",
    "HomeKit/demo/AccessoryInformation/SerialNumber",
    "HomeKit/demo-2/AccessoryInformation/Manufacturer",
    "HomeKit/demo-2/AccessoryInformation/Model",
    "HomeKit/demo-2/AccessoryInformation/Name",
    "HomeKit/demo-2/AccessoryInformation/SerialNumber",
    "HomeKit/demo-2/Lightbulb/Brightness",
    "HomeKit/demo-2/Lightbulb/On",
    "HomeKit/demo-3/AccessoryInformation/Manufacturer",
    "HomeKit/demo-3/AccessoryInformation/Model",
    "HomeKit/demo-3/AccessoryInformation/Name",
    "HomeKit/demo-3/AccessoryInformation/SerialNumber",
    "HomeKit/demo-3/TemperatureSensor/CurrentTemperature",
}


@dataclass
class PairedPeer:
    peer: AccessoryProcess
    pairing_file: Path
    config: Config

    def data_dir_for(self, tmp_path: Path) -> Path:
        """A fresh data dir holding a copy of the module's pairing."""
        data_dir = tmp_path / "data"
        data_dir.mkdir(mode=0o700, exist_ok=True)
        shutil.copy2(self.pairing_file, data_dir / DEFAULT_PAIRING_FILE)
        return data_dir


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def paired(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PairedPeer]:
    root = tmp_path_factory.mktemp("controller-demo")
    peer = AccessoryProcess(root)
    await peer.start()
    config = Config(data_dir=root / "cli-data", zeroconf_interfaces=("127.0.0.1",))
    result = await commands.pair(config, str(peer.device_id), peer.pin, "demo")
    assert result == {"alias": "demo", "device_id": str(peer.device_id).lower()}
    try:
        yield PairedPeer(peer, config.data_dir / DEFAULT_PAIRING_FILE, config)
    finally:
        await peer.stop()


async def _ensure_running(peer: AccessoryProcess) -> None:
    if not peer.running:
        await peer.start()


@pytest_asyncio.fixture(loop_scope="module")
async def probe(mosquitto: Mosquitto) -> AsyncIterator[MqttProbe]:
    async with mosquitto.probe() as client:
        await client.subscribe("HomeKit/#")
        yield client


@pytest_asyncio.fixture(loop_scope="module")
async def harness(
    paired: PairedPeer, mosquitto: Mosquitto, tmp_path: Path
) -> AsyncIterator[ControllerHarness]:
    await _ensure_running(paired.peer)
    async with ControllerHarness(paired.data_dir_for(tmp_path), mosquitto) as running:
        yield running


def payloads_on(probe: MqttProbe, topic: str) -> list[bytes]:
    return [message.payload for message in probe.messages_on(topic)]


def last_payload(probe: MqttProbe, topic: str) -> bytes | None:
    found = payloads_on(probe, topic)
    return found[-1] if found else None


async def wait_online(probe: MqttProbe, device: str = "demo-2", timeout: float = 15.0) -> None:
    await wait_for(
        lambda: last_payload(probe, f"HomeKit/{device}/availability") == b"online",
        timeout=timeout,
        message=f"{device} online",
    )


# ---- pairing through the CLI function --------------------------------------------------
async def test_cli_pair_stores_pairing_privately(paired: PairedPeer) -> None:
    mode = stat.S_IMODE(os.stat(paired.pairing_file).st_mode)
    assert mode == 0o600
    data = json.loads(paired.pairing_file.read_text())
    assert list(data["pairings"]) == ["demo"]
    [listed] = await commands.list_pairings(paired.config)
    assert listed["alias"] == "demo"
    assert listed["device_id"] == str(paired.peer.device_id).lower()
    assert listed["port"] == paired.peer.port
    assert (listed["connected"], listed["available"]) == (True, True)
    assert listed["devices"] == ["demo", "demo-2", "demo-3"]
    assert (await paired.peer.info())["paired"] is True


# ---- the mirror --------------------------------------------------------------------------
async def test_mirror_publishes_every_readable_value_retained(
    harness: ControllerHarness, probe: MqttProbe, mosquitto: Mosquitto
) -> None:
    await wait_online(probe, "demo-3")
    assert last_payload(probe, "HomeKit/demo/availability") == b"online"
    assert last_payload(probe, SENSOR) == b"21.5"
    assert last_payload(probe, "HomeKit/demo-2/AccessoryInformation/Name") == b"Demo Light"
    # A late subscriber gets every value from the broker's retained store.
    async with mosquitto.probe() as late:
        await late.subscribe("HomeKit/+/#")
        await wait_for(
            lambda: {m.topic for m in late.messages if m.retain} >= EXPECTED_TOPICS,
            timeout=5,
            message="every mirrored topic retained",
        )
        mirrored = {
            m.topic: m.payload
            for m in late.messages
            if m.retain and m.topic.startswith("HomeKit/demo") and "availability" not in m.topic
        }
    assert set(mirrored) == EXPECTED_TOPICS
    assert {topic for topic, payload in mirrored.items() if payload == b'""'} == (
        EMPTY_STRING_TOPICS
    )
    # ... and the catalogue lists the three devices with origin homekit.
    message = await probe.wait_message(
        "HomeKit/bridge/devices",
        lambda m: any(d["id"] == "demo-3" and d["available"] for d in json.loads(m.payload)),
    )
    devices = {entry["id"]: entry for entry in json.loads(message.payload)}
    assert set(devices) == {"demo", "demo-2", "demo-3"}
    assert {entry["origin"] for entry in devices.values()} == {"homekit"}
    light = devices["demo-2"]
    assert light["name"] == "Demo Light"
    lightbulb = next(s for s in light["services"] if s["type"] == "Lightbulb")
    brightness = next(c for c in lightbulb["characteristics"] if c["name"] == "Brightness")
    assert brightness["format"] == "int" and "pw" in brightness["perms"]
    assert harness.side.owns("demo-2") and harness.side.owns("demo")
    assert not harness.side.owns("demo2") and not harness.side.owns("other")


async def test_events_arrive_on_mqtt(harness: ControllerHarness, probe: MqttProbe) -> None:
    await wait_online(probe, "demo-3")
    latencies = []
    for value in (22.5, 23.0, 23.5, 24.0, 24.5):
        started = time.monotonic()
        await harness_peer(harness).set(3, TEMPERATURE_IID, value)
        expected = f"{value:g}".encode()
        message = await probe.wait_message(SENSOR, lambda m, e=expected: m.payload == e, timeout=5)
        latencies.append(message.at - started)
    _LOGGER.info("event latency accessory -> MQTT: max %.1f ms", max(latencies) * 1000)
    print(f"event latency accessory -> MQTT: {[round(x * 1000, 1) for x in latencies]} ms")
    assert max(latencies) < 1.0


def harness_peer(harness: ControllerHarness) -> AccessoryProcess:
    return _PEERS[0]


_PEERS: list[AccessoryProcess] = []


@pytest.fixture(autouse=True)
def _remember_peer(paired: PairedPeer) -> None:
    if not _PEERS:
        _PEERS.append(paired.peer)


async def test_set_writes_exactly_once(
    harness: ControllerHarness, probe: MqttProbe, paired: PairedPeer
) -> None:
    await wait_online(probe)
    before = len(await paired.peer.writes())
    await probe.publish(f"{LIGHT}/Brightness/set", "40")
    await wait_for(
        lambda: last_payload(probe, f"{LIGHT}/Brightness") == b"40",
        timeout=5,
        message="Brightness 40 mirrored",
    )
    # Let any duplicate arrive before counting.
    await wait_for(lambda: True, timeout=0.5)
    writes = (await paired.peer.writes())[before:]
    assert writes == [{"aid": 2, "iid": BRIGHTNESS_IID, "value": 40}]
    assert await paired.peer.get(2, BRIGHTNESS_IID) == 40
    # Loose input is coerced to the format: "on" -> true for a bool.
    await probe.publish(f"{LIGHT}/On/set", "on")
    await wait_for(lambda: last_payload(probe, f"{LIGHT}/On") == b"1", timeout=5, message="On=1")
    assert (await paired.peer.writes())[before + 1 :] == [{"aid": 2, "iid": ON_IID, "value": True}]


async def test_set_refused_when_read_only_or_out_of_range(
    harness: ControllerHarness, probe: MqttProbe, paired: PairedPeer
) -> None:
    await wait_online(probe, "demo-3")
    before = len(await paired.peer.writes())
    await probe.publish(f"{SENSOR}/set", "30")
    message = await probe.wait_message(
        "HomeKit/bridge/event", lambda m: b"write_refused" in m.payload
    )
    event = json.loads(message.payload)
    assert event["device"] == "demo-3" and "read-only" in event["message"]
    await probe.publish(f"{LIGHT}/Brightness/set", "150")
    message = await probe.wait_message(
        "HomeKit/bridge/event", lambda m: b"invalid_value" in m.payload
    )
    assert "150" in json.loads(message.payload)["message"]
    await probe.publish(f"{LIGHT}/Brightness/set", "abc")
    await probe.wait_message(
        "HomeKit/bridge/event", lambda m: b"invalid_value" in m.payload and b"abc" in m.payload
    )
    assert len(await paired.peer.writes()) == before


async def test_get_reads_fresh(
    harness: ControllerHarness, probe: MqttProbe, paired: PairedPeer
) -> None:
    await wait_online(probe, "demo-3")
    count = len(payloads_on(probe, SENSOR))
    await probe.publish(f"{SENSOR}/get", "")
    await wait_for(
        lambda: len(payloads_on(probe, SENSOR)) > count, timeout=5, message="fresh read published"
    )


async def test_retained_set_is_ignored_and_cleared(
    paired: PairedPeer, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    await _ensure_running(paired.peer)
    async with mosquitto.probe() as writer:
        await writer.publish(f"{LIGHT}/On/set", "1", retain=True)
    before = len(await paired.peer.writes())
    async with mosquitto.probe() as probe:
        await probe.subscribe("HomeKit/#")
        async with ControllerHarness(paired.data_dir_for(tmp_path), mosquitto):
            await probe.wait_message(
                "HomeKit/bridge/event", lambda m: b"retained_command_ignored" in m.payload
            )
            await wait_online(probe)
        async with mosquitto.probe() as late:
            await late.subscribe(f"{LIGHT}/On/set")
            await wait_for(lambda: True, timeout=0.5)
            assert late.messages == []  # the retained command is gone
    assert len(await paired.peer.writes()) == before


async def test_restart_keeps_pairing_and_republishes(
    paired: PairedPeer, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    await _ensure_running(paired.peer)
    data_dir = paired.data_dir_for(tmp_path)
    async with mosquitto.probe() as probe:
        await probe.subscribe("HomeKit/#")
        async with ControllerHarness(data_dir, mosquitto):
            await wait_online(probe, "demo-3")
        # A clean stop says offline.
        assert last_payload(probe, "HomeKit/demo-3/availability") == b"offline"
        probe.messages.clear()
        async with ControllerHarness(data_dir, mosquitto) as again:
            await wait_online(probe, "demo-3")
            await wait_for(
                lambda: last_payload(probe, SENSOR) is not None, timeout=5, message="republished"
            )
            assert list(again.side.store.aliases()) == ["demo"]


async def test_republish_after_broker_restart(
    paired: PairedPeer, tmp_path: Path, make_mosquitto: object
) -> None:
    """A broker that lost everything gets every retained topic back on reconnect."""
    await _ensure_running(paired.peer)
    broker = make_mosquitto()  # type: ignore[operator]
    async with ControllerHarness(paired.data_dir_for(tmp_path), broker) as running:
        async with broker.probe() as probe:
            await probe.subscribe("HomeKit/#")
            await wait_online(probe, "demo-3")
        broker.stop()  # not persistent: retained messages are gone
        await wait_for(lambda: not running.link.connected, timeout=10, message="link down")
        broker.start()
        async with broker.probe() as probe:
            await probe.subscribe("HomeKit/+/#")
            await wait_for(
                lambda: {m.topic for m in probe.messages} >= EXPECTED_TOPICS,
                timeout=15,
                message="every topic republished",
            )


# ---- the CLI's other commands ------------------------------------------------------------
async def test_cli_accessories_get_put_watch(paired: PairedPeer) -> None:
    await _ensure_running(paired.peer)
    database = await commands.accessories(paired.config, "demo")
    assert {accessory["aid"] for accessory in database} == {1, 2, 3}
    listing = commands.format_topics("demo", database)
    assert "demo-2 (aid 2): Demo Light" in listing and "Lightbulb/Brightness" in listing
    before = len(await paired.peer.writes())
    brightness = "demo-2/Lightbulb/Brightness"
    assert await commands.put(paired.config, "demo", [((2, BRIGHTNESS_IID), "55")]) == [
        commands.Reading(2, BRIGHTNESS_IID, brightness, 55)
    ]
    assert (await paired.peer.writes())[before:] == [{"aid": 2, "iid": BRIGHTNESS_IID, "value": 55}]
    result = await commands.get(paired.config, "demo", [(2, BRIGHTNESS_IID)])
    assert result == [commands.Reading(2, BRIGHTNESS_IID, brightness, 55)]
    with pytest.raises(Exception, match="read-only"):
        await commands.put(paired.config, "demo", [((3, TEMPERATURE_IID), "1")])


# ---- faults: availability, reconnect, new port, c# ---------------------------------------
async def test_availability_follows_the_accessory_process(
    harness: ControllerHarness, probe: MqttProbe, paired: PairedPeer
) -> None:
    await wait_online(probe, "demo-3")
    killed = time.monotonic()
    await paired.peer.kill()
    await wait_for(
        lambda: last_payload(probe, "HomeKit/demo-3/availability") == b"offline",
        timeout=10,
        message="offline after kill",
    )
    offline_after = time.monotonic() - killed
    # A write while offline is refused at once, not queued.
    await probe.publish(f"{LIGHT}/On/set", "0")
    await probe.wait_message(
        "HomeKit/bridge/event", lambda m: b"offline; not sent" in m.payload, timeout=5
    )
    started = time.monotonic()
    await paired.peer.start()  # same port
    await wait_online(probe, "demo-3", timeout=10)
    online_after = time.monotonic() - started
    print(
        f"offline {offline_after * 1000:.0f} ms after kill; online {online_after:.2f} s after start"
    )
    assert last_payload(probe, "HomeKit/demo/availability") == b"online"
    session = harness.side.sessions["demo"]
    # Bounded: a few attempts at most with reconnect_max 1 s.
    assert session.connect_attempts < 30


async def test_reconnects_when_the_accessory_moves_to_another_port(
    harness: ControllerHarness, probe: MqttProbe, paired: PairedPeer
) -> None:
    await wait_online(probe, "demo-3")
    old_port = paired.peer.port
    await paired.peer.kill()
    await wait_for(
        lambda: last_payload(probe, "HomeKit/demo-3/availability") == b"offline",
        timeout=10,
        message="offline after kill",
    )
    started = time.monotonic()
    await paired.peer.start(port=0)
    assert paired.peer.port != old_port
    await wait_online(probe, "demo-3", timeout=10)
    print(f"online {time.monotonic() - started:.2f} s after the accessory came back on a new port")
    session = harness.side.sessions["demo"]
    assert session.pairing.connection.port == paired.peer.port
    # Values flow again.
    await paired.peer.set(3, TEMPERATURE_IID, 19.0)
    await probe.wait_message(SENSOR, lambda m: m.payload == b"19", timeout=5)
    # ... and the new endpoint is stored for the next start.
    stored = harness.side.store.get("demo")
    assert stored["AccessoryPort"] == paired.peer.port


async def test_config_number_change_rereads_the_database(
    harness: ControllerHarness, probe: MqttProbe, paired: PairedPeer
) -> None:
    await wait_online(probe, "demo-3")
    session = harness.side.sessions["demo"]
    await wait_for(
        lambda: session.pairing.description is not None, timeout=10, message="zeroconf record"
    )
    await wait_for(lambda: session._db_config_num is not None, timeout=10, message="c# known")
    reads = session.database_reads
    started = time.monotonic()
    new_config = await paired.peer.bump_config()
    await wait_for(
        lambda: session.database_reads > reads and session._db_config_num == new_config,
        timeout=10,
        message="database re-read after c# change",
    )
    print(f"database re-read {time.monotonic() - started:.2f} s after the c# bump")
    assert session.max_concurrent_reads == 1
