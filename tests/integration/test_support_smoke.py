"""The test support works against real peers: Mosquitto, and HAP-python paired by aiohomekit."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohomekit.exceptions import AuthenticationError
from pyhap.accessory import Accessory, Bridge
from pyhap.accessory_driver import AccessoryDriver
from pyhap.characteristic import Characteristic

from tests.support.hap_client import (
    HapClient,
    LoopbackZeroconf,
    find_iid,
    loopback_controller,
)
from tests.support.mosquitto import Mosquitto
from tests.support.wait import free_port, wait_for

PIN = "482-91-735"
ON = "25"  # HAP short type of the On characteristic


# --- MQTT --------------------------------------------------------------------------------


async def test_probe_receives_retained_and_live_messages(mosquitto: Mosquitto) -> None:
    async with mosquitto.probe() as publisher:
        await publisher.publish("smoke/retained", b"21.5", retain=True)
        async with mosquitto.probe() as subscriber:
            await subscriber.subscribe("smoke/#")
            retained = await subscriber.wait_message("smoke/retained")
            assert (retained.payload, retained.retain) == (b"21.5", True)

            await publisher.publish("smoke/live", "on")
            live = await subscriber.wait_message("smoke/+", lambda m: m.topic == "smoke/live")
            assert (live.payload, live.retain) == (b"on", False)
            assert [m.topic for m in subscriber.messages_on("smoke/#")] == [
                "smoke/retained",
                "smoke/live",
            ]


async def _retained_after(broker: Mosquitto, topic: str) -> bytes:
    async with broker.probe() as probe:
        await probe.subscribe(topic)
        return (await probe.wait_message(topic, timeout=5)).payload


async def test_persistent_broker_keeps_retained_across_stop_and_kill9(
    make_mosquitto: Callable[..., Mosquitto],
) -> None:
    broker = make_mosquitto(persistent=True)
    port = broker.port
    async with broker.probe() as probe:
        await probe.publish("smoke/graceful", b"kept", retain=True)
    broker.stop()
    broker.start()
    assert broker.port == port
    assert await _retained_after(broker, "smoke/graceful") == b"kept"

    async with broker.probe() as probe:
        await probe.publish("smoke/crash", b"autosaved", retain=True)
    # autosave_interval 1: wait until the database on disk holds it, then crash the broker.
    db = broker.dir / "mosquitto.db"
    await wait_for(lambda: db.exists() and b"autosaved" in db.read_bytes(), timeout=5)
    broker.kill9()
    broker.start()
    assert await _retained_after(broker, "smoke/crash") == b"autosaved"


# --- HAP ---------------------------------------------------------------------------------


class _QuietBridge(Bridge):  # type: ignore[misc]
    def setup_message(self) -> None:
        """HAP-python would print the setup code and a QR code to stdout."""


@dataclass
class SwitchServer:
    """A HAP-python bridge with one Switch on 127.0.0.1, restartable with the same state."""

    persist_file: Path
    port: int = field(default_factory=free_port)
    setter_calls: list[Any] = field(default_factory=list)
    driver: AccessoryDriver = field(init=False)
    switch: Accessory = field(init=False)

    async def start(self) -> None:
        self.driver = AccessoryDriver(
            loop=asyncio.get_running_loop(),
            address="127.0.0.1",
            port=self.port,
            persist_file=str(self.persist_file),
            pincode=PIN.encode(),
            async_zeroconf_instance=LoopbackZeroconf(),
        )
        bridge = _QuietBridge(self.driver, "Smoke Bridge")
        self.switch = Accessory(self.driver, "Smoke Switch")
        self.switch.add_preload_service("Switch")
        self.on.setter_callback = self.setter_calls.append
        bridge.add_accessory(self.switch)
        self.driver.add_accessory(bridge)
        await self.driver.async_start()

    async def stop(self) -> None:
        await self.driver.async_stop()  # also closes the AsyncZeroconf it was given

    @property
    def device_id(self) -> str:
        return str(self.driver.state.mac)

    @property
    def on(self) -> Characteristic:
        return self.switch.get_service("Switch").get_characteristic("On")

    @property
    def on_id(self) -> tuple[int, int]:
        return self.switch.aid, self.switch.iid_manager.get_iid(self.on)

    def persisted_pairings(self) -> dict[str, Any]:
        # HAP-python persists a new pairing from an executor thread, after pair-setup returns.
        return dict(json.loads(self.persist_file.read_text()).get("paired_clients") or {})


@pytest.fixture
async def switch_server(tmp_path: Path) -> AsyncIterator[SwitchServer]:
    server = SwitchServer(tmp_path / "accessory.state")
    await server.start()
    yield server
    await server.stop()


async def test_pair_list_read_write_and_events(switch_server: SwitchServer) -> None:
    server = switch_server
    aid, iid = server.on_id
    async with await HapClient.pair("127.0.0.1", server.port, server.device_id, PIN) as client:
        accessories = await client.list_accessories()
        assert [a["aid"] for a in accessories] == [1, aid]
        assert find_iid(accessories, aid, ON, service_type="49") == iid

        assert await client.read(aid, iid) is False
        assert await client.put([(aid, iid, 1)]) == {(aid, iid): 0}
        assert client.last_http_status == 204
        assert server.setter_calls == [True]
        assert await client.read(aid, iid) is True

        assert await client.subscribe([(aid, iid)]) == {(aid, iid): 0}
        since = time.monotonic()
        server.on.set_value(False)  # notifies subscribers (HAP-python batches up to 0.5 s)
        event = await client.wait_event(aid, iid, value=False, since=since, timeout=5)
        assert event.at >= since
        # The writer's own PUT is not echoed to it as an event.
        assert [e.value for e in client.events_for(aid, iid)] == [False]

        # HAP-python 5.2.0 skips a write to an unknown iid and answers 204 No Content, as if
        # it had succeeded (5.0.0 answered HTTP 500 {"status": -70402}; the HAP spec wants a
        # 207 with -70409). The bridge's own driver answers -70409 (test_exposer_faults).
        assert await client.put([(aid, 999, 1)]) == {(aid, 999): 0}
        assert client.last_http_status == 204
        assert server.setter_calls == [True]
        saved = client.pairing_data

    async with HapClient.from_pairing_data(saved) as again:
        assert await again.read(aid, iid) is False


async def test_saved_pairing_survives_server_restart(switch_server: SwitchServer) -> None:
    server = switch_server
    aid, iid = server.on_id
    async with await HapClient.pair("127.0.0.1", server.port, server.device_id, PIN) as client:
        saved = client.pairing_data
    await wait_for(server.persisted_pairings, timeout=5, message="pairing persisted")

    await server.stop()
    await server.start()  # same port and state file; new driver, accessories, zeroconf

    async with HapClient.from_pairing_data(saved) as client:
        assert client.device_id.lower() == server.device_id.lower()
        assert await client.read(aid, iid) is False
        await client.subscribe([(aid, iid)])
        server.on.set_value(True)
        await client.wait_event(aid, iid, value=True, timeout=5)


async def test_wrong_pin_is_refused_after_each_attempt(switch_server: SwitchServer) -> None:
    server = switch_server
    with pytest.raises(AuthenticationError):
        await HapClient.pair("127.0.0.1", server.port, server.device_id, "111-22-333", attempts=2)
    async with await HapClient.pair("127.0.0.1", server.port, server.device_id, PIN) as client:
        assert await client.read(*server.on_id) is False


async def test_discovery_and_pairing_over_loopback_mdns(switch_server: SwitchServer) -> None:
    async with loopback_controller() as controller:
        client = await HapClient.discover_and_pair(controller, switch_server.device_id, PIN)
        async with client:
            assert await client.read(*switch_server.on_id) is False
