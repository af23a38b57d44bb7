"""More devices than one HAP bridge takes: bridge 2, 3 ... open in the same process, each
paired on its own, and every device stays on its bridge with its aid and iids."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.support.accessories import SERIAL_NUMBER, structure
from tests.support.bridge_api import request
from tests.support.bridge_process import BridgeProcess, settled_config_number
from tests.support.hap_client import HapClient
from tests.support.mosquitto import Mosquitto, MqttProbe
from tests.support.wait import wait_for

#: Two services a device, so each accessory carries several iids that must not shift.
TOPICS = [
    ("TemperatureSensor", "CurrentTemperature", "21.5"),
    ("Lightbulb", "On", "1"),
]
DEVICES = [f"dev{n:03d}" for n in range(300)]


async def publish_retained(mosquitto: Mosquitto, devices: list[str]) -> None:
    async with MqttProbe(mosquitto.host, mosquitto.port) as device:
        for device_id in devices:
            for service, characteristic, value in TOPICS:
                await device.publish(
                    f"HomeKit/{device_id}/{service}/{characteristic}", value, retain=True
                )


async def newest(
    probe: MqttProbe, topic: str, check: Callable[[Any], bool], timeout: float = 30
) -> Any:
    """The newest retained JSON on `topic` once it satisfies `check`."""

    def current() -> Any:
        messages = probe.messages_on(topic)
        if not messages:
            return None
        data = json.loads(messages[-1].payload)
        return data if check(data) else None

    return await wait_for(current, timeout=timeout, message=f"{topic} as expected")


def all_shown(count: int) -> Callable[[Any], bool]:
    def check(catalogue: list[dict[str, Any]]) -> bool:
        shown = [entry for entry in catalogue if entry["aid"] is not None]
        return len(shown) == count and all(len(entry["services"]) == 2 for entry in shown)

    return check


def serials(accessories: list[dict[str, Any]]) -> dict[str, int]:
    """device id (the serial number) -> aid, for every bridged accessory."""
    found = {}
    for accessory in accessories:
        for service in accessory["services"]:
            for char in service["characteristics"]:
                if (
                    char["type"].upper().startswith(f"000000{SERIAL_NUMBER}-")
                    and accessory["aid"] != 1
                ):
                    found[char["value"]] = accessory["aid"]
    return found


async def restarted(
    bridge: BridgeProcess, probe: MqttProbe, stop: Callable[[], object], count: int
) -> dict[str, tuple[int, int]]:
    """Stop the bridge (`stop`: SIGTERM or kill -9), start it again, and return where the
    catalogue it publishes then places the devices, once all `count` are shown."""
    topic = "HomeKit/bridge/devices"
    stop()
    seen = len(probe.messages_on(topic))
    bridge.start()
    shown = all_shown(count)
    return placement(
        await newest(probe, topic, lambda c: len(probe.messages_on(topic)) > seen and shown(c))
    )


def placement(catalogue: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """device id -> (bridge, aid) as bridge/devices says."""
    return {
        entry["id"]: (entry["bridge"], entry["aid"])
        for entry in catalogue
        if entry["aid"] is not None
    }


async def databases(bridge: BridgeProcess, pairings: dict[int, dict[str, Any]]) -> dict[int, Any]:
    """Each bridge's accessory database, read by its own paired controller."""
    found = {}
    for number, pairing in pairings.items():
        home = HapClient.from_pairing_data(pairing)
        try:
            found[number] = await home.list_accessories()
        finally:
            await home.close()
    return found


