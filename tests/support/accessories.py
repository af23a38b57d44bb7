"""Reading a HAP accessory database (GET /accessories) the way a Home app would."""

from __future__ import annotations

from typing import Any

from aiohomekit.uuid import normalize_uuid

SERIAL_NUMBER = "30"


def aid_of(accessories: list[dict[str, Any]], device_id: str) -> int:
    """The aid of the bridged accessory whose serial number is the MQTT device id."""
    for accessory in accessories:
        for service in accessory["services"]:
            for char in service["characteristics"]:
                if _is(char["type"], SERIAL_NUMBER) and char.get("value") == device_id:
                    return int(accessory["aid"])
    raise AssertionError(f"no accessory for device {device_id}")


def _is(type_uuid: str, short: str) -> bool:
    return normalize_uuid(type_uuid) == normalize_uuid(short)


def services_of(accessories: list[dict[str, Any]], aid: int, service: str) -> list[dict[str, Any]]:
    """Services of type `service` (short UUID like "8A") on accessory `aid`, in iid order."""
    for accessory in accessories:
        if accessory["aid"] == aid:
            found = [s for s in accessory["services"] if _is(s["type"], service)]
            return sorted(found, key=lambda s: int(s["iid"]))
    raise AssertionError(f"no accessory {aid}")


def char_of(
    accessories: list[dict[str, Any]], aid: int, service: str, char: str, index: int = 1
) -> dict[str, Any]:
    """The characteristic `char` of the index-th `service` on accessory `aid`."""
    services = services_of(accessories, aid, service)
    if len(services) < index:
        raise AssertionError(f"accessory {aid} has {len(services)} services of type {service}")
    for candidate in services[index - 1]["characteristics"]:
        if _is(candidate["type"], char):
            return candidate
    raise AssertionError(f"service {service} on {aid} has no characteristic {char}")


def structure(accessories: list[dict[str, Any]]) -> set[tuple[int, int, str]]:
    """Every (aid, iid, type) of services and characteristics: what must never shift."""
    result = set()
    for accessory in accessories:
        for service in accessory["services"]:
            result.add((accessory["aid"], service["iid"], normalize_uuid(service["type"])))
            for char in service["characteristics"]:
                result.add((accessory["aid"], char["iid"], normalize_uuid(char["type"])))
    return result
