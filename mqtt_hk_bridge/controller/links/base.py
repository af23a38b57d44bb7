"""What every link shares: following the accessory's zeroconf record, and waiting for a
change instead of polling."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

_LOGGER = logging.getLogger(__name__)


async def wait_changed(changed: asyncio.Event, within: float | None) -> bool:
    """Wait until `changed` is set or `within` seconds pass; clears it. True when it was set."""
    try:
        await asyncio.wait_for(changed.wait(), within)
    except TimeoutError:
        return False
    finally:
        changed.clear()
    return True


def follow_description(pairing: Any, changed: asyncio.Event, name: str) -> Any:
    """Wrap the pairing's zeroconf-record handler: `changed` is set on every new record, and
    a moved accessory is logged. Returns the original handler (for `detach`)."""
    handle = pairing._async_description_update

    def description_update(description: Any) -> None:
        old = pairing.description
        handle(description)
        # Bluetooth advertisements carry an address but no port: they never move.
        if description is not None and old is not None and hasattr(description, "port"):
            before, after = (old.address, old.port), (description.address, description.port)
            if before != after:
                _LOGGER.info(
                    "%s: address changed old=%s new=%s", name, _where(*before), _where(*after)
                )
        changed.set()

    pairing._async_description_update = description_update
    return handle


def _where(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class LinkBase:
    """What every link does alike: it holds its pairing, follows its zeroconf record or
    advertisements into `changed`, and undoes that hook in `detach`. The defaults are those
    of a transport that announces every change (IP, CoAP)."""

    transport = ""
    #: Nothing changes unannounced: the connection and zeroconf wake the session.
    wake_interval: float | None = None
    #: A new state number (s#) in the zeroconf record: read everything once.
    reads_on_state_number = True

    def __init__(self, pairing: Any, name: str) -> None:
        self._pairing = pairing
        self.changed = asyncio.Event()
        self._description_handler = follow_description(pairing, self.changed, name)

    @property
    def connected(self) -> bool:
        return bool(self._pairing.is_connected)

    def poll_interval(self, configured: float) -> float:
        return configured

    def tap_raw_events(self, tap: Callable[[Any], None]) -> None:
        """Only IP has event frames that fold several values: nothing to see elsewhere."""

    def detach(self) -> None:
        self._pairing._async_description_update = self._description_handler
