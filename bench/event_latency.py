"""How fast a value change reaches the Home app, and a Home-app write reaches MQTT.

    /tmp/venv/bin/python -m bench.event_latency [--samples N] [--json out.json]

Everything on 127.0.0.1: a Mosquitto, the bridge as a subprocess with the production timing
(const.DEFAULT_*, log level info), aiohomekit as the Home app, and, as the peer baseline, a
plain HAP-python accessory in this process. Figures are reported, never asserted; see
bench/README.md for what each one means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import io
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pyhap.accessory import Accessory
from pyhap.accessory_driver import AccessoryDriver

from bench.report import run_and_report
from mqtt_hk_bridge import const
from tests.support.accessories import aid_of, char_of
from tests.support.bridge_process import REPO_ROOT, BridgeProcess
from tests.support.hap_client import HapClient, HapEvent, LoopbackZeroconf
from tests.support.mosquitto import Mosquitto, MqttProbe, ReceivedMessage
from tests.support.wait import free_port, wait_for

#: What users get: every timing key at its production default, logging at the default level.
PRODUCTION = {
    "log_level": "info",
    "timing": {
        "event_window": const.DEFAULT_EVENT_WINDOW,
        "config_debounce": const.DEFAULT_CONFIG_DEBOUNCE,
        "state_flush_interval": const.DEFAULT_STATE_FLUSH_INTERVAL,
        "reconnect_max": const.DEFAULT_RECONNECT_MAX,
    },
}
#: Peers' documented event pacing, in seconds (see docs/topics.md).
PEER_WINDOWS = {"HAP-python": 0.5, "HAP-NodeJS": 0.25, "Apple ADK": 1.0}
HAP_PYTHON_WINDOW = PEER_WINDOWS["HAP-python"]

BASE = "HomeKit"
TEMPERATURE_SENSOR, CURRENT_TEMPERATURE = "8A", "11"
SWITCH, ON = "49", "25"
#: Devices in the storm's shadow: isolated changes go round-robin over them, so each one's
#: changes stay more than a window apart while there are enough samples for a p95.
BYSTANDERS = tuple(f"bench-other-{n}" for n in range(1, 7))
TEMPERATURES = ("bench-temp", "bench-storm", *BYSTANDERS)


def state_topic(device_id: str) -> str:
    if device_id == "bench-switch":
        return f"{BASE}/{device_id}/Switch/On"
    return f"{BASE}/{device_id}/TemperatureSensor/CurrentTemperature"


SET_TOPIC = f"{state_topic('bench-switch')}/set"
IDLE_SECONDS = 2.0  # the bridge's idle CPU is read over this long before the storm
EVENT_TIMEOUT = 5.0  # an event later than this counts as missed
PIN = "482-91-735"

CharId = tuple[int, int]
Change = Callable[[float], Awaitable[None]]
Target = tuple[CharId, Change]  # a characteristic and how to change its value


# --- figures ---------------------------------------------------------------------------------


def summary(latencies: list[float], missed: int = 0) -> dict[str, Any]:
    """n, missed and min/median/p95/max in milliseconds (p95: nearest rank)."""
    ms = sorted(x * 1000 for x in latencies)
    if not ms:
        return {"n": 0, "missed": missed}
    p95 = ms[max(math.ceil(0.95 * len(ms)) - 1, 0)]
    return {
        "n": len(ms),
        "missed": missed,
        "min": round(ms[0], 1),
        "median": round(statistics.median(ms), 1),
        "p95": round(p95, 1),
        "max": round(ms[-1], 1),
    }


def child_cpu_seconds(module: str) -> float | None:
    """user + system CPU time of our child process running `python -m module` (Linux /proc)."""
    me = Path(f"/proc/{os.getpid()}/task")
    for children in me.glob("*/children"):
        for pid in children.read_text().split():
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if module.encode() in cmdline:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    ticks = os.sysconf("SC_CLK_TCK")
                    return (int(fields[11]) + int(fields[12])) / ticks
    return None


def near(value: Any, wanted: float) -> bool:
    return isinstance(value, int | float) and abs(value - wanted) < 0.01


async def first_event(
    home: HapClient, char: CharId, wanted: float, since: float, within: float = EVENT_TIMEOUT
) -> HapEvent | None:
    def match() -> HapEvent | None:
        return next((e for e in home.events_for(*char, since) if near(e.value, wanted)), None)

    with contextlib.suppress(AssertionError):
        return await wait_for(match, timeout=within, interval=0.005)
    return None


async def isolated_changes(
    home: HapClient,
    targets: list[Target],
    count: int,
    spacing: float,
    window: float,
    stop: asyncio.Event | None = None,
) -> tuple[list[float], int]:
    """Latency of `count` isolated changes, round-robin over `targets` (stop early when
    `stop` is set). Values go 20.0, 20.5, 20.0... per target, each unlike the one before.

    A target changes again only `spacing` after its previous change and at least one
    `window` (plus a margin) after its previous event arrived, so every change is a leading
    edge; with several targets, one change every spacing / len(targets).
    """
    latencies: list[float] = []
    missed = 0
    ready = [time.monotonic()] * len(targets)  # when each target may change next
    turn = time.monotonic()
    for index in range(count):
        slot = index % len(targets)
        char, change = targets[slot]
        await asyncio.sleep(max(ready[slot], turn) - time.monotonic())
        if stop is not None and stop.is_set():
            break
        value = 20.0 + 0.5 * (index // len(targets) % 2)
        started = time.monotonic()
        await change(value)
        event = await first_event(home, char, value, started)
        turn = started + spacing / len(targets)
        if event is None:
            missed += 1
            ready[slot] = time.monotonic() + window
            continue
        latencies.append(event.at - started)
        ready[slot] = max(started + spacing, event.at + window + 0.05)
    return latencies, missed


def publisher(device: MqttProbe, device_id: str) -> Change:
    topic = state_topic(device_id)

    async def publish(value: float) -> None:
        await device.publish(topic, f"{value:.1f}")

    return publish


# --- the bridge ------------------------------------------------------------------------------


async def bridge_figures(
    work: Path, samples: int, spacing: float, storm_count: int, storm_seconds: float
) -> dict[str, Any]:
    broker = Mosquitto(work / "mosquitto")
    await asyncio.to_thread(broker.start)
    bridge = BridgeProcess(work / "bridge", broker.port, **PRODUCTION)
    try:
        await asyncio.to_thread(bridge.start)
        home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, PIN)
        try:
            async with MqttProbe(broker.host, broker.port) as device:
                await device.subscribe(SET_TOPIC)
                chars = await create_devices(home, device)
                await home.subscribe([chars[device_id] for device_id in TEMPERATURES])
                window = const.DEFAULT_EVENT_WINDOW
                target = (chars["bench-temp"], publisher(device, "bench-temp"))
                latencies, missed = await isolated_changes(home, [target], samples, spacing, window)
                writes = await home_app_writes(home, device, chars["bench-switch"], samples)
                storm = await storm_figures(
                    home, device, broker.port, chars, storm_count, storm_seconds, spacing
                )
        finally:
            await home.close()
    except BaseException:
        print(f"bridge log tail:\n{bridge.log()[-3000:]}", file=sys.stderr)
        raise
    finally:
        await asyncio.to_thread(bridge.stop)
        await asyncio.to_thread(broker.close)
    return {
        "isolated_change": summary(latencies, missed),
        "home_app_write": writes,
        "storm": storm,
    }


async def create_devices(home: HapClient, device: MqttProbe) -> dict[str, CharId]:
    """Publish each bench device's first value; return the (aid, iid) of its characteristic.
    First values: 0 for the switch, 100 for the storm (unlike any storm value), else 50."""
    first = {"bench-switch": "0", "bench-storm": "100"}
    device_ids = ["bench-switch", *TEMPERATURES]
    for device_id in device_ids:
        await device.publish(state_topic(device_id), first.get(device_id, "50"))

    async def listed() -> list[dict[str, Any]] | None:
        accessories = await home.list_accessories()
        try:
            for device_id in device_ids:
                aid_of(accessories, device_id)
        except AssertionError:
            return None
        return accessories

    deadline = time.monotonic() + 15
    while (accessories := await listed()) is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the bench devices did not appear in /accessories within 15 s")
        await asyncio.sleep(0.2)
    chars: dict[str, CharId] = {}
    for device_id in device_ids:
        aid = aid_of(accessories, device_id)
        service, char = (
            (SWITCH, ON)
            if device_id == "bench-switch"
            else (TEMPERATURE_SENSOR, CURRENT_TEMPERATURE)
        )
        chars[device_id] = (aid, int(char_of(accessories, aid, service, char)["iid"]))
    return chars


async def home_app_writes(
    home: HapClient, device: MqttProbe, switch: CharId, samples: int
) -> dict[str, Any]:
    """PUT On (alternating) -> the command on .../On/set at the device."""
    latencies: list[float] = []
    missed = 0
    statuses: set[int] = set()
    for index in range(samples):
        started = time.monotonic()
        status = await home.put([(*switch, index % 2 == 0)])
        statuses.update(status.values())

        def arrived(message: ReceivedMessage, since: float = started) -> bool:
            return message.at >= since

        try:
            message = await device.wait_message(SET_TOPIC, arrived, timeout=EVENT_TIMEOUT)
        except AssertionError:
            missed += 1
            continue
        latencies.append(message.at - started)
        await asyncio.sleep(0.2)
    return {**summary(latencies, missed), "hap_statuses": sorted(statuses)}


async def storm_figures(
    home: HapClient,
    device: MqttProbe,
    port: int,
    chars: dict[str, CharId],
    count: int,
    seconds: float,
    spacing: float,
) -> dict[str, Any]:
    """`count` publishes on one characteristic from another process, while isolated changes
    on the bystander devices are timed; the bridge's CPU time is read from /proc."""
    window = const.DEFAULT_EVENT_WINDOW
    storm_char = chars["bench-storm"]
    idle_before = child_cpu_seconds("mqtt_hk_bridge")
    await asyncio.sleep(IDLE_SECONDS)
    cpu_before = child_cpu_seconds("mqtt_hk_bridge")
    started = time.monotonic()
    storm = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bench.storm_publisher", "--port", str(port)),
        *("--topic", state_topic("bench-storm"), "--count", str(count)),
        *("--seconds", str(seconds)),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
    )
    done = asyncio.Event()
    targets = [(chars[d], publisher(device, d)) for d in BYSTANDERS]
    sampler = asyncio.create_task(
        isolated_changes(home, targets, 10_000, spacing, window, stop=done)
    )
    try:
        async with asyncio.timeout(seconds + 60):
            output, _ = await storm.communicate()
    finally:
        done.set()
        if storm.returncode is None:
            storm.kill()
            await storm.wait()
    other_latencies, other_missed = await sampler
    result = json.loads(output.decode().strip().splitlines()[-1])
    first, last, final = float(result["first"]), float(result["last"]), float(result["final"])
    final_event = await first_event(home, storm_char, final, last, within=window + EVENT_TIMEOUT)
    await asyncio.sleep(window + 0.5)  # anything still trailing
    cpu_after = child_cpu_seconds("mqtt_hk_bridge")
    events = home.events_for(*storm_char, started)
    gaps = [b.at - a.at for a, b in itertools.pairwise(events)]
    cpu: dict[str, Any] = {}
    if idle_before is not None and cpu_before is not None and cpu_after is not None:
        cpu = {
            "bridge_idle_cpu_ms_per_s": round((cpu_before - idle_before) * 1000 / IDLE_SECONDS),
            "bridge_cpu_ms": round((cpu_after - cpu_before) * 1000),
            "bridge_cpu_s_wall": round(time.monotonic() - started, 1),
        }
    return {
        "publishes": int(result["count"]),
        "publish_seconds": round(last - first, 3),
        "events": len(events),
        "first_event_ms": round((events[0].at - first) * 1000, 1) if events else None,
        "min_gap_ms": round(min(gaps) * 1000, 1) if gaps else None,
        "final_arrived": final_event is not None,
        "final_after_last_publish_ms": (
            round((final_event.at - last) * 1000, 1) if final_event else None
        ),
        "last_event_is_final": bool(events) and near(events[-1].value, final),
        "other_devices": summary(other_latencies, other_missed),
        **cpu,
    }


