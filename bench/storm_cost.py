"""What a message costs: the bridge next to a plain HAP-python bridge, in one run.

    .venv/bin/python -m bench.storm_cost [--sensors 50] [--rate 1000] [--seconds 5]
        [--repeats 3] [--samples 10] [--json out.json]

Everything on 127.0.0.1: one Mosquitto; our bridge as a subprocess with the production
timing (bench/README.md); the plain HAP-python bridge (`bench.hap_python_bridge`: aiomqtt
on MQTT 3.1.1, `set_value`, HAP-python's own 0.5 s coalescing) as another subprocess; and
aiohomekit standing in for the Home app, paired with each and subscribed to every sensor.
Each bridge shows `--sensors` TemperatureSensors. Figures are reported, never asserted.

- RSS after pairing (every sensor shown and subscribed), from /proc.
- Isolated changes (leading edge) round-robin over the sensors, publish -> HAP EVENT.
- The storm: another process publishes `--rate` messages a second for `--seconds`,
  round-robin over the sensors (QoS 0, as the bridges subscribe). Bridge CPU (user +
  system, /proc) from the storm's first publish until 1.5 s after its last (every trailing
  event is out by then), the EVENT frames and events the controller got, and whether every
  sensor's final value arrived. Repeated `--repeats` times for each bridge, taking turns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bridges_startup import rss_mb
from bench.event_latency import (
    HAP_PYTHON_WINDOW,
    PIN,
    PRODUCTION,
    CharId,
    isolated_changes,
    measured_on,
    meta,
    near,
    stat_header,
    stat_row,
    summary,
)
from bench.report import run_and_report
from bench.storm_publisher import storm_values
from mqtt_hk_bridge import const
from tests.support.accessories import aid_of, char_of
from tests.support.bridge_process import REPO_ROOT, BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import Mosquitto, MqttProbe
from tests.support.wait import free_port

TEMPERATURE_SENSOR, CURRENT_TEMPERATURE = "8A", "11"
#: CPU is read until this long after the storm's last publish (one event window and more).
TAIL_SECONDS = 1.5
IDLE_SECONDS = 2.0
START_TIMEOUT = 30.0


def cpu_times(pid: int) -> tuple[float, float]:
    """user and system CPU time of a process, in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


class Target:
    """One bridge under test: how to reach its sensors and the controller paired with it."""

    def __init__(
        self, name: str, pid: int, base: str, home: HapClient, chars: dict[str, CharId]
    ) -> None:
        self.name = name
        self.pid = pid
        self.base = base
        self.home = home
        self.chars = chars  # sensor id -> (aid, iid)

    def topic(self, sensor: str) -> str:
        return f"{self.base}/{sensor}/TemperatureSensor/CurrentTemperature"


# --- the two bridges -------------------------------------------------------------------------


def ours_sensor(n: int) -> str:
    return f"cost-{n}"


async def start_ours(
    work: Path, broker: Mosquitto, sensors: int, protocol: str = "auto"
) -> tuple[BridgeProcess, Target]:
    mqtt = {"host": "127.0.0.1", "port": broker.port, "protocol": protocol}
    bridge = BridgeProcess(work / "bridge", broker.port, **PRODUCTION, mqtt=mqtt)
    await asyncio.to_thread(bridge.start)
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, PIN)
    names = [ours_sensor(n) for n in range(1, sensors + 1)]
    async with MqttProbe(broker.host, broker.port) as device:
        for name in names:
            await device.publish(f"HomeKit/{name}/TemperatureSensor/CurrentTemperature", "50")
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        accessories = await home.list_accessories()
        try:
            chars = {
                name: (
                    aid := aid_of(accessories, name),
                    int(char_of(accessories, aid, TEMPERATURE_SENSOR, CURRENT_TEMPERATURE)["iid"]),
                )
                for name in names
            }
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{sensors} sensors not shown within {START_TIMEOUT} s"
                ) from None
            await asyncio.sleep(0.2)
    await home.subscribe(chars.values())
    return bridge, Target("mqtt-hk-bridge", bridge.pid, "HomeKit", home, chars)


