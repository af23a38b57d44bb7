"""MQTT over WebSockets (`mqtt.transport: websockets`, `mqtt.path`), with and without TLS,
for brokers that only expose that. Debian's Mosquitto is built without WebSockets, so the
broker is Aedes behind `ws`, as Node-RED's broker nodes serve it (MQTT 3.1.1 only: the
bridge falls back from MQTT 5 by itself)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.aedes import Aedes
from tests.support.bridge_process import BridgeProcess
from tests.support.mosquitto import MqttProbe
from tests.support.wait import wait_for

from .mqtt_transports import (
    Pki,
    assert_bridge_topics_retained,
    client_context,
    device_round_trip,
    make_pki,
    problem_lines,
)

PATH = "/mqtt"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture(params=["ws", "wss"])
def broker(request: pytest.FixtureRequest, pki: Pki) -> Iterator[tuple[Aedes, dict[str, Any]]]:
    """Aedes over WebSockets, plain (ws) or over TLS (wss), and the probe options to reach it."""
    secure = request.param == "wss"
    tls = (pki.broker.cert, pki.broker.key) if secure else None
    options: dict[str, Any] = {"transport": "websockets", "websocket_path": PATH}
    if secure:
        options["tls_context"] = client_context(pki.ca.ca_path)
    with Aedes(websockets_path=PATH, tls=tls) as aedes:
        yield aedes, options


async def test_devices_and_bridge_topics_over_websockets(
    broker: tuple[Aedes, dict[str, Any]], pki: Pki, tmp_path: Path
) -> None:
    aedes, options = broker
    mqtt: dict[str, Any] = {"transport": "websockets", "path": PATH}
    if "tls_context" in options:
        mqtt["tls"] = {"ca": str(pki.ca.ca_path)}
    bridge = BridgeProcess(tmp_path / "bridge", aedes.port, mqtt=mqtt)
    bridge.start()
    try:
        assert "Broker refuses MQTT 5; using MQTT 3.1.1" in bridge.logs()
        async with MqttProbe(aedes.host, aedes.port, **options) as device:
            await device_round_trip(bridge, device)
        await assert_bridge_topics_retained(
            lambda: MqttProbe(aedes.host, aedes.port, **options), bridge, "3.1.1"
        )
        assert problem_lines(bridge) == []
    finally:
        bridge.stop()


async def test_wrong_websocket_path_is_named(tmp_path: Path) -> None:
    with Aedes(websockets_path=PATH) as aedes:
        bridge = BridgeProcess(
            tmp_path / "bridge", aedes.port, mqtt={"transport": "websockets", "path": "/ws"}
        )
        bridge.start(expect_mqtt=False)
        try:
            expected = (
                f"ERROR mqtt_hk_bridge.mqtt.link: MQTT connection to 127.0.0.1:{aedes.port} "
                "failed: the broker did not accept MQTT over WebSockets at path '/ws' "
                "(WebSocket handshake error, connection not upgraded); check mqtt.path and "
                "mqtt.port (and mqtt.tls, if that port uses TLS), or use `transport: tcp` for "
                "a plain MQTT port (retrying, up to 2 s apart)"
            )
            await wait_for(lambda: "(attempt 2)" in bridge.logs(), timeout=15, message="a retry")
            assert problem_lines(bridge) == [expected]
        finally:
            bridge.stop()
