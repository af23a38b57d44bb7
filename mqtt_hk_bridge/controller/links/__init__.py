"""One pairing's connection, whatever carries it: IP (`ip.py`), CoAP over Thread
(`coap.py`) or Bluetooth LE (`ble.py`), behind the small `Link` interface the session is
written against once.

These modules and `controller/aiohomekit_adapter.py` are the only ones that reach into
aiohomekit (written against 4.0.1); each transport's quirks live in its own module.
A link wakes its session with `changed` (connected, lost, a new zeroconf record) instead of
being polled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from aiohomekit.exceptions import HomeKitException
from aiohomekit.model import Transport

from .base import wait_changed
from .ble import BleLink
from .coap import COAP_ERRORS, CoapLink
from .ip import IpLink

__all__ = ["LINK_ERRORS", "Link", "make_link", "wait_changed"]

#: Errors of talking to an accessory that mean "the connection is not usable".
LINK_ERRORS: tuple[type[BaseException], ...] = (
    HomeKitException,
    OSError,
    TimeoutError,
    *COAP_ERRORS,
)


class Link(Protocol):
    #: `ip`, `coap` or `ble`: what `discover` calls the transport.
    transport: str
    #: Set whenever the connection or the accessory's zeroconf record changes.
    changed: asyncio.Event
    #: How often the session must look at `connected` without being woken (None: never).
    wake_interval: float | None
    #: Whether a new state number means the session reads every value once.
    reads_on_state_number: bool

    @property
    def connected(self) -> bool: ...

    async def attempt(self, within: float) -> BaseException | None:
        """One connection attempt (with pair-verify); None when connected, else the error."""

    def poll_interval(self, configured: float) -> float:
        """Seconds between slow full reads, given the configured interval."""

    def hold_down_when_lost(self) -> None:
        """A live connection that drops stays down until the next `attempt`."""

    async def drop(self) -> None:
        """Close the connection; the session decides when to try again."""

    def endpoint(self) -> tuple[list[str], int] | None:
        """The addresses and port the live connection uses, or None when down."""

    def tap_raw_events(self, tap: Callable[[Any], None]) -> None:
        """Also hand each raw event body to `tap` (where a transport has frames to see)."""

    def detach(self) -> None:
        """Undo every hook into aiohomekit (the session is stopping)."""


def make_link(pairing: Any, name: str) -> Link:
    """The link for the pairing's transport (`name` is what the log calls it)."""
    # By what the pairing says, not its class: the Bluetooth one is imported only when on.
    if pairing.transport is Transport.COAP:
        return CoapLink(pairing, name)
    if pairing.transport is Transport.BLE:
        return BleLink(pairing, name)
    return IpLink(pairing, name)
