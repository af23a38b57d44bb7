"""Many CoAP accessory simulators (tests/peers/coap_accessory.py) in one process of their own,
so that a bench can tell their CPU time from the bridge's.

    python -m bench.coap_simulators --count 50

CoAP on ::1, one `_hap._udp` record each on a zeroconf shared by all, bound to 127.0.0.1.
stdout: one line `{"ready": [{"device_id", "setup_code"}, ...]}` once every record is
registered. Stops (mDNS goodbyes) on SIGTERM, SIGINT or when stdin closes (the parent died).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

from zeroconf.asyncio import AsyncZeroconf

from tests.peers.coap_accessory import CoapAccessory


class _ParentWatch(asyncio.Protocol):
    """Reads our stdin pipe; its end means the parent process is gone."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop.set()


async def serve(count: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await loop.connect_read_pipe(lambda: _ParentWatch(stop), sys.stdin)
    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"])
    accessories = [
        CoapAccessory(name=f"CoAP Idle {index:03d}", zeroconf=zeroconf) for index in range(count)
    ]
    try:
        # At once: each registration waits about 1.5 s for its mDNS probes.
        await asyncio.gather(*(accessory.start() for accessory in accessories))
        ready = [{"device_id": a.device_id, "setup_code": a.setup_code} for a in accessories]
        print(json.dumps({"ready": ready}), flush=True)
        await stop.wait()
    finally:
        await asyncio.gather(*(accessory.stop() for accessory in accessories))
        await zeroconf.async_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="CoAP accessory simulators in one process.")
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args(argv)
    # Without it aiocoap would also listen for CoAP over TCP on [::]:5683.
    os.environ.setdefault("AIOCOAP_SERVER_TRANSPORT", "udp6")
    asyncio.run(serve(args.count))


if __name__ == "__main__":
    main()
