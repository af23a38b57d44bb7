"""Both sides in the one bridge process (issue 3 on top of issue 2): the daemon pairs with
a HomeKit accessory through the MQTT request API and through the CLI, mirrors it, writes
it, and never shows it again as one of its own bridged accessories (no loop)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.accessory_process import AccessoryProcess
from tests.support.bridge_process import REPO_ROOT, BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import MqttProbe
from tests.support.wait import wait_for

LIGHT_ON = "HomeKit/demo-2/Lightbulb/On"
FAST_CONTROLLER = {"reconnect_min": 0.2, "reconnect_max": 1.0, "poll_interval": 0}


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[AccessoryProcess]:
    accessory = AccessoryProcess(tmp_path)
    await accessory.start()
    try:
        yield accessory
    finally:
        await accessory.stop()


async def light_writes(peer: AccessoryProcess) -> list[object]:
    return [w["value"] for w in await peer.writes() if w["aid"] == 2]


async def test_pair_over_mqtt_then_mirror_write_and_no_loop(
    make_bridge, peer: AccessoryProcess, probe: MqttProbe
) -> None:
    bridge: BridgeProcess = make_bridge(controller=FAST_CONTROLLER)
    request = {
        "device_id": peer.device_id,
        "setup_code": peer.pin,
        "alias": "demo",
        "transaction": "t-1",
    }
    await probe.publish("HomeKit/bridge/request/pair", json.dumps(request))
    response = json.loads(
        (await probe.wait_message("HomeKit/bridge/response/pair", timeout=20)).payload
    )
    assert response["status"] == "ok", response
    assert response["transaction"] == "t-1"

    state = await probe.wait_message(LIGHT_ON, lambda m: m.retain or m.payload in (b"0", b"1"))
    assert state.payload in (b"0", b"1")
    await probe.publish(f"{LIGHT_ON}/set", "1")
    await wait_for(lambda: _nonempty(light_writes(peer)), message="write reached the light")
    await probe.publish("HomeKit/marker", "x")
    await probe.wait_message("HomeKit/marker")
    assert await light_writes(peer) == [True]  # exactly one write per /set
    # The accessory sends no event to its writer (aiohomekit reports the written value to
    # the session itself): the mirror shows the new state all the same.
    await probe.wait_message(LIGHT_ON, lambda m: m.payload == b"1")

    # The mirrored devices are in the catalogue as `homekit`, never as bridged accessories.
    devices = await probe.wait_message("HomeKit/bridge/devices", lambda m: b'"demo-2"' in m.payload)
    origins = {d["id"]: d["origin"] for d in json.loads(devices.payload)}
    assert origins["demo-2"] == "homekit"
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        assert [a["aid"] for a in await home.list_accessories()] == [1]
    finally:
        await home.close()


async def _nonempty(values) -> bool:
    return bool(await values)


async def test_cli_pairing_is_mirrored_after_a_restart(
    make_bridge, peer: AccessoryProcess, probe: MqttProbe
) -> None:
    bridge: BridgeProcess = make_bridge(controller=FAST_CONTROLLER)
    bridge.stop()
    result = subprocess.run(
        [
            sys.executable, "-m", "mqtt_hk_bridge", "pair", peer.device_id, peer.pin,
            "--alias", "demo", "-c", str(bridge.config_path),
        ],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    pairing_file = bridge.data_dir / "controller-pairings.json"
    assert pairing_file.stat().st_mode & 0o777 == 0o600

    bridge.start()
    await probe.wait_message(
        "HomeKit/demo/availability", lambda m: m.payload == b"online", timeout=20
    )
    await probe.wait_message(LIGHT_ON)
    await peer.set(2, 9, True)  # the light switched on at the accessory itself
    await probe.wait_message(LIGHT_ON, lambda m: m.payload == b"1")

    since = len(probe.messages)
    assert bridge.stop() == 0
    # A clean stop says goodbye for the mirror too.
    await probe.wait_message(
        "HomeKit/demo/availability",
        lambda m: m.payload == b"offline" and probe.messages.index(m) >= since,
    )


async def test_cli_pair_and_unpair_next_to_the_running_daemon(
    make_bridge, peer: AccessoryProcess, probe: MqttProbe
) -> None:
    bridge: BridgeProcess = make_bridge(controller=FAST_CONTROLLER)
    paired = _cli(bridge, "pair", peer.device_id, peer.pin, "--alias", "demo")
    assert paired.returncode == 0, paired.stderr
    await probe.wait_message(
        "HomeKit/demo/availability", lambda m: m.payload == b"online", timeout=10
    )
    await probe.wait_message(LIGHT_ON)

    unpaired = _cli(bridge, "unpair", "demo")
    assert unpaired.returncode == 0, unpaired.stderr
    # The daemon lets go of it: its retained mirror is cleared.
    await probe.wait_message(LIGHT_ON, lambda m: m.payload == b"", timeout=10)
    assert (await peer.info())["paired"] is False


def _cli(bridge: BridgeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mqtt_hk_bridge", *args, "-c", str(bridge.config_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_an_alias_that_would_take_over_an_mqtt_devices_topics_is_refused(
    make_bridge, peer: AccessoryProcess, probe: MqttProbe
) -> None:
    # A pairing called `kitchen` owns HomeKit/kitchen/... and HomeKit/kitchen-<n>/...: an MQTT
    # device with such an id would vanish from the Home app and its topics be taken as
    # commands to the accessory.
    bridge: BridgeProcess = make_bridge(controller=FAST_CONTROLLER)
    await probe.publish("HomeKit/kitchen/Switch/On", "1")
    await probe.publish("HomeKit/porch-2/Switch/On", "1")
    await probe.wait_message(
        "HomeKit/bridge/devices", lambda m: b'"kitchen"' in m.payload and b'"porch-2"' in m.payload
    )
    request = {"device_id": peer.device_id, "setup_code": peer.pin, "alias": "kitchen"}
    await probe.publish("HomeKit/bridge/request/pair", json.dumps(request))
    response = json.loads((await probe.wait_message("HomeKit/bridge/response/pair")).payload)
    assert response["status"] == "error", response
    assert "the MQTT device 'kitchen'" in response["error"], response

    # The CLI, which may run without the daemon, reads the devices the daemon saved.
    await wait_for(
        lambda: "porch-2" in (bridge.data_dir / "accessory-devices.json").read_text(),
        message="devices saved",
    )
    refused = _cli(bridge, "pair", peer.device_id, peer.pin, "--alias", "porch")
    assert refused.returncode != 0
    assert "the MQTT device 'porch-2'" in refused.stderr, refused.stderr
    assert (await peer.info())["paired"] is False
    devices = json.loads(probe.messages_on("HomeKit/bridge/devices")[-1].payload)
    assert {"kitchen", "porch-2"} <= {device["id"] for device in devices}
