"""A simulated HomeKit accessory over CoAP, as a Thread device (a Nanoleaf Essentials bulb)
speaks HAP through a border router: for testing aiohomekit's CoAP client and the bridge.

    async with CoapAccessory() as accessory:          # demo: a Lightbulb and a sensor
        ...                                           # aiohomekit finds it over _hap._udp
        accessory.set_value(iid, 23.5)                # a change on the device -> event
        await accessory.reboot()                      # sessions forgotten: pair-verify again
        await accessory.go_silent(); await accessory.resume()
        await accessory.move(port=None)               # new port (or host), re-announced

    CoapAccessory.from_recording(path)                # a recorded GET /accessories database

Everything listens on loopback: CoAP on `host` (default ::1, since aiohomekit writes CoAP
URIs as `[host]:port`), mDNS on 127.0.0.1 through a zeroconf instance of its own unless one
is given. Another loopback IPv6 address without a network namespace: an IPv4-mapped
loopback address such as ::ffff:127.0.0.2. The protocol parts live in tests/peers/coap/.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Self
from uuid import UUID

from pyhap.loader import get_loader
from pyhap.util import hap_type_to_uuid
from zeroconf.asyncio import AsyncZeroconf

from tests.peers.coap.database import AccessoryDatabase, Value, demo_database, load_database
from tests.peers.coap.mdns import HapTxt, HapUdpAnnouncer
from tests.peers.coap.pairing import AccessoryIdentity
from tests.peers.coap.server import AccessoryServer, CoapEndpoint, free_udp_port

_LOGGER = logging.getLogger(__name__)

DEFAULT_SETUP_CODE = "591-38-264"
CATEGORY_LIGHTBULB = 5
_MODEL = hap_type_to_uuid("21")


def _hap_python_formats() -> dict[UUID, str]:
    """HAP formats of the characteristic types HAP-python knows (recordings may say "int")."""
    return {hap_type_to_uuid(d["UUID"]): d["Format"] for d in get_loader().char_types.values()}


_KNOWN_FORMATS = _hap_python_formats()


class CoapAccessory:
    """One HAP-over-CoAP accessory: CoAP endpoint, pairing and sessions, database, mDNS."""

    def __init__(
        self,
        database: AccessoryDatabase | None = None,
        *,
        setup_code: str = DEFAULT_SETUP_CODE,
        name: str | None = None,
        host: str = "::1",
        port: int | None = None,
        category: int = CATEGORY_LIGHTBULB,
        zeroconf: AsyncZeroconf | None = None,
    ) -> None:
        self.database = database or demo_database()
        self.identity = AccessoryIdentity.random()
        self.setup_code = setup_code
        self.name = name or f"CoAP Sim {self.identity.device_id[-5:].replace(':', '')}"
        self.category = category
        self.state_number = 1
        self._host = host
        self._port = port or free_udp_port(host)
        self._server = AccessoryServer(
            self.database,
            self.identity,
            setup_code,
            context=lambda: self._endpoint.context,
            on_pairing_change=self._pairing_changed,
        )
        self._endpoint = CoapEndpoint(host, self._port, self._server.site())
        self._left_behind: list[CoapEndpoint] = []
        self._given_zeroconf = zeroconf
        self._own_zeroconf: AsyncZeroconf | None = None  # made by start() when none is given
        self._announcer: HapUdpAnnouncer | None = None  # while started

    @classmethod
    def from_recording(cls, path: Path, **options: Any) -> CoapAccessory:
        """Serve a recorded `GET /accessories` body (../shared/fixtures/accessory-databases)."""
        database = load_database(path, lambda uuid: _KNOWN_FORMATS.get(uuid, ""))
        return cls(database, **options)

    # --- what a test reads ----------------------------------------------------------------

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def paired(self) -> bool:
        return self._server.store.is_paired

    @property
    def controllers(self) -> list[str]:
        return [pairing.controller_id for pairing in self._server.store.all()]

    @property
    def failed_setup_attempts(self) -> int:
        return self._server.pair_setup.failed_attempts

    @property
    def identify_count(self) -> int:
        return self._server.identify_count

    @property
    def sessions_established(self) -> int:
        """Pair-verifies completed since start."""
        return self._server.sessions_established

    @property
    def session_count(self) -> int:
        """Sessions open now."""
        return self._server.session_count

    @property
    def refusals(self) -> list[str]:
        """Why each refused sealed request was refused ("no session", "authentication failed")."""
        return list(self._server.refusals)

    @property
    def writes(self) -> list[tuple[int, int, Value]]:
        """(aid, iid, value) of every accepted controller write, in order."""
        return list(self._server.processor.writes)

    @property
    def events_sent(self) -> int:
        """Event PUTs the controllers acknowledged."""
        return self._server.events_sent

    @property
    def dropped_while_silent(self) -> int:
        return self._endpoint.dropped + sum(e.dropped for e in self._left_behind)

    def txt(self) -> HapTxt:
        model = next((c.value for c in self.database if c.type == _MODEL), "CoAP-Sim")
        return HapTxt(
            device_id=self.device_id,
            model=str(model),
            config_number=self.database.config_number,
            state_number=self.state_number,
            paired=self.paired,
            category=self.category,
        )

    # --- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        zeroconf = self._given_zeroconf
        if zeroconf is None:
            zeroconf = self._own_zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"])
        await self._endpoint.serve()
        announcer = HapUdpAnnouncer(zeroconf, self.name)
        await announcer.register(self._host, self._port, self.txt())
        self._announcer = announcer
        _LOGGER.info("CoAP accessory %s on [%s]:%d", self.device_id, self._host, self._port)

    async def stop(self) -> None:
        announcer, self._announcer = self._announcer, None
        if announcer is not None:
            await announcer.close()
        await self._server.close()
        for endpoint in [self._endpoint, *self._left_behind]:
            await endpoint.close()
        if self._own_zeroconf is not None:
            await self._own_zeroconf.async_close()
            self._own_zeroconf = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- what happens to the accessory ----------------------------------------------------

    def set_value(self, iid: int, value: Value) -> bool:
        """A change on the device itself; subscribed controllers get an event. False when
        the value was already that."""
        return self.database.set_value(iid, value)

    async def reboot(self) -> None:
        """Power-cycle on the same address: pairings stay, every session and subscription
        is gone, so a controller's next sealed request is refused (4.04)."""
        self._server.forget_sessions()
        await self._endpoint.close()
        await self._endpoint.serve()

    async def go_silent(self) -> None:
        """Drop every datagram from now on, answering nothing (sessions are kept)."""
        await self._endpoint.silence()

    async def resume(self) -> None:
        await self._endpoint.serve()

    async def move(self, *, host: str | None = None, port: int | None = None) -> None:
        """Listen somewhere else (a new port by default) and announce it; sessions are kept.

        The old address goes silent, as a Thread address does when the border router hands
        out another one: requests to it get no answer at all.
        """
        host = host or self._host
        port = port or free_udp_port(host)
        old = self._endpoint
        self._endpoint = CoapEndpoint(host, port, self._server.site())
        await self._endpoint.serve()
        await old.silence()
        self._left_behind.append(old)
        self._host, self._port = host, port
        await self._running_announcer().update(host, port, self.txt())
        _LOGGER.info("CoAP accessory %s moved to [%s]:%d", self.device_id, host, port)

    async def bump_config(self) -> None:
        """The database changed (firmware update): c# goes up and is re-announced."""
        self.database.config_number += 1
        await self._running_announcer().update(self._host, self._port, self.txt())

    def _running_announcer(self) -> HapUdpAnnouncer:
        if self._announcer is None:
            raise RuntimeError("the accessory is not started")
        return self._announcer

    def _pairing_changed(self) -> None:
        # sf follows the pairing state (this runs inside a CoAP request: not awaited).
        if self._announcer is not None:
            self._announcer.update_soon(self._host, self._port, self.txt())
