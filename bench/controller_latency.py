"""How fast the controller side puts an accessory's change on MQTT, over CoAP and over IP,
and how fast it follows a Thread accessory to a new `_hap._udp` address.

    .venv/bin/python -m bench.controller_latency [--samples N] [--moves N] [--json out.json]

A Mosquitto; the bridge's controller side in this process (tests/support/controller_harness.py,
production timings unless --poll-interval); the CoAP accessory simulator
(tests/peers/coap_accessory.py) on the same event loop; a HAP-python accessory in its own
process (tests/support/accessory_process.py); an MQTT subscriber stamping every publish as it
arrives. Both accessories are paired over `bridge/request/pair`. Everything on loopback.
Figures are reported, never asserted; see bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from bench.event_latency import measured_on, meta, stat_header, stat_row, summary
from bench.report import run_and_report
from mqtt_hk_bridge.controller.sessions import STABLE_AFTER
from mqtt_hk_bridge.controller.settings import ControllerSettings
from mqtt_hk_bridge.mqtt.topics import availability_topic
from tests.peers.coap_accessory import CoapAccessory
from tests.support.accessory_process import AccessoryProcess
from tests.support.controller_harness import BASE, ControllerHarness
from tests.support.mosquitto import Mosquitto, MqttProbe, ReceivedMessage
from tests.support.wait import wait_for

#: What users get: every controller timing at its default (bridge.yaml without `controller:`).
PRODUCTION = ControllerSettings()
COAP_ALIAS, IP_ALIAS = "thread", "wifi"
#: The simulator's demo database (tests/peers/coap/database.py): aid 1. FirmwareRevision is
#: read-only without events, CurrentTemperature sends events.
COAP_FIRMWARE, COAP_TEMPERATURE = 7, 66
#: The HAP-python peer's demo: a Lightbulb on aid 2, a TemperatureSensor on aid 3.
IP_SENSOR_AID = 3
TEMPERATURE = "TemperatureSensor/CurrentTemperature"
EVENT_TIMEOUT = 5.0  # a publish later than this counts as missed
#: A moved Thread accessory is to be followed within 10 s; a few more and it counts as missed.
MOVE_TIMEOUT = 15.0
#: Another loopback IPv6 address without a network namespace (IPv4-mapped 127.0.0.2).
OTHER_HOST = "::ffff:127.0.0.2"


def machine() -> dict[str, Any]:
    """The commit and machine (event_latency's meta, without its accessory-side timings)."""
    everything = meta()
    keys = ("measured_at", "commit", "uncommitted_bridge_changes", "cpus", "python")
    return {key: everything[key] for key in keys}


# --- the bridge's request API -----------------------------------------------------------------


async def request(
    probe: MqttProbe, action: str, body: dict[str, Any], transaction: str, within: float = 60
) -> dict[str, Any]:
    """Publish on bridge/request/<action>, return the matching bridge/response/<action>."""
    await probe.publish(
        f"{BASE}/bridge/request/{action}", json.dumps({**body, "transaction": transaction})
    )
    message = await probe.wait_message(
        f"{BASE}/bridge/response/{action}",
        lambda m: json.loads(m.payload).get("transaction") == transaction,
        timeout=within,
    )
    return dict(json.loads(message.payload))


async def pair(probe: MqttProbe, device_id: str, setup_code: str, alias: str) -> None:
    body = {"device_id": device_id, "setup_code": setup_code, "alias": alias}
    answer = await request(probe, "pair", body, f"pair-{alias}")
    if answer.get("status") != "ok":
        raise RuntimeError(f"pairing {alias} failed: {answer}")


# --- waiting for a value on MQTT ---------------------------------------------------------------


def carries(value: float | bytes, since: float) -> Callable[[ReceivedMessage], bool]:
    """A message received after `since` with that payload (a number: within 0.01)."""

    def match(message: ReceivedMessage) -> bool:
        if message.at < since:
            return False
        if isinstance(value, bytes):
            return message.payload == value
        try:
            return abs(float(message.payload) - value) < 0.01
        except ValueError:
            return False

    return match


async def arrival(
    probe: MqttProbe, topic: str, value: float | bytes, since: float, within: float
) -> float | None:
    """When `value` arrived on `topic` after `since` (time.monotonic()), None if it did not."""
    with contextlib.suppress(AssertionError):
        message = await probe.wait_message(topic, carries(value, since), timeout=within)
        return message.at
    return None


async def change_latencies(
    probe: MqttProbe,
    topic: str,
    change: Callable[[float], Awaitable[None]],
    samples: int,
    spacing: float,
) -> tuple[list[float], int]:
    """A change on the accessory -> its value on `topic`, `samples` times, `spacing` apart.
    Values go 10.0, 10.5, ... 39.5 and round again: every one a change."""
    latencies, missed = [], 0
    for index in range(samples):
        value = 10.0 + (index % 60) / 2
        started = time.monotonic()
        await change(value)
        arrived = await arrival(probe, topic, value, started, EVENT_TIMEOUT)
        if arrived is None:
            missed += 1
        else:
            latencies.append(arrived - started)
        probe.messages.clear()
        await asyncio.sleep(spacing)
    return latencies, missed


# --- following a move --------------------------------------------------------------------------


class MoveLog(logging.Handler):
    """Stamps (time.monotonic()) each `address changed` line the controller side logs."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.stamps: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "address changed" in record.getMessage():
            self.stamps.append(time.monotonic())

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[MoveLog]:
        handler = cls()
        logger = logging.getLogger("mqtt_hk_bridge.controller")
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            yield handler
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)


async def one_move(
    work: Path,
    broker: Mosquitto,
    probe: MqttProbe,
    accessory: CoapAccessory,
    settings: ControllerSettings,
    *,
    host: str | None,
    firmware: str,
) -> tuple[float | None, float | None]:
    """An isolated move, as a border-router restart is: a bridge whose session to the
    accessory has been up for longer than STABLE_AFTER. The accessory moves (`host`, or a new
    port on the same address when None), then changes FirmwareRevision, which has no events:
    only a read at the new address can bring it to MQTT.

    Returns (value on MQTT, bridge logged `address changed`), seconds after the move.
    """
    topic = f"{BASE}/{COAP_ALIAS}/AccessoryInformation/FirmwareRevision"
    async with ControllerHarness(work / "data", broker, settings=settings) as harness:
        session = harness.side.sessions[COAP_ALIAS]
        await wait_for(lambda: session.connected and session.mirror.available, timeout=30)
        # A connection younger than STABLE_AFTER would add a reconnect backoff to the figure.
        await asyncio.sleep(STABLE_AFTER + 0.5)
        with MoveLog.installed() as log:
            started = time.monotonic()
            await accessory.move(host=host)
            accessory.set_value(COAP_FIRMWARE, firmware)
            arrived = await arrival(probe, topic, firmware.encode(), started, MOVE_TIMEOUT)
        logged = log.stamps[0] - started if log.stamps else None
    return (None if arrived is None else arrived - started), logged


async def move_figures(
    work: Path,
    broker: Mosquitto,
    probe: MqttProbe,
    accessory: CoapAccessory,
    settings: ControllerSettings,
    samples: int,
) -> dict[str, Any]:
    """`samples` moves to a new port, then `samples` to a new address (back and forth
    between ::1 and OTHER_HOST), each with a bridge of its own (same data dir)."""
    figures: dict[str, Any] = {}
    serial = itertools.count(1)
    for kind in ("port", "address"):
        arrivals, logged, missed = [], [], 0
        for _ in range(samples):
            host = None
            if kind == "address":
                host = OTHER_HOST if accessory.host != OTHER_HOST else "::1"
            value, noticed = await one_move(
                work, broker, probe, accessory, settings, host=host, firmware=f"2.0.{next(serial)}"
            )
            if value is None:
                missed += 1
            else:
                arrivals.append(value)
            if noticed is not None:
                logged.append(noticed)
        figures[kind] = {"first_value": summary(arrivals, missed), "logged": summary(logged)}
    return figures


# --- the run -------------------------------------------------------------------------------------


def temperature_topic(harness: ControllerHarness, alias: str, aid: int) -> tuple[str, int]:
    """The MQTT topic and iid of CurrentTemperature on `aid` of the pairing `alias`."""
    for (char_aid, iid), char in harness.side.sessions[alias].mirror.by_id.items():
        if char_aid == aid and char.topic.endswith(TEMPERATURE):
            return char.topic, iid
    raise RuntimeError(f"{alias} has no CurrentTemperature on aid {aid}")


async def timed(action: Callable[[], Awaitable[None]], samples: int) -> list[float]:
    latencies = []
    for _ in range(samples):
        started = time.monotonic()
        await action()
        latencies.append(time.monotonic() - started)
    return latencies


async def event_figures(
    work: Path,
    broker: Mosquitto,
    probe: MqttProbe,
    thread: CoapAccessory,
    wifi: AccessoryProcess,
    settings: ControllerSettings,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Pair both accessories, then time changes on each to their MQTT publish."""
    async with ControllerHarness(work / "data", broker, settings=settings) as harness:
        await pair(probe, thread.device_id, thread.setup_code, COAP_ALIAS)
        await pair(probe, str(wifi.device_id), wifi.pin, IP_ALIAS)
        for device in (COAP_ALIAS, f"{IP_ALIAS}-{IP_SENSOR_AID}"):
            online = availability_topic(BASE, device)
            await probe.wait_message(online, lambda m: m.payload == b"online", timeout=30)
        coap_topic, _ = temperature_topic(harness, COAP_ALIAS, 1)
        ip_topic, ip_iid = temperature_topic(harness, IP_ALIAS, IP_SENSOR_AID)

        async def coap_change(value: float) -> None:
            thread.set_value(COAP_TEMPERATURE, value)

        async def ip_change(value: float) -> None:
            await wifi.set(IP_SENSOR_AID, ip_iid, value)

        async def ip_control_round_trip() -> None:
            await wifi.get(IP_SENSOR_AID, ip_iid)

        coap = await change_latencies(probe, coap_topic, coap_change, args.samples, args.spacing)
        ip = await change_latencies(probe, ip_topic, ip_change, args.samples, args.spacing)
        control = await timed(ip_control_round_trip, args.samples)
    return {
        "coap_event": summary(*coap),
        "ip_event": summary(*ip),
        "ip_control_round_trip": summary(control),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = PRODUCTION
    if args.poll_interval is not None:
        settings = dataclasses.replace(PRODUCTION, poll_interval=args.poll_interval)
    with tempfile.TemporaryDirectory(prefix="bench-controller-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto")
        await asyncio.to_thread(broker.start)
        try:
            async with (
                MqttProbe(broker.host, broker.port) as probe,
                CoapAccessory() as thread,
                AccessoryProcess(work) as wifi,
            ):
                await probe.subscribe(f"{BASE}/#")
                events = await event_figures(work, broker, probe, thread, wifi, settings, args)
                moves = await move_figures(work, broker, probe, thread, settings, args.moves)
        finally:
            await asyncio.to_thread(broker.close)
    return {
        "meta": {**machine(), "controller_settings": dataclasses.asdict(settings)},
        **events,
        "move_port": moves["port"],
        "move_address": moves["address"],
    }


def render(report: dict[str, Any]) -> str:
    m = report["meta"]
    port, address = report["move_port"], report["move_address"]
    rows = [
        ("a. CoAP: set_value -> MQTT publish", report["coap_event"]),
        ("b. IP: control `set` -> MQTT publish", report["ip_event"]),
        ("   IP peer's control round trip (part of b)", report["ip_control_round_trip"]),
        ("c. new port announced -> value read, on MQTT", port["first_value"]),
        ("   ... -> bridge logs `address changed`", port["logged"]),
        ("d. new address announced -> value read, on MQTT", address["first_value"]),
        ("   ... -> bridge logs `address changed`", address["logged"]),
    ]
    return "\n".join(
        [
            measured_on(m, "controller side in-process, loopback"),
            f"controller settings: poll_interval {m['controller_settings']['poll_interval']} s, "
            f"reconnect_min {m['controller_settings']['reconnect_min']} s; "
            f"c/d missed = not on MQTT within {MOVE_TIMEOUT:.0f} s",
            "",
            stat_header("latency (ms)"),
            *(stat_row(label, figures) for label, figures in rows),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Controller side: accessory change -> MQTT.")
    parser.add_argument("--samples", type=int, default=50, help="samples for a and b")
    parser.add_argument("--moves", type=int, default=3, help="samples for c and d")
    parser.add_argument("--spacing", type=float, default=0.2, help="s between changes")
    parser.add_argument(
        "--poll-interval", type=float, help="controller poll_interval (default: production 300)"
    )
    # The bridge sets this when its controller starts; the simulator starts first. Without it
    # aiocoap would also listen for CoAP over TCP on [::]:5683.
    os.environ.setdefault("AIOCOAP_SERVER_TRANSPORT", "udp6")
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.WARNING)  # MoveLog turns the controller side's INFO on
    logging.basicConfig(handlers=[stderr], format="%(name)s: %(message)s")
    # aiohomekit warns (with a TLV dump) at every read of Pairings, which the simulator
    # refuses as "invalid request".
    logging.getLogger("aiohomekit.controller.coap.pdu").setLevel(logging.ERROR)
    run_and_report(parser, argv, run, render)


if __name__ == "__main__":
    main()
