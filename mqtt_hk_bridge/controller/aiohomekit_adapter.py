"""The one place the bridge works around aiohomekit (written against 4.0.1).

Everything else in the controller side uses aiohomekit's public API (Controller,
load_pairing, async_find, the pairing's reads, writes, subscriptions and dispatchers).
What aiohomekit 4.0.1 leaves out or does in a way a long-running bridge cannot use is
handled here, each with the reason; `tests/unit/test_library_surface.py` pins every
attribute and method used, so an upgrade that moves one fails there by name.
docs/libraries.md says what to check when aiohomekit changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from aiohomekit import protocol
from aiohomekit.characteristic_cache import CharacteristicCacheMemory
from aiohomekit.controller import Controller
from aiohomekit.controller.abstract import AbstractPairing
from aiohomekit.crypto.srp import HK_KEY_LENGTH, SrpClient
from aiohomekit.exceptions import TransportNotSupportedError
from aiohomekit.zeroconf import (
    HAP_TYPE_TCP,
    HAP_TYPE_UDP,
    ZeroconfServiceListener,
    find_brower_for_hap_type,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

#: The aiohomekit release these workarounds were written and tested against.
TARGETED_VERSION = "4.0.1"


# ---- the Controller ---------------------------------------------------------------------


async def start_controller(
    zeroconf: AsyncZeroconf, char_cache: CharacteristicCacheMemory | None = None
) -> tuple[Controller, list[AsyncServiceBrowser]]:
    """aiohomekit's Controller on the shared zeroconf (and `char_cache`, its cache of
    accessory databases, when given).

    Its Controller refuses a zeroconf nobody browses both HAP types on; browsers are added
    for the types nobody browses yet (returned, to cancel at stop).
    """
    missing = []
    for hap_type in (HAP_TYPE_TCP, HAP_TYPE_UDP):
        try:
            find_brower_for_hap_type(zeroconf, hap_type)
        except TransportNotSupportedError:
            missing.append(hap_type)
    browsers = (
        [AsyncServiceBrowser(zeroconf.zeroconf, missing, listener=ZeroconfServiceListener())]
        if missing
        else []
    )
    controller = Controller(async_zeroconf_instance=zeroconf, char_cache=char_cache)
    await controller.async_start()
    return controller, browsers


async def stop_controller(controller: Controller, browsers: list[AsyncServiceBrowser]) -> None:
    await controller.async_stop()
    for browser in browsers:
        await browser.async_cancel()


def loaded_pairing(controller: Controller, alias: str) -> AbstractPairing | None:
    return controller.aliases.get(alias)


def forget_pairing(controller: Controller, alias: str) -> None:
    """Unload a pairing without telling the accessory (it was removed from our file by the
    CLI, which told the accessory). 4.0.1 only offers remove_pairing, which unpairs."""
    pairing = controller.aliases.pop(alias, None)
    if pairing is not None:
        controller.pairings.pop(str(pairing.id).lower(), None)


def drop_unregistered_pairing(controller: Controller, alias: str) -> None:
    """4.0.1's finish_pairing files its pairing object in a transport's dict of pairings
    under the alias instead of the device id, and never registers it: load_pairing makes the
    real one, this stray must not stay behind."""
    for transport in controller.transports.values():
        stray = transport.pairings.get(alias)
        if stray is not None and str(stray.id).lower() != alias.lower():
            transport.pairings.pop(alias, None)


# ---- one IP pairing's connection ----------------------------------------------------------


class IpConnectionControl:
    """The retry schedule of one pairing's connection, taken from aiohomekit.

    4.0.1 reconnects at once after every loss and does not count connections that fail
    during pair-verify, so an accessory that drops each session as it comes up gets a storm
    of connections. The session supervisor owns the schedule instead: it keeps a lost
    connection down (`hold_down_when_lost`) and starts one attempt at a time (`begin_attempt`).
    """

    def __init__(self, pairing: Any) -> None:
        self._connection = pairing.connection

    def hold_down_when_lost(self) -> None:
        # A connection marked closing is not reconnected by aiohomekit when it drops.
        self._connection.closing = True

    def begin_attempt(self) -> BaseException | None:
        """Start one connection attempt (TCP + pair-verify); returns the error standing before
        it, to tell a new failure (`attempt_error`) from an old one."""
        before: BaseException | None = self._connection.last_connector_error
        # 4.0.1 sets `closed` for good when a transport goes down while closing and never
        # clears it: is_connected would stay False after every later pair-verify.
        self._connection.closed = False
        self._connection.reconnect_soon()
        return before

    def attempt_error(self, before: BaseException | None) -> BaseException | None:
        """The error that ended the attempt started after `before`, if it has ended so."""
        current: BaseException | None = self._connection.last_connector_error
        return current if current is not None and current is not before else None

    async def close(self) -> None:
        """Close the connection and stop aiohomekit's connector (no retry of its own)."""
        await self._connection.close()

    def endpoint(self) -> tuple[list[str], int] | None:
        """The addresses and port the live connection reached, or None when down."""
        if not self._connection.connected_host:
            return None
        return list(self._connection.hosts), int(self._connection.port)


def tap_raw_events(pairing: Any, tap: Callable[[Any], None]) -> None:
    """Call `tap` with each raw EVENT body, after aiohomekit has handled it.

    4.0.1 folds an EVENT frame into one value per (aid, iid), keeping the one listed last;
    HAP-NodeJS lists the newest first, so the caller must see the raw body to notice.
    """
    handle = pairing.event_received

    def event_received(event: Any) -> None:
        handle(event)
        tap(event)

    pairing.event_received = event_received


# ---- pair-setup ---------------------------------------------------------------------------


def srp_padding_differs(client: SrpClient) -> bool:
    """Whether HAP-python 5.0-5.2 computes another proof than aiohomekit 4.0.1 from these
    SRP values even with the right setup code. HAP-python drops leading zero bytes where
    aiohomekit keeps them: in B as it is sent (so the two compute different u), in the
    shared secret S (different session keys) and in the session key K (different proofs).
    Each happens in about 1 pair-setup in 256; when none does, a refused proof at M4 can
    only mean a wrong code."""
    if client.B_b is None:
        return False
    if len(client.B_b) < HK_KEY_LENGTH:
        return True
    if client.get_shared_secret() < 1 << (8 * (HK_KEY_LENGTH - 1)):
        return True
    return client.get_session_key_bytes()[0] == 0


@contextlib.contextmanager
def watch_srp_padding() -> Iterator[Callable[[], bool]]:
    """While inside, aiohomekit's pair-setup records its SRP clients; the function yielded
    says whether any of them met `srp_padding_differs`.

    4.0.1 keeps its SrpClient inside the pair-setup state machine (protocol.py builds it by
    its module-level name), so the name is pointed at a recording subclass for this long.
    """
    made: list[SrpClient] = []

    class RecordingSrpClient(SrpClient):
        def __init__(self, username: str, password: str) -> None:
            super().__init__(username, password)
            made.append(self)

    original = protocol.SrpClient  # type: ignore[attr-defined]
    protocol.SrpClient = RecordingSrpClient  # type: ignore[attr-defined]
    try:
        yield lambda: any(srp_padding_differs(client) for client in made)
    finally:
        protocol.SrpClient = original  # type: ignore[attr-defined]
