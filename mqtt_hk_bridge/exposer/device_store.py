"""The accessory side's memory of its devices (`accessory-devices.json`): last values,
availability and names, written at most once per flush interval, and at stop."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from .. import const
from ..store import JsonStore
from .registry import Registry

_LOGGER = logging.getLogger(__name__)

DEVICES_FILE = const.ACCESSORY_DEVICES_FILE


class DeviceStore:
    def __init__(self, data_dir: Path, flush_interval: float) -> None:
        self._store = JsonStore(data_dir / DEVICES_FILE)
        self._flush_interval = flush_interval
        self.registry = Registry.from_json(self._store.load() or {})
        self._dirty = False

    def changed(self) -> None:
        """Something in the registry changed: it reaches disk at the next flush."""
        self._dirty = True

    def flush(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        try:
            self._store.save(self.registry.to_json())
        except OSError as err:
            self._dirty = True
            _LOGGER.error("Could not save %s: %s", self._store.path, err)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            self.flush()