async def start_plain(
    work: Path, broker: Mosquitto, sensors: int
) -> tuple[asyncio.subprocess.Process, Target]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bench.hap_python_bridge", "--mqtt-port", str(broker.port)),
        *("--hap-port", str(port), "--state", str(work / "plain.state")),
        *("--sensors", str(sensors), "--base", "Plain"),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    async with asyncio.timeout(START_TIMEOUT):
        ready = json.loads(await process.stdout.readline())
    home = await HapClient.pair("127.0.0.1", port, ready["device_id"], PIN)
    chars = {name: (int(aid), int(iid)) for name, (aid, iid) in ready["aids"].items()}
    await home.subscribe(chars.values())
    return process, Target("plain HAP-python", process.pid, "Plain", home, chars)


# --- figures ---------------------------------------------------------------------------------


async def isolated(
    target: Target, device: MqttProbe, samples: int, window: float
) -> dict[str, Any]:
    def change(sensor: str) -> Any:
        async def publish(value: float) -> None:
            await device.publish(target.topic(sensor), f"{value:.1f}")

        return publish

    targets = [(char, change(sensor)) for sensor, char in target.chars.items()]
    latencies, missed = await isolated_changes(
        target.home, targets, samples, spacing=1.25, window=window
    )
    return summary(latencies, missed)


async def storm(target: Target, port: int, rate: int, seconds: float) -> dict[str, Any]:
    """One storm on `target`'s sensors; its CPU, frames and events."""
    sensors = list(target.chars)
    count = int(rate * seconds)
    idle_before = cpu_seconds(target.pid)
    await asyncio.sleep(IDLE_SECONDS)
    cpu_before = cpu_seconds(target.pid)
    system_before = cpu_times(target.pid)[1]
    idle_ms_per_s = (cpu_before - idle_before) * 1000 / IDLE_SECONDS
    started = time.monotonic()
    publisher = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bench.storm_publisher", "--port", str(port)),
        *(arg for sensor in sensors for arg in ("--topic", target.topic(sensor))),
        *("--count", str(count), "--seconds", str(seconds), "--qos", "0"),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
    )
    output, _ = await publisher.communicate()
    result = json.loads(output.decode().strip().splitlines()[-1])
    await asyncio.sleep(max(0.0, float(result["last"]) + TAIL_SECONDS - time.monotonic()))
    cpu_ms = (cpu_seconds(target.pid) - cpu_before) * 1000
    system_ms = (cpu_times(target.pid)[1] - system_before) * 1000
    wall = time.monotonic() - started
    finals = {sensor: 0.0 for sensor in sensors}
    for index, value in enumerate(storm_values(count)):
        finals[sensors[index % len(sensors)]] = float(value)
    events = [e for e in target.home.events if e.at >= started]
    arrived = 0
    for sensor, char in target.chars.items():
        mine = [e for e in events if (e.aid, e.iid) == char]
        arrived += bool(mine) and near(mine[-1].value, finals[sensor])
    return {
        "publishes": int(result["count"]),
        "publish_seconds": round(float(result["last"]) - float(result["first"]), 2),
        "cpu_ms": round(cpu_ms),
        "system_ms": round(system_ms),
        "us_per_message": round(cpu_ms * 1000 / count),
        "idle_ms_per_s": round(idle_ms_per_s, 1),
        "wall_s": round(wall, 2),
        "frames": len({e.at for e in events}),  # one arrival time per EVENT frame
        "events": len(events),
        "final_values_arrived": arrived,
    }