# --- the peer baseline: a plain HAP-python accessory ------------------------------------------


async def peer_figures(work: Path, samples: int, spacing: float) -> dict[str, Any]:
    """char.set_value() on an in-process HAP-python TemperatureSensor -> the HAP event."""
    port = free_port()
    driver = AccessoryDriver(
        loop=asyncio.get_running_loop(),
        address="127.0.0.1",
        port=port,
        persist_file=str(work / "peer.state"),
        pincode=PIN.encode(),
        async_zeroconf_instance=LoopbackZeroconf(),
    )
    accessory = Accessory(driver, "Bench Sensor")
    sensor = accessory.add_preload_service("TemperatureSensor")
    char = sensor.configure_char("CurrentTemperature", value=50.0)
    driver.add_accessory(accessory)
    with contextlib.redirect_stdout(io.StringIO()):  # HAP-python prints its setup QR code
        await driver.async_start()
    try:
        home = await HapClient.pair("127.0.0.1", port, driver.state.mac, PIN)
        try:
            target = (int(accessory.aid), int(accessory.iid_manager.get_iid(char)))
            await home.subscribe([target])

            async def set_value(value: float) -> None:
                char.set_value(value)  # notifies through HAP-python's 0.5 s coalescing

            latencies, missed = await isolated_changes(
                home, [(target, set_value)], samples, spacing, HAP_PYTHON_WINDOW
            )
        finally:
            await home.close()
    finally:
        await driver.async_stop()
    return {"isolated_change": summary(latencies, missed)}