async def test_300_devices_on_3_bridges_each_paired_and_kept_across_restarts(
    make_bridge: Callable[..., BridgeProcess], mosquitto: Mosquitto
) -> None:
    await publish_retained(mosquitto, DEVICES)
    async with MqttProbe(mosquitto.host, mosquitto.port) as probe:
        await probe.subscribe("HomeKit/bridge/#")
        bridge = make_bridge(hap_ports=3)
        catalogue = await newest(probe, "HomeKit/bridge/devices", all_shown(300), timeout=60)
        placed = placement(catalogue)
        assert Counter(number for number, _ in placed.values()) == {1: 149, 2: 149, 3: 2}

        info = await newest(probe, "HomeKit/bridge/info", lambda i: i["accessories"] == 300)
        assert info["accessories"] == 300
        assert [
            (b["bridge"], b["name"], b["hap_port"], b["paired"], b["accessories"])
            for b in info["bridges"]
        ] == [
            (1, "Test Bridge", bridge.port_of(1), False, 149),
            (2, "Test Bridge 2", bridge.port_of(2), False, 149),
            (3, "Test Bridge 3", bridge.port_of(3), False, 2),
        ]
        assert all(b["setup_uri"].startswith("X-HM://") for b in info["bridges"])
        assert len({b["hap_device_id"] for b in info["bridges"]}) == 3
        # Each bridge's code and QR: on the terminal and in its own folder, never logged.
        for number in (1, 2, 3):
            assert (bridge.state_dir(number) / "setup-qr.png").exists()
            assert f"HomeKit bridge 'Test Bridge{f' {number}' if number > 1 else ''}' on port" in (
                bridge.terminal()
            )
        assert bridge.setup_code not in bridge.logs()

        pairings: dict[int, dict[str, Any]] = {}
        for number in (1, 2, 3):
            home = await HapClient.pair(
                bridge.host, bridge.port_of(number), bridge.device_id_of(number), bridge.setup_code
            )
            pairings[number] = home.pairing_data
            await home.close()
        paired = await newest(
            probe, "HomeKit/bridge/info", lambda i: all(b["paired"] for b in i["bridges"])
        )
        assert not any("setup_uri" in b for b in paired["bridges"])

    before = await databases(bridge, pairings)
    for number, accessories in before.items():
        # Each Home app sees exactly the devices bridge/devices places on its bridge.
        expected = {d: aid for d, (n, aid) in placed.items() if n == number}
        assert serials(accessories) == expected
    config_numbers = {
        n: await settled_config_number(
            f"Test Bridge{f' {n}' if n > 1 else ''}", bridge.device_id_of(n)
        )
        for n in (1, 2, 3)
    }

    for stop in (bridge.stop, bridge.kill9):
        stop()
        bridge.start()
        after = await databases(bridge, pairings)
        assert {n: structure(a) for n, a in after.items()} == {
            n: structure(a) for n, a in before.items()
        }
        assert {n: serials(a) for n, a in after.items()} == {
            n: serials(a) for n, a in before.items()
        }
    for number, config_number in config_numbers.items():
        name = f"Test Bridge{f' {number}' if number > 1 else ''}"
        assert await settled_config_number(name, bridge.device_id_of(number)) == config_number


async def test_a_removed_device_comes_back_to_its_bridge_and_aid_and_moves_nobody(
    make_bridge: Callable[..., BridgeProcess], mosquitto: Mosquitto
) -> None:
    devices = DEVICES[:151]
    await publish_retained(mosquitto, devices)
    async with MqttProbe(mosquitto.host, mosquitto.port) as probe:
        await probe.subscribe("HomeKit/#")
        make_bridge(hap_ports=2)
        placed = placement(
            await newest(probe, "HomeKit/bridge/devices", all_shown(151), timeout=60)
        )
        [on_bridge_2, other] = sorted(d for d, (n, _) in placed.items() if n == 2)

        removed = await request(probe, "device/remove", {"id": on_bridge_2})
        assert removed["status"] == "ok"
        gone = await newest(probe, "HomeKit/bridge/devices", all_shown(150))
        # Room freed, nobody moved: every other device keeps its bridge and aid.
        assert placement(gone) == {d: p for d, p in placed.items() if d != on_bridge_2}

        await publish_retained(mosquitto, [on_bridge_2])
        back = placement(await newest(probe, "HomeKit/bridge/devices", all_shown(151)))
        assert back == placed
        assert back[other][0] == 2


