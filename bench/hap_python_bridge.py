"""The plain HAP-python baseline: an MQTT-to-HomeKit bridge as one would write it on
HAP-python alone, for the cost bench to run next to ours.

    python -m bench.hap_python_bridge --mqtt-port P --hap-port H --state F --sensors N

One HAP-python `Bridge` with N TemperatureSensor accessories `sensor-1..N`; aiomqtt (MQTT
3.1.1, QoS 0) subscribed to `<base>/+/TemperatureSensor/CurrentTemperature`; each message
is `char.set_value(float(payload))`, so events go through HAP-python's own 0.5 s coalescing.
mDNS on 127.0.0.1 only. Prints one JSON line once served: {"device_id", "aids"}, where
`aids` maps each sensor to its (aid, iid). Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import signal

import aiomqtt
from pyhap.accessory import Accessory, Bridge
from pyhap.accessory_driver import AccessoryDriver
from pyhap.characteristic import Characteristic
from zeroconf.asyncio import AsyncZeroconf

PIN = "482-91-735"


def sensor_id(n: int) -> str:
    return f"sensor-{n}"


async def serve(args: argparse.Namespace) -> None:
    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"])
    driver = AccessoryDriver(
        loop=asyncio.get_running_loop(),
        address="127.0.0.1",
        port=args.hap_port,
        persist_file=args.state,
        pincode=PIN.encode(),
        async_zeroconf_instance=zeroconf,
    )
    bridge = Bridge(driver, "Plain HAP-python")
    chars: dict[str, Characteristic] = {}
    ids: dict[str, tuple[int, int]] = {}
    for n in range(1, args.sensors + 1):
        accessory = Accessory(driver, sensor_id(n))
        service = accessory.add_preload_service("TemperatureSensor")
        char = service.configure_char("CurrentTemperature", value=50.0)
        bridge.add_accessory(accessory)
        chars[sensor_id(n)] = char
        ids[sensor_id(n)] = (int(accessory.aid), int(accessory.iid_manager.get_iid(char)))
    driver.add_accessory(bridge)
    with contextlib.redirect_stdout(io.StringIO()):  # HAP-python prints its setup QR code
        await driver.async_start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with aiomqtt.Client(
        "127.0.0.1", args.mqtt_port, protocol=aiomqtt.ProtocolVersion.V311
    ) as client:
        await client.subscribe(f"{args.base}/+/TemperatureSensor/CurrentTemperature", qos=0)
        print(json.dumps({"device_id": driver.state.mac, "aids": ids}), flush=True)
        reader = asyncio.create_task(read(client, chars))
        await stop.wait()
        reader.cancel()
    await driver.async_stop()
    await zeroconf.async_close()


async def read(client: aiomqtt.Client, chars: dict[str, Characteristic]) -> None:
    async for message in client.messages:
        char = chars.get(message.topic.value.split("/")[1])
        if char is not None and isinstance(message.payload, bytes):
            char.set_value(float(message.payload))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--hap-port", type=int, required=True)
    parser.add_argument("--state", required=True, help="HAP-python's state file")
    parser.add_argument("--sensors", type=int, default=50)
    parser.add_argument("--base", default="Plain")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
