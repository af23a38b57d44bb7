"""A HomeKit accessory over CoAP on Thread (HAP PDUs in CoAP over UDP/IPv6, advertised as
`_hap._udp`), through aiohomekit's CoAPPairing.

aiohomekit 4.0.1 keeps no connection of its own here: a session is made by pair-verify on
the first request and is gone when a request goes unanswered or the accessory answers 404
(it rebooted). A new zeroconf record with another address or port makes aiohomekit drop the
session and point the next one at the new endpoint.
"""

from __future__ import annotations

import asyncio
import time

from aiocoap.error import Error as CoapError
from aiohomekit.exceptions import HomeKitException

from .base import LinkBase

#: aiocoap's own errors, raw from aiohomekit in a few places (a request just after an address
#: move can raise LibraryShutdown): the session treats them as a lost link.
COAP_ERRORS: tuple[type[BaseException], ...] = (CoapError,)
#: While aiohomekit ends a session to an old address, how often a new attempt looks again.
MOVE_CHECK = 0.05
_ATTEMPT_ERRORS: tuple[type[BaseException], ...] = (
    HomeKitException,
    OSError,
    TimeoutError,
    CoapError,
)


class CoapLink(LinkBase):
    transport = "coap"

    @property
    def connected(self) -> bool:
        # A session to where the accessory was is over, though aiohomekit ends it only in a
        # task of its own, scheduled from the zeroconf record that announced the move.
        return bool(self._pairing.is_connected) and not self._moved_away()

    def _moved_away(self) -> bool:
        connection = self._pairing.connection
        session = connection.enc_ctx
        return session is not None and session.uri != f"coap://{connection.address}/"

    def hold_down_when_lost(self) -> None:
        """aiohomekit makes no session by itself over CoAP: nothing to hold down."""

    async def attempt(self, within: float) -> BaseException | None:
        deadline = time.monotonic() + within
        # Let aiohomekit end the session to the old address first: while it is ending it,
        # a new session would be torn down with the old one.
        while self._moved_away() and time.monotonic() < deadline:  # noqa: ASYNC110 - no signal
            await asyncio.sleep(MOVE_CHECK)
        try:
            # The pair-verify every CoAP request starts with when there is no session.
            remaining = max(deadline - time.monotonic(), MOVE_CHECK)
            await asyncio.wait_for(self._pairing._ensure_connected(), remaining)
        except _ATTEMPT_ERRORS as err:
            return err
        self.changed.set()
        return None

    async def drop(self) -> None:
        # Ends the session, and reconnects nothing. 4.0.1's reconnect_soon fails on a session
        # that already ended itself (a failed decryption leaves it half torn down), and one
        # to an old address is being ended by aiohomekit already.
        if self.connected:
            await self._pairing.connection.reconnect_soon()
        self.changed.set()

    def endpoint(self) -> tuple[list[str], int] | None:
        if not self.connected:
            return None
        host, _, port = str(self._pairing.connection.address).rpartition(":")
        return [host.strip("[]")], int(port)
