"""A HomeKit accessory over Bluetooth LE (HAP-BLE), through aiohomekit's BlePairing.

Over Bluetooth a controller does not hold a connection: aiohomekit connects for a request
(and resumes the session), and learns of changes from the accessory's advertisements (the
global state number goes up: it connects and reads what changed) and its encrypted
broadcasts. So the link is "up" while the accessory is reachable, which aiohomekit judges by
its advertisements, and the session leaves state-number changes to aiohomekit.
"""

from __future__ import annotations

import time

from .base import LinkBase, wait_changed


class BleLink(LinkBase):
    transport = "ble"
    #: Advertisements stop without an event when an accessory goes away: look again this often.
    wake_interval: float | None = 60.0
    #: aiohomekit reads what changed when the state number goes up; a full read would cost
    #: a Bluetooth round trip per characteristic.
    reads_on_state_number = False

    @property
    def connected(self) -> bool:
        return bool(self._pairing.is_available)

    def poll_interval(self, configured: float) -> float:
        """Never more often than aiohomekit's own pace for the accessory (24 h for most)."""
        return max(configured, float(self._pairing.poll_interval.total_seconds()))

    def hold_down_when_lost(self) -> None:
        """aiohomekit connects only for a request over Bluetooth: nothing to hold down."""

    async def attempt(self, within: float) -> BaseException | None:
        """Reachable when aiohomekit has seen it advertise; wait for an advertisement."""
        deadline = time.monotonic() + within
        while not self.connected and (remaining := deadline - time.monotonic()) > 0:
            await wait_changed(self.changed, remaining)
        if self.connected:
            return None
        return TimeoutError(f"not seen advertising within {within:g} s")

    async def drop(self) -> None:
        await self._pairing.close()
        self.changed.set()

    def endpoint(self) -> tuple[list[str], int] | None:
        """A Bluetooth address is no network endpoint to remember."""
        return None
