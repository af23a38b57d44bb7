"""The accessory peer is faithful: what aiohomekit reads from it is what real devices sent.

Each test pairs once (SRP-3072 is the slow part) with one peer process at a time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohomekit.uuid import normalize_uuid
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from tests.support.accessory_process import AccessoryProcess, PeerError
from tests.support.fixtures import DATABASE_FILES
from tests.support.hap_client import HapClient, find_iid
from tests.support.wait import wait_for

DATABASES = DATABASE_FILES
NUMERIC = {"int", "float", "uint8", "uint16", "uint32", "uint64"}
HAP_TCP = "_hap._tcp.local."


def canonical(accessories: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """aid -> services in order, types as full upper-case UUIDs (as aiohomekit normalises).

    Left out: "ev" (a recording controller's subscription state, not part of the database)
    and "stype" (a name aiohomekit's dumps add).
    """
    result = {}
    for accessory in accessories:
        services = []
        for service in accessory["services"]:
            chars = [
                {**{k: v for k, v in c.items() if k != "ev"}, "type": normalize_uuid(c["type"])}
                for c in service["characteristics"]
            ]
            rest = {k: v for k, v in service.items() if k not in ("characteristics", "stype")}
            services.append({**rest, "type": normalize_uuid(service["type"]), "chars": chars})
        result[accessory["aid"]] = services
    return result


def _characteristics(accessories: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    return [
        (accessory["aid"], char)
        for accessory in accessories
        for service in accessory["services"]
        for char in service["characteristics"]
    ]


def _another_value(char: dict[str, Any]) -> Any:
    """A valid value different from the recorded one (bool and numbers only), else None."""
    value = char.get("value")
    # Some recordings (idevices_switch) omit "format"; the value's type tells.
    fmt = char.get("format") or {bool: "bool", int: "int", float: "float"}.get(type(value))
    if fmt == "bool":
        return not value
    if fmt not in NUMERIC:
        return None
    if "valid-values" in char:
        return next((v for v in char["valid-values"] if v != value), None)
    low, high = char.get("minValue", 0), char.get("maxValue", (value or 0) + 1)
    return high if value != high else low


@pytest.mark.parametrize("database", DATABASES, ids=lambda path: path.stem)
async def test_recorded_database_is_served_faithfully(tmp_path: Path, database: Path) -> None:
    recorded = json.loads(database.read_text())
    async with AccessoryProcess(tmp_path, database=database) as peer:
        assert peer.device_id is not None
        client = await HapClient.pair("127.0.0.1", peer.port, peer.device_id, peer.pin)
        async with client:
            served = await client.list_accessories()
            assert canonical(served) == canonical(recorded)

            # Reads return the recorded values; write-only ones answer -70405 as on devices.
            chars = _characteristics(recorded)
            readable = [(aid, c) for aid, c in chars if "pr" in c["perms"] and "value" in c]
            values = await client.get([(aid, c["iid"]) for aid, c in readable])
            assert {key: r.get("value") for key, r in values.items()} == {
                (aid, c["iid"]): c["value"] for aid, c in readable
            }
            write_only = [(aid, c["iid"]) for aid, c in chars if c["perms"] == ["pw"]]
            if write_only:
                refused = await client.get(write_only)
                assert {r.get("status") for r in refused.values()} == {-70405}

            # Every characteristic with "ev" sends an event when the accessory changes it.
            changes = [
                (aid, c["iid"], new)
                for aid, c in chars
                if "ev" in c["perms"] and (new := _another_value(c)) is not None
            ]
            statuses = await client.subscribe([(aid, iid) for aid, iid, _ in changes])
            assert set(statuses.values()) <= {0}
            for aid, iid, new in changes:
                await peer.set(aid, iid, new)
            for aid, iid, new in changes:
                await client.wait_event(aid, iid, new, timeout=5)


async def test_demo_writes_events_and_permissions(tmp_path: Path) -> None:
    async with AccessoryProcess(tmp_path) as peer:
        assert peer.device_id is not None
        assert (await peer.info())["paired"] is False
        client = await HapClient.pair("127.0.0.1", peer.port, peer.device_id, peer.pin)
        async with client:
            accessories = await client.list_accessories()
            assert [a["aid"] for a in accessories] == [1, 2, 3]
            on = find_iid(accessories, 2, "25", "43")
            brightness = find_iid(accessories, 2, "8", "43")
            temperature = find_iid(accessories, 3, "11", "8A")

            # A controller write is stored, logged and readable.
            assert await client.put([(2, on, True), (2, brightness, 40)]) == {
                (2, on): 0,
                (2, brightness): 0,
            }
            assert await peer.writes() == [
                {"aid": 2, "iid": on, "value": True},
                {"aid": 2, "iid": brightness, "value": 40},
            ]
            assert await client.read(2, brightness) == 40
            assert await peer.get(2, on) is True

            # Real-accessory answers HAP-python alone would not give.
            refused = await client.put([(3, temperature, 30.0), (9, 9, 1)])
            assert refused == {(3, temperature): -70404, (9, 9): -70409}
            assert len(await peer.writes()) == 2

            # A server-side change reaches the subscribed controller at once (no 0.5 s window).
            assert await client.subscribe([(3, temperature)]) == {(3, temperature): 0}
            started = time.monotonic()
            assert await peer.set(3, temperature, 23.5) == 23.5
            event = await client.wait_event(3, temperature, 23.5, timeout=5)
            assert event.at - started < 0.4
            with pytest.raises(PeerError, match="numeric"):
                await peer.set(3, temperature, "warm")

        info = await peer.info()
        assert info["paired"] is True
        assert (info["device_id"], info["port"]) == (peer.device_id, peer.port)


async def _announcement(
    azc: AsyncZeroconf, names: set[str], device_id: str, port: int, config_number: int
) -> AsyncServiceInfo | None:
    """The peer's mDNS record once it shows this port and c#, else None."""
    for name in names:
        info = AsyncServiceInfo(HAP_TCP, name)
        if not await info.async_request(azc.zeroconf, 500):
            continue
        props = info.decoded_properties
        if (props.get("id") or "").lower() == device_id.lower() and (
            info.port,
            props.get("c#"),
        ) == (port, str(config_number)):
            return info
    return None


async def test_restart_on_new_port_keeps_pairing_and_announces_it(tmp_path: Path) -> None:
    azc = AsyncZeroconf(interfaces=["127.0.0.1"])
    names: set[str] = set()
    browser = AsyncServiceBrowser(
        azc.zeroconf, [HAP_TCP], handlers=[lambda name, **_: names.add(name)]
    )
    peer = AccessoryProcess(tmp_path)
    try:
        await peer.start()
        assert peer.device_id is not None
        device_id = peer.device_id
        client = await HapClient.pair("127.0.0.1", peer.port, device_id, peer.pin)
        await client.close()
        config_number = (await peer.info())["config_number"]

        # Power loss, then back on another port: same device id, pairing still valid.
        old_port = peer.port
        await peer.kill()
        await peer.start(port=0)
        assert peer.port != old_port
        assert peer.device_id == device_id
        moved = HapClient.from_pairing_data(client.pairing_data, port=peer.port)
        async with moved:  # pair-verify passes against the restarted peer
            on = find_iid(await moved.list_accessories(), 2, "25")
            assert await moved.read(2, on) is False
        assert (await peer.info())["config_number"] == config_number

        # bump_config re-announces c#; the record also carries the new port.
        assert await peer.bump_config() == config_number + 1
        info = await wait_for(
            lambda: _announcement(azc, names, device_id, peer.port, config_number + 1),
            timeout=10,
            message="mDNS record with the new port and c#",
        )
        assert info.decoded_properties.get("sf") == "0"  # paired: not discoverable
    finally:
        await peer.stop()
        await browser.async_cancel()
        await azc.async_close()
