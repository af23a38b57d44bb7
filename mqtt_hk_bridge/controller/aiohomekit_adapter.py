"""Where the bridge works around aiohomekit's Controller (written against 4.0.1); one
pairing's connection is the business of `controller/links/`, the rest of aiohomekit's
adapter.

Everything else in the controller side uses aiohomekit's public API (Controller,
load_pairing, async_find, the pairing's reads, writes, subscriptions and dispatchers).
What aiohomekit 4.0.1 leaves out or does in a way a long-running bridge cannot use is
handled in these modules, each with the reason; `tests/unit/test_library_surface.py` pins
every attribute and method used, so an upgrade that moves one fails there by name.
docs/libraries.md says what to check when aiohomekit changes.
"""

from __future__ import annotations

import os

from aiohomekit.controller import Controller
from aiohomekit.controller.abstract import AbstractPairing
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
    zeroconf: AsyncZeroconf,
) -> tuple[Controller, list[AsyncServiceBrowser]]:
    """aiohomekit's Controller on the shared zeroconf.

    Its Controller refuses a zeroconf nobody browses both HAP types on; browsers are added
    for the types nobody browses yet (returned, to cancel at stop).
    """
    # Each CoAP session of aiohomekit is an aiocoap *server* context (events come to it),
    # which by default also listens for CoAP over TCP on [::]:5683, every interface. A
    # controller needs UDP only; aiocoap reads this at every context it creates.
    os.environ.setdefault("AIOCOAP_SERVER_TRANSPORT", "udp6")
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
    controller = Controller(async_zeroconf_instance=zeroconf)
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
