"""Which service of a discovered device each entity is: `Switch/2` is the same relay after
every restart and whatever order the discovery messages arrive in, so its iids (and the
automations that use them) stay with it. An entity keeps its service index for good once
given; a new entity takes the lowest index of its type no other entity of the device holds.
Persisted in `discovery-services.json`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from .. import const
from ..errors import BridgeError
from ..mqtt.topics import ServiceKey
from ..store import JsonStore

_LOGGER = logging.getLogger(__name__)

SLOTS_FILE = "discovery-services.json"


def _validate(data: Any) -> None:
    if not isinstance(data, dict):
        raise ValueError("expected {device id: {slot: service key}}")
    for slots in data.values():
        if not isinstance(slots, dict) or not all(isinstance(v, str) for v in slots.values()):
            raise ValueError("expected {slot: 'Service/index'} per device")


class ServiceSlots:
    def __init__(self, data_dir: Path) -> None:
        self._store = JsonStore(data_dir / SLOTS_FILE, _validate)
        self._slots: dict[str, dict[str, str]] = self._store.load() or {}
        self._save_pending = False

    def key(self, device_id: str, slot: str, service: str) -> ServiceKey:
        """The service key of `slot` on the device; raises BridgeError when the device
        already has MAX_SERVICE_INDEX services of that type."""
        slots = self._slots.setdefault(device_id, {})
        known = slots.get(slot)
        if known is not None:
            name, _, known_index = known.partition("/")
            if name == service:
                return ServiceKey(name, int(known_index or 1))
        taken = {
            int(text.partition("/")[2] or 1)
            for other, text in slots.items()
            if other != slot and text.partition("/")[0] == service
        }
        index = next((i for i in range(1, const.MAX_SERVICE_INDEX + 1) if i not in taken), None)
        if index is None:
            raise BridgeError(f"{device_id} already has {const.MAX_SERVICE_INDEX} {service}s")
        slots[slot] = f"{service}/{index}"
        self._save_soon()
        return ServiceKey(service, index)

    def _save_soon(self) -> None:
        # One write for a burst of new entities (a start-up flood of discovery configs).
        if not self._save_pending:
            self._save_pending = True
            asyncio.get_running_loop().call_soon(self.save)

    def save(self) -> None:
        self._save_pending = False
        try:
            self._store.save(self._slots)
        except OSError as err:
            _LOGGER.error("Could not save %s: %s", self._store.path, err)
