"""Which HAP bridge each MQTT device is shown on (`bridge-assignments.json`), and the rule
that places a device that has none.

A device's bridge never changes by itself: the Home app knows an accessory by its bridge
and aid, so a device that moved would lose its room, name and automations. It is kept when
the device leaves (it comes back to the same bridge, with the same aid there, when that
bridge has room). Only an explicit `bridge` option moves a device.

A device's first bridge may reach disk a little later (`note`, then `flush`): until then
that bridge's ids are the only ones that know the device, which `choose_bridge` follows
after a crash. Any other change of bridge is saved before the device is shown (`set`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .. import const
from ..errors import BridgeError
from ..store import JsonStore

ASSIGNMENTS_FILE = "bridge-assignments.json"
FORMAT_VERSION = 1


class NoRoom(BridgeError):
    """No bridge may take the device now; it waits (the message says why)."""


def _validate(data: Any) -> None:
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        raise ValueError(f"expected an object with version {FORMAT_VERSION}")
    devices = data.get("devices")
    if not isinstance(devices, dict) or not all(
        isinstance(number, int) and number >= 1 for number in devices.values()
    ):
        raise ValueError("'devices' must map device ids to bridge numbers (1, 2, ...)")


class BridgeAssignments:
    def __init__(self, path: Path) -> None:
        self._store = JsonStore(path, _validate, compact=True)
        data = self._store.load()
        self._bridges: dict[str, int] = dict(data["devices"]) if data else {}
        self._unsaved = False

    def get(self, device_id: str) -> int | None:
        return self._bridges.get(device_id)

    def set(self, device_id: str, number: int) -> None:
        """Record the device's bridge; saved before it returns (an OSError changes nothing)."""
        if self._bridges.get(device_id) == number:
            return
        bridges = {**self._bridges, device_id: number}
        self._store.save({"version": FORMAT_VERSION, "devices": bridges})
        self._bridges = bridges
        self._unsaved = False

    def note(self, device_id: str, number: int) -> None:
        """Record a device's first bridge, to be saved by the next `flush`."""
        self._bridges[device_id] = number
        self._unsaved = True

    def flush(self) -> None:
        """Save what `note` recorded; an OSError leaves it to the next flush."""
        if self._unsaved:
            self._store.save({"version": FORMAT_VERSION, "devices": self._bridges})
            self._unsaved = False


def choose_bridge(
    *,
    shown_on: int | None,
    pinned: int | None,
    remembered: int | None,
    known_by: Iterable[int],
    shown_counts: Mapping[int, int],
    limit: int,
    capacity: int = const.MAX_BRIDGED_ACCESSORIES,
) -> int:
    """The bridge a device is shown on. Raises NoRoom when none may take it.

    In order: its `bridge` option (a shown device whose option names a full bridge stays
    where it is); the bridge it is shown on; the bridge it was assigned (when that has room);
    a bridge whose ids already know it (an install from before there were several bridges);
    the lowest-numbered bridge with room, opening it if need be, up to `limit`.
    """

    def has_room(number: int) -> bool:
        return number <= limit and shown_counts.get(number, 0) < capacity

    if pinned is not None:
        if pinned == shown_on or has_room(pinned):
            return pinned
        if shown_on is not None:
            return shown_on
        if pinned > limit:
            raise NoRoom(
                f"bridge {pinned}, which its `bridge` option names, is above homekit.bridges "
                f"({limit}); device not added"
            )
        raise NoRoom(
            f"bridge {pinned}, which its `bridge` option names, already shows {capacity} "
            "accessories, the most HomeKit allows on one bridge; device not added"
        )
    if shown_on is not None:
        return shown_on
    candidates = [] if remembered is None else [remembered]
    candidates += sorted(known_by)
    candidates += range(1, limit + 1)
    for candidate in candidates:
        if has_room(candidate):
            return candidate
    if limit == 1:
        raise NoRoom(
            f"the bridge already shows {capacity} accessories, the most HomeKit allows on one "
            "bridge, and homekit.bridges is 1; device not added"
        )
    raise NoRoom(
        f"all {limit} bridges (homekit.bridges) already show {capacity} accessories each, "
        "the most HomeKit allows on one bridge; device not added"
    )
