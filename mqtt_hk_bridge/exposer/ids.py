"""Accessory ids and instance ids: allocated here and nowhere else, and never reused.

The Home app keeps rooms, names and automations by aid and iid, so a device keeps its aid
for life, and each of its services and characteristics keeps its iid, across restarts and
across later additions (a new service takes the next free iid; nothing shifts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..store import JsonStore

#: aid 1 is the bridge itself (HAP); bridged accessories start at 2.
FIRST_BRIDGED_AID = 2
#: The accessory information service comes first and takes iid 1 (HAP requires iid 1).
FIRST_IID = 1


def _validate(data: Any) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("devices"), dict):
        raise ValueError("expected {'next_aid': int, 'devices': {...}}")
    int(data["next_aid"])
    for entry in data["devices"].values():
        int(entry["aid"])
        int(entry["next_iid"])
        if not isinstance(entry["iids"], dict):
            raise ValueError("iids must be a mapping")


class IdStore:
    """aid per device id, iid per (device id, key).

    New allocations are written by `save()`, which the caller runs before a controller can
    see them (before the accessory joins the bridge): one save per accessory built, or per
    batch of new accessories in a flood, not one per characteristic.
    """

    def __init__(self, path: Path) -> None:
        self._store = JsonStore(path, _validate, compact=True)
        data = self._store.load() or {"next_aid": FIRST_BRIDGED_AID, "devices": {}}
        self._next_aid: int = data["next_aid"]
        self._devices: dict[str, dict[str, Any]] = data["devices"]
        self._unsaved = False

    def save(self) -> None:
        """Persist allocations made since the last save (nothing to do if none)."""
        if self._unsaved:
            self._store.save({"next_aid": self._next_aid, "devices": self._devices})
            self._unsaved = False

    def _entry(self, device_id: str) -> dict[str, Any]:
        entry = self._devices.get(device_id)
        if entry is None:
            entry = {"aid": self._next_aid, "next_iid": FIRST_IID, "iids": {}}
            self._next_aid += 1
            self._devices[device_id] = entry
            self._unsaved = True
        return entry

    def aid(self, device_id: str) -> int:
        return int(self._entry(device_id)["aid"])

    def known_aid(self, device_id: str) -> int | None:
        entry = self._devices.get(device_id)
        return None if entry is None else int(entry["aid"])

    def iid(self, device_id: str, key: str) -> int:
        """The iid of `key` (`Service/n` or `Service/n/Characteristic`) on the device."""
        entry = self._entry(device_id)
        iids: dict[str, int] = entry["iids"]
        found = iids.get(key)
        if found is None:
            found = entry["next_iid"]
            entry["next_iid"] = found + 1
            iids[key] = found
            self._unsaved = True
        return found
