"""What the TLS and WebSockets tests share: a test PKI, probes over each transport, a device
round trip through the Home app, and the bridge's log lines as a user reads them."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.accessories import aid_of, char_of
from tests.support.bridge_process import BridgeProcess
from tests.support.certs import CertificateAuthority, KeyPair
from tests.support.hap_client import HapClient
from tests.support.mosquitto import MqttProbe, ReceivedMessage

from .test_exposer_devices import accessories_with

SWITCH, ON = "49", "25"
#: Levels a person watching the log (or an alerting rule) looks at.
PROBLEM_LEVELS = (" WARNING ", " ERROR ", " CRITICAL ")


@dataclass(frozen=True)
class Pki:
    """A CA the broker's certificates come from, and a second, unrelated one."""

    ca: CertificateAuthority
    other_ca: CertificateAuthority
    #: The broker's certificate, for 127.0.0.1 (where the tests reach it).
    broker: KeyPair
    #: The bridge's client certificate, from `ca`.
    client: KeyPair


def make_pki(directory: Path) -> Pki:
    ca = CertificateAuthority(directory / "ca", "Test CA")
    return Pki(
        ca=ca,
        other_ca=CertificateAuthority(directory / "other-ca", "Other CA"),
        broker=ca.issue("broker", hosts=["127.0.0.1"]),
        client=ca.issue("bridge", client=True),
    )


def client_context(ca: Path, client: KeyPair | None = None) -> ssl.SSLContext:
    """What a device or Node-RED uses to reach the broker over TLS."""
    context = ssl.create_default_context(cafile=ca)
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return context


def replace_files(target: KeyPair, source: KeyPair) -> None:
    """Renew in place: new content at the paths a configuration names."""
    target.cert.write_bytes(source.cert.read_bytes())
    target.key.write_bytes(source.key.read_bytes())


def problem_lines(bridge: BridgeProcess) -> list[str]:
    """The bridge's WARNING-or-worse log lines since its start, without the time stamp."""
    return [
        line.split(" ", 2)[2]
        for line in bridge.logs().splitlines()
        if any(level in line for level in PROBLEM_LEVELS)
    ]


async def device_round_trip(bridge: BridgeProcess, device: MqttProbe) -> None:
    """A device's value reaches the Home app (read, then as an event), and a Home-app
    write reaches the device on its `/set` topic; then the bridge's catalogue lists it."""
    await device.subscribe("HomeKit/TEST/#")
    await device.subscribe("HomeKit/bridge/devices")
    await device.publish("HomeKit/TEST/Switch/On", "1", retain=True)
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        accessories = await accessories_with(home, "TEST")
        aid = aid_of(accessories, "TEST")
        on = char_of(accessories, aid, SWITCH, ON)
        assert on["value"] is True
        await home.subscribe([(aid, on["iid"])])
        assert await home.put([(aid, on["iid"], False)]) == {(aid, on["iid"]): 0}
        command = await device.wait_message("HomeKit/TEST/Switch/On/set")
        assert command.payload == b"0"
        await device.publish("HomeKit/TEST/Switch/On", "0", retain=True)  # it obeyed
        await device.publish("HomeKit/TEST/Switch/On", "1", retain=True)  # switched by hand
        await home.wait_event(aid, on["iid"], True, timeout=5)
    finally:
        await home.close()
    # Sent a moment after the change (changes are gathered): wait for it, not the clock.
    await device.wait_message("HomeKit/bridge/devices", lambda m: b'"TEST"' in m.payload)


async def assert_bridge_topics_retained(
    make_probe: Callable[[], MqttProbe], bridge: BridgeProcess, protocol: str
) -> dict[str, Any]:
    """What a Node-RED flow that starts now finds retained under `HomeKit/bridge/` (a live
    update may overtake the retained copy; only the retained one counts here)."""

    def retained(message: ReceivedMessage) -> bool:
        return message.retain

    async with make_probe() as late:
        await late.subscribe("HomeKit/bridge/#")
        state = await late.wait_message("HomeKit/bridge/state", retained)
        assert state.payload == b"online"
        devices = await late.wait_message("HomeKit/bridge/devices", retained)
        assert [device["id"] for device in json.loads(devices.payload)] == ["TEST"]
        info = json.loads((await late.wait_message("HomeKit/bridge/info", retained)).payload)
        assert (info["hap_device_id"], info["mqtt_protocol"]) == (bridge.device_id, protocol)
        return dict(info)
