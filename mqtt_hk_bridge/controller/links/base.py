"""What every link shares: following the accessory's zeroconf record, and waiting for a
change instead of polling."""

from __future__ import annotations

import asyncio
import logging
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