def spread(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    values = [run[key] for run in runs]
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto")
        await asyncio.to_thread(broker.start)
        bridge: BridgeProcess | None = None
        plain: asyncio.subprocess.Process | None = None
        targets: list[Target] = []
        try:
            bridge, ours = await start_ours(work, broker, args.sensors, args.protocol)
            plain, theirs = await start_plain(work, broker, args.sensors)
            targets = [ours, theirs]
            rss = {t.name: rss_mb(t.pid) for t in targets}
            windows = {ours.name: const.DEFAULT_EVENT_WINDOW, theirs.name: HAP_PYTHON_WINDOW}
            async with MqttProbe(broker.host, broker.port) as device:
                latency = {
                    t.name: await isolated(t, device, args.samples, windows[t.name])
                    for t in targets
                }
            storms: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
            for repeat in range(args.repeats):
                # Taking turns, the first one alternating: drift on the shared machine
                # falls on both.
                for target in targets if repeat % 2 == 0 else targets[::-1]:
                    storms[target.name].append(
                        await storm(target, broker.port, args.rate, args.seconds)
                    )
            rss_after = {t.name: rss_mb(t.pid) for t in targets}
        except BaseException:
            if bridge is not None:
                print(f"bridge log tail:\n{bridge.log()[-3000:]}", file=sys.stderr)
            raise
        finally:
            for target in targets:
                await target.home.close()
            if plain is not None and plain.returncode is None:
                plain.terminate()
                await plain.wait()
            if bridge is not None:
                await asyncio.to_thread(bridge.stop)
            await asyncio.to_thread(broker.close)
    return {
        "meta": meta(),
        "sensors": args.sensors,
        "rate": args.rate,
        "seconds": args.seconds,
        "bridges": {
            name: {
                "rss_after_pairing_mb": rss[name],
                "rss_after_storms_mb": rss_after[name],
                "isolated_change": latency[name],
                "storms": runs,
                "cpu_ms": spread(runs, "cpu_ms"),
                "us_per_message": spread(runs, "us_per_message"),
                "frames": spread(runs, "frames"),
            }
            for name, runs in storms.items()
        },
    }


def render(report: dict[str, Any]) -> str:
    m = report["meta"]
    count = int(report["rate"] * report["seconds"])
    lines = [
        measured_on(m, "loopback"),
        f"{report['sensors']} sensors; storm {report['rate']} msg/s x {report['seconds']:g} s "
        f"({count} publishes) round-robin over them",
        "",
        f"{'':<18}{'RSS MB':>8}{'CPU ms (min/med/max)':>24}{'us/msg':>8}{'frames':>8}"
        f"{'events':>8}{'finals':>8}",
    ]
    for name, b in report["bridges"].items():
        cpu = "/".join(str(b["cpu_ms"][key]) for key in ("min", "median", "max"))
        last = b["storms"][-1]
        finals = f"{last['final_values_arrived']}/{report['sensors']}"
        lines.append(
            f"{name:<18}{b['rss_after_pairing_mb']:>8}{cpu:>24}"
            f"{b['us_per_message']['median']:>8}{b['frames']['median']:>8}"
            f"{last['events']:>8}{finals:>8}"
        )
    lines += [
        "",
        stat_header("isolated change, publish -> HAP event (ms)"),
    ]
    for name, b in report["bridges"].items():
        lines.append(stat_row(name, b["isolated_change"]))
    lines.append("")
    for name, b in report["bridges"].items():
        cpus = ", ".join(str(run["cpu_ms"]) for run in b["storms"])
        system = ", ".join(str(run["system_ms"]) for run in b["storms"])
        idle = ", ".join(str(run["idle_ms_per_s"]) for run in b["storms"])
        took = ", ".join(str(run["publish_seconds"]) for run in b["storms"])
        lines.append(
            f"{name}: CPU ms per storm {cpus} (of which system {system}); idle ms/s {idle}; "
            f"publishing took {took} s"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sensors", type=int, default=50)
    parser.add_argument("--rate", type=int, default=1000, help="publishes a second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3, help="storms per bridge")
    parser.add_argument("--samples", type=int, default=10, help="isolated changes per bridge")
    parser.add_argument(
        "--protocol", default="auto", help="our bridge's mqtt.protocol (auto: MQTT 5 here)"
    )
    run_and_report(parser, argv, run, render)


if __name__ == "__main__":
    main()
