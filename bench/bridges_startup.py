"""Start-up with 1,000 retained devices on 7 HAP bridges: how long until every bridge serves
all its accessories, the bridge's memory, and the event latency across the bridges.

    .venv/bin/python -m bench.bridges_startup [--devices N] [--samples N] [--json out.json]

Everything on 127.0.0.1, the bridge with the production timing (bench/README.md). Figures
are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.event_latency import (
    PIN,
    PRODUCTION,
    first_event,
    measured_on,
    meta,
    stat_header,
    stat_row,
    summary,
)
from bench.report import run_and_report
from mqtt_hk_bridge import const
from tests.support.accessories import SERIAL_NUMBER, char_of
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import Mosquitto, MqttProbe

TEMPERATURE_SENSOR, CURRENT_TEMPERATURE = "8A", "11"
#: What each device publishes, retained: a temperature and humidity sensor.
TOPICS = (
    ("TemperatureSensor", "CurrentTemperature", "20.0"),
    ("HumiditySensor", "CurrentRelativeHumidity", "45"),
)
#: A served device: its accessory carries its temperature.
SERVED_TYPE = f"000000{CURRENT_TEMPERATURE}-"
POLL_INTERVAL = 0.05
TIMEOUT = 120.0


def device_id(n: int) -> str:
    return f"bench-{n:04d}"


async def served(homes: dict[int, HapClient], devices: int, started: float) -> float:
    """Poll each bridge's /accessories until it serves all its devices with their
    temperature (149 each, the last one the rest); the time that took since `started`. A
    complete bridge is not asked again: the polling must not load the bridge for nothing."""
    expected = {
        number: min(
            const.MAX_BRIDGED_ACCESSORIES, devices - (number - 1) * const.MAX_BRIDGED_ACCESSORIES
        )
        for number in homes
    }

    async def count(home: HapClient) -> int:
        accessories = await home.list_accessories()
        return sum(
            1
            for accessory in accessories
            for service in accessory["services"]
            for char in service["characteristics"]
            if char["type"].upper().startswith(SERVED_TYPE) and char.get("value") is not None
        )

    waiting = set(homes)
    while waiting:
        numbers = sorted(waiting)
        counts = await asyncio.gather(*(count(homes[number]) for number in numbers))
        waiting -= {n for n, found in zip(numbers, counts, strict=True) if found >= expected[n]}
        if time.monotonic() - started > TIMEOUT:
            raise RuntimeError(f"bridges {sorted(waiting)} incomplete after {TIMEOUT:g} s")
        if waiting:
            await asyncio.sleep(POLL_INTERVAL)
    return time.monotonic() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


async def start_and_pair(bridge: BridgeProcess, bridges: int) -> dict[int, HapClient]:
    """Spawn the bridge with a fresh data dir and pair with each of its HAP bridges as it
    opens (a second one opens once the first is full)."""
    await asyncio.to_thread(bridge.start)
    homes: dict[int, HapClient] = {}
    deadline = time.monotonic() + TIMEOUT
    while len(homes) < bridges:
        number = len(homes) + 1
        state = bridge.state_dir(number) / "homekit-state.json"
        if not state.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"bridge {number} did not open")
            await asyncio.sleep(POLL_INTERVAL)
            continue
        try:
            homes[number] = await HapClient.pair(
                bridge.host, bridge.port_of(number), bridge.device_id_of(number), PIN
            )
        except OSError:
            await asyncio.sleep(POLL_INTERVAL)  # its port not served yet
    return homes


async def close_all(homes: dict[int, HapClient]) -> None:
    for home in homes.values():
        await home.close()


async def temperature_char(home: HapClient, device: str) -> tuple[int, int]:
    for accessory in await home.list_accessories():
        for service in accessory["services"]:
            for char in service["characteristics"]:
                if char["type"].upper().startswith(f"000000{SERIAL_NUMBER}-") and (
                    char.get("value") == device
                ):
                    aid = int(accessory["aid"])
                    iid = char_of([accessory], aid, TEMPERATURE_SENSOR, CURRENT_TEMPERATURE)["iid"]
                    return aid, int(iid)
    raise RuntimeError(f"{device} is not on this bridge")


async def event_latencies(
    homes: dict[int, HapClient], placed: dict[int, str], publisher: MqttProbe, samples: int
) -> dict[str, Any]:
    """Isolated changes round-robin over one device per bridge: each device changes again
    only after more than one event window, so every change is a leading edge."""
    targets = {}
    for number, device in placed.items():
        char = await temperature_char(homes[number], device)
        await homes[number].subscribe([char])
        targets[number] = (char, device)
    spacing = (const.DEFAULT_EVENT_WINDOW + 0.25) / len(targets)
    latencies: list[float] = []
    missed = 0
    numbers = sorted(targets)
    for index in range(samples):
        number = numbers[index % len(numbers)]
        char, device = targets[number]
        value = 21.0 + 0.5 * (index // len(numbers) % 2)
        started = time.monotonic()
        await publisher.publish(
            f"HomeKit/{device}/TemperatureSensor/CurrentTemperature", f"{value}"
        )
        event = await first_event(homes[number], char, value, started)
        if event is None:
            missed += 1
        else:
            latencies.append(event.at - started)
        await asyncio.sleep(max(0.0, started + spacing - time.monotonic()))
    return summary(latencies, missed)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    bridges = math.ceil(args.devices / const.MAX_BRIDGED_ACCESSORIES)
    with tempfile.TemporaryDirectory(prefix="bench-bridges-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto")
        await asyncio.to_thread(broker.start)
        bridge = BridgeProcess(work / "bridge", broker.port, hap_ports=bridges, **PRODUCTION)
        try:
            async with MqttProbe(broker.host, broker.port) as publisher:
                published = time.monotonic()
                for n in range(args.devices):
                    for service, characteristic, value in TOPICS:
                        await publisher.publish(
                            f"HomeKit/{device_id(n)}/{service}/{characteristic}",
                            value,
                            retain=True,
                        )
                publish_s = time.monotonic() - published

                started = time.monotonic()
                homes = await start_and_pair(bridge, bridges)
                try:
                    first_s = await served(homes, args.devices, started)
                    first_rss = rss_mb(bridge.pid)
                    pairings = {n: home.pairing_data for n, home in homes.items()}
                finally:
                    await close_all(homes)
                await asyncio.to_thread(bridge.stop)

                started = time.monotonic()
                await asyncio.to_thread(bridge.start)
                listening_s = time.monotonic() - started
                homes = {n: HapClient.from_pairing_data(p) for n, p in pairings.items()}
                try:
                    restart_s = await served(homes, args.devices, started)
                    restart_rss = rss_mb(bridge.pid)
                    catalogue = await publisher_catalogue(broker)
                    per_bridge = {
                        n: sum(1 for entry in catalogue if entry["bridge"] == n)
                        for n in sorted(homes)
                    }
                    one_each = {
                        n: next(e["id"] for e in catalogue if e["bridge"] == n)
                        for n in sorted(homes)
                    }
                    events = await event_latencies(homes, one_each, publisher, args.samples)
                    settled_rss = rss_mb(bridge.pid)
                finally:
                    await close_all(homes)
        finally:
            await asyncio.to_thread(bridge.stop)
            await asyncio.to_thread(broker.close)
    return {
        "meta": meta(),
        "devices": args.devices,
        "bridges": bridges,
        "per_bridge": per_bridge,
        "publish_retained_s": round(publish_s, 2),
        "first_start_s": round(first_s, 2),
        "first_start_rss_mb": first_rss,
        "restart_s": round(restart_s, 2),
        "restart_hap_listening_s": round(listening_s, 2),
        "restart_rss_mb": restart_rss,
        "rss_after_events_mb": settled_rss,
        "event": events,
    }


async def publisher_catalogue(broker: Mosquitto) -> list[dict[str, Any]]:
    """The retained bridge/devices once it lists every device with its bridge."""
    async with MqttProbe(broker.host, broker.port) as reader:
        await reader.subscribe("HomeKit/bridge/devices")
        message = await reader.wait_message("HomeKit/bridge/devices", timeout=30)
        return list(json.loads(message.payload))


def render(report: dict[str, Any]) -> str:
    m = report["meta"]
    return "\n".join(
        [
            measured_on(m, f"event_window {m['timing']['event_window']} s, loopback"),
            "",
            f"{report['devices']} devices (2 retained topics each) on {report['bridges']} HAP "
            f"bridges: {report['per_bridge']}",
            f"   fresh data dir: every bridge serves all its accessories {report['first_start_s']}"
            f" s after spawning the bridge (opening and pairing {report['bridges']} bridges "
            f"included); RSS {report['first_start_rss_mb']} MB",
            f"   restart: every bridge serves all its accessories {report['restart_s']} s after "
            f"spawning (HAP listening after {report['restart_hap_listening_s']} s); "
            f"RSS {report['restart_rss_mb']} MB, {report['rss_after_events_mb']} MB after the "
            "events",
            "",
            stat_header("MQTT publish -> HAP event (ms)"),
            stat_row("isolated change, round-robin over the bridges", report["event"]),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=21, help="isolated changes (3 a bridge)")
    run_and_report(parser, argv, run, render)


if __name__ == "__main__":
    main()
