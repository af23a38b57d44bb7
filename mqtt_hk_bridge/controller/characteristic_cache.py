"""aiohomekit's characteristic cache, kept in `data_dir` across restarts.

aiohomekit asks its cache for each pairing's accessory database, configuration number, state
number and (Bluetooth) broadcast key. Kept only in memory, a restart forgets them: a Bluetooth
pairing then cannot read its encrypted broadcasts, and (aiohomekit 4.0.1) raises on every
advertisement until the database has been read again over the air. Saved through our store
(atomic, 0600), at most once a second: Bluetooth accessories bump their state number often.
aiohomekit's own CharacteristicCacheFile (4.0.1) rewrites its file in place on every change,
so a kill mid-write leaves it corrupt, and then starts cold without a word.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from aiohomekit.characteristic_cache import CharacteristicCacheMemory, Pairing

from ..errors import StateFileError
from ..store import JsonStore

_LOGGER = logging.getLogger(__name__)

CACHE_FILE = "controller-cache.json"
#: Changes within this many seconds are written once.
SAVE_DELAY = 1.0


def _validate(data: Any) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("pairings"), dict):
        raise ValueError("expected {'pairings': {...}}")


class StoredCharacteristicCache(CharacteristicCacheMemory):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self._store = JsonStore(path, _validate)
        try:
            data = self._store.load()
        except StateFileError as err:
            # Only a cache, unlike the pairings: start cold rather than not at all.
            _LOGGER.warning("%s; starting with an empty cache", err)
            data = None
        if data is not None:
            self.storage_data = dict(data["pairings"])
        self._pending: asyncio.TimerHandle | None = None

    def async_create_or_update_map(
        self,
        homekit_id: str,
        config_num: int,
        accessories: list[Any],
        broadcast_key: str | None = None,
        state_num: int | None = None,
    ) -> Pairing:
        data = super().async_create_or_update_map(
            homekit_id, config_num, accessories, broadcast_key, state_num
        )
        self._save_soon()
        return data

    def async_delete_map(self, homekit_id: str) -> None:
        super().async_delete_map(homekit_id)
        self._save_soon()

    def _save_soon(self) -> None:
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(SAVE_DELAY, self.flush)

    def flush(self) -> None:
        """Write what changed since the last write (at stop, too: nothing waits in a timer)."""
        if self._pending is None:
            return
        self._pending.cancel()
        self._pending = None
        try:
            self._store.save({"pairings": self.storage_data})
        except OSError as err:
            # Only a cache: the next read over the air fills it again.
            _LOGGER.warning("Could not save %s: %s", self._store.path, err)