async def test_the_bridge_option_moves_one_device(
    make_bridge: Callable[..., BridgeProcess], mosquitto: Mosquitto
) -> None:
    await publish_retained(mosquitto, ["mover", "stayer"])
    async with MqttProbe(mosquitto.host, mosquitto.port) as probe:
        await probe.subscribe("HomeKit/#")
        bridge = make_bridge(hap_ports=3, homekit={"bridges": 3})
        placed = placement(await newest(probe, "HomeKit/bridge/devices", all_shown(2)))
        assert placed == {"mover": (1, 2), "stayer": (1, 3)}
        home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, "482-91-735")
        try:
            refused = await request(probe, "device/options", {"id": "mover", "bridge": 4})
            assert (refused["status"], refused["field"]) == ("error", "bridge")
            assert "above homekit.bridges (3)" in refused["error"]

            moved = await request(probe, "device/options", {"id": "mover", "bridge": 3})
            assert moved["data"]["options"]["bridge"] == 3
            # It leaves bridge 1 and appears on bridge 3 (opened for it) with aid 2 there.
            after = placement(
                await newest(
                    probe, "HomeKit/bridge/devices", lambda c: placement(c)["mover"][0] == 3
                )
            )
            assert after == {"mover": (3, 2), "stayer": (1, 3)}
            await wait_for(
                lambda: _serials_now(home, {"stayer": 3}), message="mover gone from bridge 1"
            )
        finally:
            await home.close()
        third = await HapClient.pair(
            bridge.host, bridge.port_of(3), bridge.device_id_of(3), bridge.setup_code
        )
        try:
            assert serials(await third.list_accessories()) == {"mover": 2}
        finally:
            await third.close()
        assert not bridge.state_dir(2).exists()  # bridge 2 was never needed

        # A reset moves nobody; a restart neither.
        reset = await request(probe, "device/options", {"id": "mover", "reset": ["bridge"]})
        assert reset["data"]["options"]["bridge"] is None
        assert await restarted(bridge, probe, bridge.stop, 2) == {
            "mover": (3, 2),
            "stayer": (1, 3),
        }

        # bridge.yaml's `devices.<id>.bridge` moves it back: its old aid on bridge 1 is kept.
        bridge.config["devices"] = {"mover": {"bridge": 1}}
        assert await restarted(bridge, probe, bridge.stop, 2) == {
            "mover": (1, 2),
            "stayer": (1, 3),
        }


async def _serials_now(home: HapClient, expected: dict[str, int]) -> bool:
    return serials(await home.list_accessories()) == expected


async def test_a_bridge_known_only_from_its_ids_is_kept(
    make_bridge: Callable[..., BridgeProcess], mosquitto: Mosquitto
) -> None:
    """A device's first bridge reaches bridge-assignments.json a moment after it is shown;
    killed before (here: the file is gone), the bridge whose ids know it takes it back. So
    does an install from before there were several bridges (no such file, bridge 1's ids)."""
    await publish_retained(mosquitto, ["solo", "other"])
    async with MqttProbe(mosquitto.host, mosquitto.port) as probe:
        await probe.subscribe("HomeKit/#")
        bridge = make_bridge(hap_ports=2, devices={"solo": {"bridge": 2}})
        expected = {"solo": (2, 2), "other": (1, 2)}
        assert placement(await newest(probe, "HomeKit/bridge/devices", all_shown(2))) == expected
        bridge.kill9()
        for name in ("bridge-assignments.json", "bridge-assignments.json.bak"):
            (bridge.data_dir / name).unlink(missing_ok=True)
        bridge.config["devices"] = {}
        assert await restarted(bridge, probe, lambda: None, 2) == expected


async def test_a_bridge_whose_port_is_taken_does_not_open(
    make_bridge: Callable[..., BridgeProcess], mosquitto: Mosquitto
) -> None:
    await publish_retained(mosquitto, ["esp"])
    async with MqttProbe(mosquitto.host, mosquitto.port) as probe:
        await probe.subscribe("HomeKit/#")
        bridge = make_bridge(hap_ports=2)
        await newest(probe, "HomeKit/bridge/devices", all_shown(1))
        with socket.socket() as squatter:
            squatter.bind((bridge.host, bridge.port_of(2)))
            squatter.listen()
            refused = await request(probe, "device/options", {"id": "esp", "bridge": 2})
            assert (refused["status"], refused["field"]) == ("error", "bridge")
            assert f"port {bridge.port_of(2)} is already in use" in refused["error"]
            assert "homekit.port + 1" in refused["error"]
            assert not bridge.state_dir(2).exists()  # not opened, nothing moved
            # A bridge once opened is checked at start like bridge 1: here, bridge 2.
            bridge.stop()
            (bridge.state_dir(2)).mkdir()
            (bridge.state_dir(2) / "homekit-state.json").write_text("{}")
            check = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mqtt_hk_bridge",
                    "check-config",
                    "-c",
                    str(bridge.config_path),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
        assert check.returncode == 2
        assert f"bridge 2 (port homekit.port + 1): homekit.port: port {bridge.port_of(2)}" in (
            check.stderr
        )
