"""How fast aiohomekit's CoAP client hears a Thread accessory: events, requests, moves.

    .venv/bin/python -m bench.coap_event_latency [--samples N] [--moves N] [--json out.json]

The CoAP accessory simulator (tests/peers/coap_accessory.py) and aiohomekit's Controller
run in this process on one event loop, on loopback (CoAP on ::1, mDNS on 127.0.0.1). No
bridge and no MQTT: this is the floor the bridge's CoAP figures stand on. Figures are
reported, never asserted; see bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiocoap.error import LibraryShutdown
from aiohomekit.controller.coap.pairing import CoAPPairing
from aiohomekit.exceptions import AccessoryDisconnectedError, EncryptionError

from bench.event_latency import measured_on, meta, stat_header, stat_row, summary
from bench.report import run_and_report
from tests.peers.coap_accessory import CoapAccessory
from tests.support.hap_client import loopback_controller
from tests.support.wait import wait_for

Event = dict[tuple[int, int], dict[str, Any]]
#: What aiohomekit raises while a CoAP session is being replaced (see the simulator tests).
RECONNECTING = (AccessoryDisconnectedError, EncryptionError, LibraryShutdown)


async def paired(controller: Any, accessory: CoapAccessory) -> CoAPPairing:
    discovery = await controller.async_find(accessory.device_id, timeout=10)
    finish = await discovery.async_start_pairing("bench")
    keys = (await finish(accessory.setup_code)).pairing_data
    pairing = controller.load_pairing("bench", dict(keys))
    await wait_for(lambda: pairing.accessories is not None, message="first database read")
    return pairing


async def event_latencies(
    accessory: CoapAccessory, pairing: CoAPPairing, iid: int, samples: int, spacing: float
) -> tuple[list[float], int]:
    """set_value on the accessory -> aiohomekit's listener called with that value."""
    arrivals: dict[float, float] = {}

    def listener(event: Event) -> None:
        value = event.get((1, iid), {}).get("value")
        if isinstance(value, float):
            arrivals.setdefault(value, time.monotonic())

    pairing.dispatcher_connect(listener)
    await pairing.subscribe([(1, iid)])
    latencies, missed = [], 0
    for index in range(samples):
        value = 10.0 + index / 2  # exact in float32, always a change
        started = time.monotonic()
        accessory.set_value(iid, value)
        try:
            await wait_for(lambda v=value: v in arrivals, timeout=5, interval=0.0005)
            latencies.append(arrivals[value] - started)
        except AssertionError:
            missed += 1
        await asyncio.sleep(spacing)
    return latencies, missed


async def timed(action: Callable[[], Awaitable[Any]], samples: int) -> list[float]:
    latencies = []
    for _ in range(samples):
        started = time.monotonic()
        await action()
        latencies.append(time.monotonic() - started)
    return latencies


async def until_read(pairing: CoAPPairing, iid: int) -> None:
    async def attempt() -> bool:
        try:
            await pairing.get_characteristics([(1, iid)])
        except RECONNECTING:
            return False
        return True

    await wait_for(attempt, timeout=30, interval=0.01, message="a read")


async def recoveries(
    pairing: CoAPPairing, iid: int, disturb: Callable[[], Awaitable[None]], samples: int
) -> list[float]:
    """Time from the disturbance (a move, a reboot) to the first value read after it."""
    latencies = []
    for _ in range(samples):
        started = time.monotonic()
        await disturb()
        await until_read(pairing, iid)
        latencies.append(time.monotonic() - started)
    return latencies


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with CoapAccessory() as accessory, loopback_controller() as controller:
        pairing = await paired(controller, accessory)
        temperature = accessory.database.find("8A", "11").iid
        on = accessory.database.find("43", "25").iid
        events, missed = await event_latencies(
            accessory, pairing, temperature, args.samples, args.spacing
        )
        reads = await timed(lambda: pairing.get_characteristics([(1, on)]), args.samples)
        writes = await timed(lambda: pairing.put_characteristics([(1, on, True)]), args.samples)
        moves = await recoveries(pairing, on, accessory.move, args.moves)
        reboots = await recoveries(pairing, on, accessory.reboot, args.moves)
        enc_ctx = pairing.connection.enc_ctx
        if enc_ctx is not None and enc_ctx.coap_ctx is not None:
            await enc_ctx.coap_ctx.shutdown()
    return {
        "meta": meta(),
        "event": summary(events, missed),
        "read": summary(reads),
        "write": summary(writes),
        "move_to_first_read": summary(moves),
        "reboot_to_first_read": summary(reboots),
    }


def render(report: dict[str, Any]) -> str:
    m = report["meta"]
    rows = [
        ("a. accessory set_value -> aiohomekit listener", "event"),
        ("b. get_characteristics round trip (1 value)", "read"),
        ("c. put_characteristics round trip (1 value)", "write"),
        ("d. move announced -> first value read there", "move_to_first_read"),
        ("e. reboot -> first value read (new session)", "reboot_to_first_read"),
    ]
    return "\n".join(
        [
            measured_on(m, "CoAP simulator and aiohomekit in one process on loopback"),
            "",
            stat_header("latency (ms)"),
            *(stat_row(label, report[key]) for label, key in rows),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="aiohomekit CoAP latency against the simulator.")
    parser.add_argument("--samples", type=int, default=50, help="samples for a, b and c")
    parser.add_argument("--moves", type=int, default=5, help="samples for d and e")
    parser.add_argument("--spacing", type=float, default=0.1, help="s between events")
    # aiohomekit's CoAP sockets would otherwise also listen for CoAP over TCP on [::]:5683.
    os.environ.setdefault("AIOCOAP_SERVER_TRANSPORT", "udp6")
    run_and_report(parser, argv, run, render)


if __name__ == "__main__":
    main()