# --- report ----------------------------------------------------------------------------------


def meta() -> dict[str, Any]:
    def git(*args: str) -> str:
        run = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
        return run.stdout.strip()

    return {
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_bridge_changes": bool(git("status", "--porcelain", "--", "mqtt_hk_bridge")),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "timing": PRODUCTION["timing"],
        "peer_windows_s": PEER_WINDOWS,
    }


def measured_on(m: dict[str, Any], setup: str) -> str:
    """The first line of every report: what was measured, where, and how it was set up."""
    dirty = " (+ uncommitted changes)" if m["uncommitted_bridge_changes"] else ""
    return f"mqtt-hk-bridge {m['commit']}{dirty}, {m['cpus']} CPUs, Python {m['python']}, {setup}"


def stat_header(title: str) -> str:
    """The header line above `stat_row`s."""
    return f"{title:<48} {'n':>3} {'miss':>4}{'min':>8}{'median':>8}{'p95':>8}{'max':>8}"


def stat_row(label: str, s: dict[str, Any]) -> str:
    if not s.get("n"):
        return f"{label:<48} {0:>3} {s.get('missed', 0):>4}   (no samples)"
    cells = "".join(f"{s[key]:>8.1f}" for key in ("min", "median", "p95", "max"))
    return f"{label:<48} {s['n']:>3} {s['missed']:>4}{cells}"


