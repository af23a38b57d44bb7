"""A HomeKit accessory over IP (HAP over HTTP on TCP), through aiohomekit's IpPairing.

aiohomekit 4.0.1 keeps the connection itself: it reconnects at once after every loss and
does not count connections that fail during pair-verify, so an accessory that drops each
session as it comes up gets a storm. The link takes the retry schedule from it: a live
connection is marked closing (aiohomekit then leaves it down when it drops) and one attempt
at a time is started through aiohomekit's own connector.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .base import LinkBase, wait_changed

#: While an attempt runs, how often its connector's outcome is looked at (aiohomekit
#: reports a failed attempt only in `last_connector_error`; success wakes at once).
ATTEMPT_CHECK = 0.05


class IpLink(LinkBase):
    transport = "ip"

    def __init__(self, pairing: Any, name: str) -> None:
        super().__init__(pairing, name)
        self._connection = pairing.connection
        self._connection_made = pairing.connection_made
        self._connection_lost = self._connection._connection_lost
        self._event_received = pairing.event_received
        pairing.connection_made = self._on_made
        self._connection._connection_lost = self._on_lost

    async def _on_made(self, secure: bool) -> None:
        await self._connection_made(secure)
        self.changed.set()

    def _on_lost(self, exception: Exception) -> None:
        self._connection_lost(exception)
        self.changed.set()

    def tap_raw_events(self, tap: Callable[[Any], None]) -> None:
        """Call `tap` with each raw EVENT body after aiohomekit has handled it.

        4.0.1 folds an EVENT frame into one value per (aid, iid), keeping the one listed
        last; HAP-NodeJS lists the newest first, so the session must see the raw body.
        """
        handle = self._event_received

        def event_received(event: Any) -> None:
            handle(event)
            tap(event)

        self._pairing.event_received = event_received

    def detach(self) -> None:
        super().detach()
        self._pairing.connection_made = self._connection_made
        self._pairing.event_received = self._event_received
        self._connection._connection_lost = self._connection_lost

    def hold_down_when_lost(self) -> None:
        self._connection.closing = True

    async def attempt(self, within: float) -> BaseException | None:
        before = self._connection.last_connector_error
        # 4.0.1 sets `closed` for good when a transport goes down while closing and never
        # clears it: is_connected would stay False after every later pair-verify.
        self._connection.closed = False
        self._connection.reconnect_soon()
        deadline = time.monotonic() + within
        error: BaseException | None = None
        while (remaining := deadline - time.monotonic()) > 0:
            if self.connected:
                return None
            current = self._connection.last_connector_error
            if current is not None and current is not before:
                error = current
                break
            await wait_changed(self.changed, min(ATTEMPT_CHECK, remaining))
        if self.connected:
            return None
        await self._connection.close()  # stops aiohomekit's connector: no retry of its own
        return error or TimeoutError(f"no connection within {within:g} s")

    async def drop(self) -> None:
        await self._connection.close()
        self.changed.set()

    def endpoint(self) -> tuple[list[str], int] | None:
        if not self._connection.connected_host:
            return None
        return list(self._connection.hosts), int(self._connection.port)
