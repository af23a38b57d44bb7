"""A HomeKit accessory over CoAP on Thread (HAP PDUs in CoAP over UDP/IPv6, advertised as
`_hap._udp`), through aiohomekit's CoAPPairing.

aiohomekit 4.0.1 keeps no connection of its own here: a session is made by pair-verify on
the first request and is gone when a request goes unanswered or the accessory answers 404
(it rebooted). A new zeroconf record with another address or port makes aiohomekit drop the
session and point the next one at the new endpoint.
"""

from __future__ import annotations

import asyncio

from aiocoap.error import Error as CoapError
from aiohomekit.exceptions import HomeKitException

from .base import LinkBase

#: aiocoap's own errors, raw from aiohomekit in a few places (a request just after an address
#: move can raise LibraryShutdown): the session treats them as a lost link.
COAP_ERRORS: tuple[type[BaseException], ...] = (CoapError,)
_ATTEMPT_ERRORS: tuple[type[BaseException], ...] = (
    HomeKitException,
    OSError,
    TimeoutError,
    CoapError,
)


class CoapLink(LinkBase):
    transport = "coap"

    def hold_down_when_lost(self) -> None:
        """aiohomekit makes no session by itself over CoAP: nothing to hold down."""

    async def attempt(self, within: float) -> BaseException | None:
        try:
            # The pair-verify every CoAP request starts with when there is no session.
            await asyncio.wait_for(self._pairing._ensure_connected(), within)
        except _ATTEMPT_ERRORS as err:
            return err
        self.changed.set()
        return None

    async def drop(self) -> None:
        # Ends the session, and reconnects nothing. 4.0.1's reconnect_soon fails on a session
        # that already ended itself (a failed decryption leaves it half torn down).
        if self.connected:
            await self._pairing.connection.reconnect_soon()
        self.changed.set()

    def endpoint(self) -> tuple[list[str], int] | None:
        if not self.connected:
            return None
        host, _, port = str(self._pairing.connection.address).rpartition(":")
        return [host.strip("[]")], int(port)
