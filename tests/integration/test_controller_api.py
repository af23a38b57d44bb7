"""Pairing over MQTT (`HomeKit/bridge/request/...`), as a Node-RED flow does it, against a
real HAP-python accessory process, a real Mosquitto and real aiohomekit (mDNS on loopback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mqtt_hk_bridge.controller.settings import DEFAULT_PAIRING_FILE
from tests.support.accessory_process import AccessoryProcess
from tests.support.controller_harness import ControllerHarness
from tests.support.mosquitto import Mosquitto, MqttProbe
from tests.support.wait import wait_for


async def request(probe: MqttProbe, action: str, body: dict[str, Any], transaction: str) -> Any:
    await probe.publish(
        f"HomeKit/bridge/request/{action}", json.dumps({**body, "transaction": transaction})
    )
    message = await probe.wait_message(
        f"HomeKit/bridge/response/{action}",
        lambda m: json.loads(m.payload).get("transaction") == transaction,
        timeout=30,
    )
    return json.loads(message.payload)


async def test_discover_pair_list_unpair_over_mqtt(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with (
        AccessoryProcess(tmp_path, name="Api Bridge") as peer,
        mosquitto.probe() as probe,
        ControllerHarness(tmp_path / "data", mosquitto) as harness,
    ):
        await probe.subscribe("HomeKit/#")
        device_id = str(peer.device_id)

        found = await request(probe, "discover", {"timeout": 1.5}, "d1")
        assert found["status"] == "ok"
        entry = next(item for item in found["data"] if item["device_id"] == device_id.lower())
        assert entry["paired"] is False and entry["transport"] == "ip"
        assert entry["name"].startswith("Api Bridge") and entry["port"] == peer.port

        wrong = await request(
            probe,
            "pair",
            {"device_id": device_id, "setup_code": "111-22-333", "alias": "api"},
            "p0",
        )
        assert wrong["status"] == "error" and wrong["transaction"] == "p0"
        assert "api" not in harness.side.store

        bad_alias = await request(
            probe, "pair", {"device_id": device_id, "setup_code": peer.pin, "alias": "a/b"}, "p1"
        )
        assert bad_alias["status"] == "error" and "alias" in bad_alias["error"]

        paired = await request(
            probe, "pair", {"device_id": device_id, "setup_code": peer.pin, "alias": "api"}, "p2"
        )
        assert paired == {
            "status": "ok",
            "data": {"alias": "api", "device_id": device_id.lower()},
            "transaction": "p2",
        }
        assert (await peer.info())["paired"] is True
        await probe.wait_message("HomeKit/api-2/availability", lambda m: m.payload == b"online")
        await probe.wait_message("HomeKit/api-3/TemperatureSensor/CurrentTemperature")
        # The pairing is in our store (aiohomekit's finish_pairing alone would not keep it),
        # and registered with the Controller, so zeroconf updates reach it.
        stored = json.loads((tmp_path / "data" / DEFAULT_PAIRING_FILE).read_text())
        assert list(stored["pairings"]) == ["api"]
        controller = harness.side.controller
        assert controller is not None and "api" in controller.aliases
        assert (
            device_id.lower() in controller.transports[next(iter(controller.transports))].pairings
        )

        again = await request(
            probe, "pair", {"device_id": device_id, "setup_code": peer.pin, "alias": "api2"}, "p3"
        )
        assert again["status"] == "error" and "already paired as 'api'" in again["error"]

        listed = await request(probe, "list-pairings", {}, "l1")
        assert listed["data"][0]["alias"] == "api"
        await wait_for(lambda: harness.side.sessions["api"].mirror.available, timeout=5)
        listed = await request(probe, "list-pairings", {}, "l2")
        assert listed["data"][0]["available"] is True
        assert listed["data"][0]["devices"] == ["api", "api-2", "api-3"]

        removed = await request(probe, "unpair", {"alias": "api"}, "u1")
        assert removed == {
            "status": "ok",
            "data": {"alias": "api", "confirmed": True},
            "transaction": "u1",
        }
        assert (await peer.info())["paired"] is False
        assert "api" not in harness.side.store
        assert not harness.side.owns("api-2")
        # Its retained topics are cleared.
        await probe.wait_message("HomeKit/api-2/availability", lambda m: m.payload == b"")
        missing = await request(probe, "unpair", {"alias": "api"}, "u2")
        assert missing["status"] == "error"


async def test_corrupt_pairing_file_stops_start_with_its_name(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    import pytest

    from mqtt_hk_bridge.errors import StateFileError

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = data_dir / DEFAULT_PAIRING_FILE
    path.write_text('{"version": 1, "pairings": {"x": ')
    harness = ControllerHarness(data_dir, mosquitto)
    with pytest.raises(StateFileError, match=DEFAULT_PAIRING_FILE.replace(".", r"\.")):
        await harness.side.start()
    assert path.read_text() == '{"version": 1, "pairings": {"x": '  # never reset
    assert harness.side.controller is None  # stopped before any network I/O
    await harness.zeroconf.async_close()
