"""Time-driven availability: `expire_after` (a silent device shows "No Response") and
`remove_after` (a device silent that long leaves the bridge; never by default)."""

from __future__ import annotations

import asyncio
import logging
import time

from ..api import BridgeApi
from ..config import Config
from ..errors import NotConnectedError
from .devices import WAITING_EXPIRY, ExposedDevices

_LOGGER = logging.getLogger(__name__)

#: How often availability is checked against `expire_after` and `remove_after`.
CHECK_INTERVAL = 0.5


class AvailabilityWatch:
    def __init__(self, *, config: Config, api: BridgeApi, devices: ExposedDevices) -> None:
        self._config = config
        self._api = api
        self._devices = devices
        self._started_at = time.time()

    async def run(self) -> None:
        # Silence while the bridge itself was down does not count against a device.
        self._started_at = time.time()
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            for device_id in self._devices.shown_devices():
                self._devices.availability_changed(device_id)
            now = time.time()
            self._remove_silent_devices(now)
            self._forget_silent_waiting(now)

    def _forget_silent_waiting(self, now: float) -> None:
        """A device that only ever said who it is, and then nothing for an hour, is
        forgotten (its topics stay; if it speaks again, it is back)."""
        silent = [
            device.device_id
            for device in self._devices.waiting_devices()
            if now - max(device.last_seen, self._started_at) > WAITING_EXPIRY
        ]
        for device_id in silent:
            self._devices.forget(device_id)
        if silent:
            _LOGGER.info(
                "Forgot %d device(s) silent for %g s without a service to show: %s",
                len(silent),
                WAITING_EXPIRY,
                ", ".join(silent[:5]) + (" ..." if len(silent) > 5 else ""),
            )

    def _remove_silent_devices(self, now: float) -> None:
        for device in list(self._devices.registry.devices.values()):
            remove_after = self._config.device_options(device.device_id).remove_after
            silent_since = max(device.last_seen, self._started_at)
            if remove_after is None or now - silent_since <= remove_after:
                continue
            try:
                self._devices.remove(device)
            except NotConnectedError:
                return  # its retained topics must go too; try again once connected
            self._api.event(
                "device_removed",
                f"{device.device_id} was silent for more than {remove_after:g} s "
                "(remove_after); removed from the bridge",
                device=device.device_id,
            )
