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

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator

import aiohomekit.controller.controller as controller_module
from aiohomekit import protocol
from aiohomekit.characteristic_cache import CharacteristicCacheType
from aiohomekit.controller import Controller
from aiohomekit.controller.abstract import AbstractDiscovery, AbstractPairing, TransportType
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
#: While pairing, how often the discoveries are looked at for the accessory.
DISCOVERY_CHECK = 0.1


# ---- the Controller ---------------------------------------------------------------------


async def start_controller(
    zeroconf: AsyncZeroconf,
    char_cache: CharacteristicCacheType | None = None,
    *,
    bluetooth: bool = False,
) -> tuple[Controller, list[AsyncServiceBrowser]]:
    """aiohomekit's Controller on the shared zeroconf (and `char_cache`, its cache of
    accessory databases, when given), with its Bluetooth transport when `bluetooth`.

    Its Controller refuses a zeroconf nobody browses both HAP types on; browsers are added
    for the types nobody browses yet (returned, to cancel at stop).
    """
    # 4.0.1 decides on Bluetooth once, at its first import (an environment variable, or
    # bleak already imported), and reads the result from this module name at every start;
    # it imports the transport, bleak and dbus-fast only when that says so.
    controller_module.BLE_TRANSPORT_SUPPORTED = bluetooth  # type: ignore[attr-defined]
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
    controller = Controller(async_zeroconf_instance=zeroconf, char_cache=char_cache)
    await controller.async_start()
    return controller, browsers


def bluetooth_available(controller: Controller) -> bool:
    """Whether aiohomekit's Bluetooth transport is scanning. 4.0.1 logs a missing adapter
    (or BlueZ) only at DEBUG and goes on without a scanner."""
    transport = controller.transports.get(TransportType.BLE)
    return transport is not None and getattr(transport, "_scanner", None) is not None


async def find_accessory(
    controller: Controller, device_id: str, within: float
) -> AbstractDiscovery:
    """The discovered accessory with this id, waiting up to `within` s for it to show up.

    4.0.1's Bluetooth transport answers async_find only for accessories it has already
    seen, without waiting for the next advertisement; the IP and CoAP ones wait themselves.
    """
    wanted = device_id.lower()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    # No event announces a discovery: looked at while a pairing waits for one, only.
    while loop.time() < deadline and not any(  # noqa: ASYNC110
        wanted in transport.discoveries for transport in controller.transports.values()
    ):
        await asyncio.sleep(DISCOVERY_CHECK)
    return await controller.async_find(wanted, timeout=max(deadline - loop.time(), 0.1))


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
