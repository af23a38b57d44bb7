"""Fixtures for the bridge under test: a real subprocess, a real broker, a real controller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.accessory_process import AccessoryProcess
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import Mosquitto, MqttProbe


@pytest.fixture
def make_bridge(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Callable[..., BridgeProcess]]:
    """Factory: make_bridge(**bridge.yaml overrides) -> a started bridge; all stopped after."""
    bridges: list[BridgeProcess] = []

    def make(start: bool = True, **overrides: Any) -> BridgeProcess:
        bridge = BridgeProcess(tmp_path / f"bridge-{len(bridges)}", mosquitto.port, **overrides)
        bridges.append(bridge)
        if start:
            bridge.start()
        return bridge

    yield make
    for bridge in bridges:
        bridge.stop()


@pytest.fixture
def bridge(make_bridge: Callable[..., BridgeProcess]) -> BridgeProcess:
    return make_bridge()


@pytest.fixture
async def probe(mosquitto: Mosquitto) -> AsyncIterator[MqttProbe]:
    """A Node-RED stand-in subscribed to everything under HomeKit/."""
    async with MqttProbe(mosquitto.host, mosquitto.port) as client:
        await client.subscribe("HomeKit/#")
        yield client


@pytest.fixture
async def home(bridge: BridgeProcess) -> AsyncIterator[HapClient]:
    """The Home app's stand-in: aiohomekit paired with the bridge over loopback."""
    client = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def accessory(tmp_path: Path) -> AsyncIterator[AccessoryProcess]:
    """A HomeKit accessory for the controller side (the peer's demo: a bridge, a light on
    aid 2, a temperature sensor on aid 3), in its own process, HAP and mDNS on loopback."""
    peer = AccessoryProcess(tmp_path)
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()
