"""`<base>/bridge/devices`: one entry shape for every device on both sides.

The accessory side (MQTT devices shown in the Home app) and the controller side (HomeKit
accessories the bridge controls) both build their entries with these functions, so a
Node-RED flow reads one schema whatever a device's origin. `ENTRY_SCHEMA` is that schema;
docs/topics.md describes it and a contract test holds both sides to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import voluptuous as vol

from . import const
from .homekit.catalog import CharInfo

#: `source` of an accessory-side device: where its topics come from.
ACCESSORY_SOURCES = (
    const.SOURCE_HOMEKIT_TOPICS,  # our own topic layout
    const.SOURCE_MAPPED,  # a mapping in bridge.yaml
    const.SOURCE_HOMEASSISTANT_DISCOVERY,  # a Home Assistant discovery config
)
#: `source` of a controller-side device: the transport its pairing talks over.
CONTROLLER_SOURCES = ("ip", "coap", "ble")

#: What a characteristic may say besides name, format and perms (when it has them).
_OPTIONAL_CHAR_FIELDS = ("unit", "min_value", "max_value", "min_step")

_NUMBER = vol.Any(int, float)

CHARACTERISTIC_SCHEMA = vol.Schema(
    {
        vol.Required("name"): str,
        vol.Required("format"): str,
        vol.Required("perms"): [str],
        # Where its live value is retained (a copy here would go stale); absent for a
        # mapped or discovered device, whose own topics its `mapping` names.
        vol.Optional("topic"): str,
        vol.Optional("unit"): str,
        vol.Optional("min_value"): _NUMBER,
        vol.Optional("max_value"): _NUMBER,
        vol.Optional("min_step"): _NUMBER,
        vol.Optional("valid_values"): [int],
        # HAP instance id, controller side only (the accessory's own numbering).
        vol.Optional("iid"): int,
    }
)

SERVICE_SCHEMA = vol.Schema(
    {
        vol.Required("type"): str,
        vol.Required("index"): vol.All(int, vol.Range(min=1)),
        vol.Optional("iid"): int,
        vol.Required("characteristics"): [CHARACTERISTIC_SCHEMA],
    }
)

ENTRY_SCHEMA = vol.Schema(
    vol.Any(
        {
            vol.Required("id"): str,
            vol.Required("origin"): const.ORIGIN_MQTT,
            vol.Required("source"): vol.In(ACCESSORY_SOURCES),
            vol.Required("name"): str,
            vol.Required("aid"): vol.Any(None, int),
            # The HAP bridge showing it (1, 2, ...); null while it is not shown.
            vol.Required("bridge"): vol.Any(None, int),
            vol.Required("available"): bool,
            vol.Required("services"): [SERVICE_SCHEMA],
            # How a mapped or discovered device's topics map to it (its source's own words).
            vol.Optional("mapping"): dict,
        },
        {
            vol.Required("id"): str,
            vol.Required("origin"): const.ORIGIN_HOMEKIT,
            vol.Required("source"): vol.In(CONTROLLER_SOURCES),
            vol.Required("name"): str,
            vol.Required("aid"): int,
            vol.Required("available"): bool,
            vol.Required("services"): [SERVICE_SCHEMA],
            # The pairing the device belongs to (`<alias>` or `<alias>-<aid>` is its id).
            vol.Required("alias"): str,
        },
    )
)


def characteristic_entry(
    info: CharInfo, *, topic: str | None = None, iid: int | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": info.name, "format": info.format, "perms": list(info.perms)}
    if topic is not None:
        entry["topic"] = topic
    for field in _OPTIONAL_CHAR_FIELDS:
        if getattr(info, field) is not None:
            entry[field] = getattr(info, field)
    if info.valid_values is not None:
        entry["valid_values"] = list(info.valid_values)
    if iid is not None:
        entry["iid"] = iid
    return entry


def service_entry(
    service_type: str,
    index: int,
    characteristics: Sequence[dict[str, Any]],
    *,
    iid: int | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": service_type, "index": index}
    if iid is not None:
        entry["iid"] = iid
    entry["characteristics"] = list(characteristics)
    return entry


def device_entry(
    *,
    device_id: str,
    origin: str,
    source: str,
    name: str,
    aid: int | None,
    available: bool,
    services: Sequence[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    """One device; `extra` holds its origin's own fields (`alias`, `mapping`)."""
    return {
        "id": device_id,
        "origin": origin,
        "source": source,
        "name": name,
        "aid": aid,
        "available": available,
        "services": list(services),
        **extra,
    }