def render(report: dict[str, Any]) -> str:
    m, bridge, peer = report["meta"], report["bridge"], report["peer"]
    storm = bridge["storm"]
    lines = [
        measured_on(m, f"event_window {m['timing']['event_window']} s, loopback"),
        "",
        stat_header("latency (ms)"),
        stat_row("a. MQTT publish -> HAP event (isolated change)", bridge["isolated_change"]),
        stat_row("b. HAP write -> MQTT .../On/set", bridge["home_app_write"]),
        stat_row("c. isolated changes on other devices in storm", storm["other_devices"]),
        stat_row("d. HAP-python peer: set_value -> HAP event", peer["isolated_change"]),
        "",
        f"c. storm: {storm['publishes']} publishes in {storm['publish_seconds']:.2f} s on one "
        f"characteristic -> {storm['events']} HAP events",
        f"   first event {storm['first_event_ms']} ms after the first publish; "
        f"closest two events {storm['min_gap_ms']} ms apart",
        f"   final value arrived: {'yes' if storm['final_arrived'] else 'NO'}, "
        f"{storm['final_after_last_publish_ms']} ms after the last publish; "
        f"last event is the final value: {'yes' if storm['last_event_is_final'] else 'NO'}",
        f"   bridge CPU: {storm.get('bridge_cpu_ms')} ms over the storm's "
        f"{storm.get('bridge_cpu_s_wall')} s (idle: {storm.get('bridge_idle_cpu_ms_per_s')} ms/s)",
        "",
        "peers' documented pacing: "
        + ", ".join(f"{name} {window * 1000:.0f} ms" for name, window in PEER_WINDOWS.items()),
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        bridge = await bridge_figures(
            work, args.samples, args.spacing, args.storm_count, args.storm_seconds
        )
        peer = await peer_figures(work, args.samples, args.spacing)
    return {"meta": meta(), "bridge": bridge, "peer": peer}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Event latency of mqtt-hk-bridge on loopback.")
    parser.add_argument("--samples", type=int, default=20, help="samples per latency figure")
    parser.add_argument("--spacing", type=float, default=1.25, help="s between isolated changes")
    parser.add_argument("--storm-count", type=int, default=1000)
    parser.add_argument("--storm-seconds", type=float, default=3.5, help="0: back to back")
    run_and_report(parser, argv, run, render)


if __name__ == "__main__":
    main()
