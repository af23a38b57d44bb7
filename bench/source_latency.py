"""Devices in their own layouts: how fast a Zigbee2MQTT-style JSON state reaches the Home
app (mapped by hand, and discovered), next to our own topic layout; and how long 300
discovered entities take to be served at start-up.

    .venv/bin/python -m bench.source_latency [--samples N] [--devices N] [--json out.json]

Everything on 127.0.0.1, the bridge with the production timing (bench/README.md). Figures
are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.event_latency import (
    PIN,
    PRODUCTION,
    isolated_changes,
    measured_on,
    meta,
    stat_header,
    stat_row,
    summary,
)
from bench.report import run_and_report
from mqtt_hk_bridge import const
from tests.support.accessories import aid_of, char_of
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import Mosquitto, MqttProbe

TEMPERATURE_SENSOR, CURRENT_TEMPERATURE = "8A", "11"
SOURCES = ["homekit_topics", "homeassistant_discovery"]
SEED_TOPIC = "HomeKit/bench-seed/TemperatureSensor/CurrentTemperature"
MAPPED_TOPIC = "zigbee2mqtt/bench-mapped"
DISCOVERED_TOPIC = "zigbee2mqtt/bench-discovered"
DISCOVERED_ID = "zigbee2mqtt_0xbench0001"
#: The mapped device: three characteristics read out of one five-key JSON state.
MAPPED = {
    "bench-mapped": {
        "services": [
            {
                "type": "TemperatureSensor",
                "characteristics": {
                    "CurrentTemperature": {
                        "state_topic": MAPPED_TOPIC,
                        "json_path": "$.temperature",
                    }
                },
            },
            {
                "type": "HumiditySensor",
                "characteristics": {
                    "CurrentRelativeHumidity": {
                        "state_topic": MAPPED_TOPIC,
                        "json_path": "$.humidity",
                    }
                },
            },
            {
                "type": "BatteryService",
                "characteristics": {
                    "BatteryLevel": {"state_topic": MAPPED_TOPIC, "json_path": "$.battery"}
                },
            },
        ]
    }
}


def z2m_state(temperature: float) -> str:
    """A Zigbee2MQTT weather sensor's state: five keys, as it publishes them."""
    return json.dumps(
        {
            "battery": 91,
            "humidity": 45.5,
            "linkquality": 120,
            "temperature": temperature,
            "voltage": 3005,
        }
    )


def discovery_configs(
    ieee: str, name: str, classes: tuple[str, ...] = ("temperature", "humidity", "battery")
) -> list[tuple[str, str]]:
    """Zigbee2MQTT's discovery configs for a sensor with these device classes."""
    device = {
        "identifiers": [f"zigbee2mqtt_{ieee}"],
        "name": name,
        "manufacturer": "Aqara",
        "model": "Temperature and humidity sensor",
    }
    return [
        (
            f"homeassistant/sensor/{ieee}/{kind}/config",
            json.dumps(
                {
                    "availability": [
                        {
                            "topic": "zigbee2mqtt/bridge/state",
                            "value_template": "{{ value_json.state }}",
                        }
                    ],
                    "device": device,
                    "device_class": kind,
                    "state_class": "measurement",
                    "state_topic": f"zigbee2mqtt/{name}",
                    "unique_id": f"{ieee}_{kind}_zigbee2mqtt",
                    "value_template": f'{{{{ value_json["{kind}"] }}}}',
                }
            ),
        )
        for kind in classes
    ]


async def latency_figures(work: Path, samples: int, spacing: float) -> dict[str, Any]:
    broker = Mosquitto(work / "mosquitto")
    await asyncio.to_thread(broker.start)
    bridge = BridgeProcess(
        work / "bridge", broker.port, **PRODUCTION, sources=SOURCES, devices=MAPPED
    )
    try:
        async with MqttProbe(broker.host, broker.port) as device:
            await device.publish("zigbee2mqtt/bridge/state", '{"state":"online"}', retain=True)
            for topic, payload in discovery_configs("0xbench0001", "bench-discovered"):
                await device.publish(topic, payload, retain=True)
            await asyncio.to_thread(bridge.start)
            home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, PIN)
            try:
                await device.publish(SEED_TOPIC, "50")
                await device.publish(MAPPED_TOPIC, z2m_state(50))
                await device.publish(DISCOVERED_TOPIC, z2m_state(50))
                chars = await temperature_chars(home, ["bench-seed", "bench-mapped", DISCOVERED_ID])
                await home.subscribe(list(chars.values()))
                window = const.DEFAULT_EVENT_WINDOW

                def json_change(topic: str) -> Any:
                    async def publish(value: float) -> None:
                        await device.publish(topic, z2m_state(value))

                    return publish

                async def seed_change(value: float) -> None:
                    await device.publish(SEED_TOPIC, f"{value:.1f}")

                figures = {}
                for name, change in (
                    ("seed", seed_change),
                    ("mapped", json_change(MAPPED_TOPIC)),
                    ("discovered", json_change(DISCOVERED_TOPIC)),
                ):
                    device_id = {"seed": "bench-seed", "mapped": "bench-mapped"}.get(
                        name, DISCOVERED_ID
                    )
                    latencies, missed = await isolated_changes(
                        home, [(chars[device_id], change)], samples, spacing, window
                    )
                    figures[name] = summary(latencies, missed)
            finally:
                await home.close()
    finally:
        await asyncio.to_thread(bridge.stop)
        await asyncio.to_thread(broker.close)
    return figures


async def temperature_chars(home: HapClient, device_ids: list[str]) -> dict[str, tuple[int, int]]:
    deadline = time.monotonic() + 15
    while True:
        accessories = await home.list_accessories()
        try:
            return {
                device_id: (
                    aid_of(accessories, device_id),
                    int(
                        char_of(
                            accessories,
                            aid_of(accessories, device_id),
                            TEMPERATURE_SENSOR,
                            CURRENT_TEMPERATURE,
                        )["iid"]
                    ),
                )
                for device_id in device_ids
            }
        except AssertionError:
            if time.monotonic() > deadline:
                raise RuntimeError("the bench devices did not appear within 15 s") from None
            await asyncio.sleep(0.1)


async def startup_figures(work: Path, devices: int) -> dict[str, Any]:
    """`devices` Zigbee2MQTT sensors of three entities each, retained in the broker with
    their states; the bridge started with a fresh data dir, then restarted."""
    broker = Mosquitto(work / "mosquitto-startup")
    await asyncio.to_thread(broker.start)
    bridge = BridgeProcess(work / "bridge-startup", broker.port, **PRODUCTION, sources=SOURCES)
    try:
        async with MqttProbe(broker.host, broker.port) as publisher:
            await publisher.publish("zigbee2mqtt/bridge/state", '{"state":"online"}', retain=True)
            for n in range(devices):
                ieee, name = f"0x00158d00{n:08x}", f"sensor_{n}"
                for topic, payload in discovery_configs(ieee, name):
                    await publisher.publish(topic, payload, retain=True)
                await publisher.publish(f"zigbee2mqtt/{name}", z2m_state(20 + n % 10), retain=True)
        entities = devices * 3
        first = await served_after_start(bridge, devices, pairing=None)
        assert first["pairing"] is not None
        restart = await served_after_start(bridge, devices, pairing=first["pairing"])
    finally:
        await asyncio.to_thread(bridge.stop)
        await asyncio.to_thread(broker.close)
    return {
        "entities": entities,
        "devices": devices,
        "first_start_s": first["seconds"],
        "first_start_after_hap_s": first["after_hap"],
        "restart_s": restart["seconds"],
        "restart_after_hap_s": restart["after_hap"],
    }


async def served_after_start(
    bridge: BridgeProcess, devices: int, pairing: dict[str, Any] | None
) -> dict[str, Any]:
    """Seconds from spawning the bridge until /accessories holds every device with its
    temperature (and from the moment HAP accepted connections)."""
    started = time.monotonic()
    await asyncio.to_thread(bridge.start)
    hap_up = time.monotonic()
    if pairing is None:
        home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, PIN)
    else:
        home = HapClient.from_pairing_data(pairing)
    try:
        while True:
            accessories = await home.list_accessories()
            complete = sum(
                1
                for accessory in accessories
                for service in accessory["services"]
                for char in service["characteristics"]
                if char["type"].upper().startswith("00000011") and char.get("value") is not None
            )
            if complete >= devices:
                break
            if time.monotonic() - started > 120:
                raise RuntimeError(f"only {complete} of {devices} devices served after 120 s")
            await asyncio.sleep(0.05)
        done = time.monotonic()
        data = home.pairing_data
    finally:
        await home.close()
    await asyncio.to_thread(bridge.stop)
    return {
        "seconds": round(done - started, 2),
        "after_hap": round(done - hap_up, 2),
        "pairing": data,
    }


def render(report: dict[str, Any]) -> str:
    figures, startup = report["latency"], report["startup"]
    m = report["meta"]
    return "\n".join(
        [
            measured_on(m, f"event_window {m['timing']['event_window']} s, loopback"),
            "",
            stat_header("MQTT publish -> HAP event, isolated change (ms)"),
            stat_row("seed layout: one plain value", figures["seed"]),
            stat_row("mapped: Zigbee2MQTT-style 5-key JSON", figures["mapped"]),
            stat_row("discovered: the same, via HA discovery", figures["discovered"]),
            "",
            f"start-up: {startup['entities']} discovered entities ({startup['devices']} "
            "devices, retained with their states)",
            f"   fresh data dir: all served {startup['first_start_s']} s after spawning the "
            f"bridge ({startup['first_start_after_hap_s']} s after HAP listened; pairing included)",
            f"   restart: all served {startup['restart_s']} s after spawning "
            f"({startup['restart_after_hap_s']} s after HAP listened)",
        ]
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sources-") as tmp:
        work = Path(tmp)
        latency = await latency_figures(work, args.samples, args.spacing)
        startup = await startup_figures(work, args.devices)
    return {"meta": meta(), "latency": latency, "startup": startup}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20, help="samples per latency figure")
    parser.add_argument("--spacing", type=float, default=1.25, help="s between isolated changes")
    parser.add_argument("--devices", type=int, default=100, help="3 entities each (default 300)")
    run_and_report(parser, argv, run, render)


if __name__ == "__main__":
    main()
