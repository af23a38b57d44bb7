"""A real HAP controller (aiohomekit 4) for tests, paired over loopback without mDNS.

`HapClient.pair(host, port, device_id, pin)` runs pair-setup straight against host:port, so
no multicast is needed; `loopback_controller()` + `HapClient.discover_and_pair()` is the
mDNS path (zeroconf bound to 127.0.0.1) for tests that exercise discovery itself.

Reads and writes go to `/characteristics` directly instead of through aiohomekit's
`get_characteristics`/`put_characteristics`: those look every id up in the cached accessory
database first (an unknown aid/iid raises before anything is sent) and feed the written
values back to listeners as if they were events. Only real EVENT frames reach `events`.
"""

# aiohomekit's methods are mostly unannotated; calling them is fine in this harness.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import Any, NamedTuple, Self, cast

from aiohomekit import hkjson
from aiohomekit.characteristic_cache import CharacteristicCacheMemory
from aiohomekit.controller import Controller
from aiohomekit.controller.abstract import AbstractPairingData
from aiohomekit.controller.ip.controller import IpController
from aiohomekit.controller.ip.discovery import IpDiscovery
from aiohomekit.controller.ip.pairing import IpPairing
from aiohomekit.exceptions import AuthenticationError, HttpErrorResponse
from aiohomekit.model import Categories
from aiohomekit.model.feature_flags import FeatureFlags
from aiohomekit.model.status_flags import StatusFlags
from aiohomekit.uuid import normalize_uuid
from aiohomekit.zeroconf import (
    HAP_TYPE_TCP,
    HAP_TYPE_UDP,
    HomeKitService,
    ZeroconfServiceListener,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

from tests.support.wait import wait_for

_LOGGER = logging.getLogger(__name__)

CharId = tuple[int, int]
PairingData = dict[str, Any]

_ANY = object()


class HapEvent(NamedTuple):
    aid: int
    iid: int
    value: Any
    at: float  # time.monotonic() when the frame arrived


class _TappedPairing(IpPairing):
    """IpPairing that hands each raw EVENT body to the client before aiohomekit mutates it."""

    def __init__(self, controller: IpController, data: PairingData, client: HapClient) -> None:
        self._client = client
        super().__init__(controller, cast(AbstractPairingData, dict(data)))

    def event_received(self, event: dict[str, Any]) -> None:
        self._client._record_event(event)
        super().event_received(event)


def _ip_controller() -> IpController:
    # IpPairing only needs a controller for its characteristic cache and pairing registry;
    # it is never started, so it never touches zeroconf.
    return IpController(
        char_cache=CharacteristicCacheMemory(),
        zeroconf_instance=cast(AsyncZeroconf, None),
    )


class HapClient:
    """One paired controller session: list/get/put/subscribe and an event log."""

    def __init__(self, data: PairingData, request_timeout: float = 10.0) -> None:
        self._controller = _ip_controller()
        self._pairing = _TappedPairing(self._controller, data, self)
        self.request_timeout = request_timeout
        self.events: list[HapEvent] = []
        self.last_http_status: int | None = None

    # --- construction -------------------------------------------------------------------

    @classmethod
    async def pair(
        cls,
        host: str,
        port: int,
        device_id: str,
        pin: str,
        *,
        alias: str | None = None,
        attempts: int = 3,
    ) -> HapClient:
        """Pair-setup against host:port (no discovery) and return a connected client.

        `attempts`: a rejected M3 proof is retried with fresh SRP values (see
        _run_pair_setup); pass 1 when a wrong PIN is the point of the test, because each
        retry is one more failed attempt on the accessory's counter.
        """
        description = HomeKitService(
            name=alias or f"test-{device_id}",
            id=device_id.lower(),
            model="",
            feature_flags=FeatureFlags(0),  # no Apple auth coprocessor: plain SRP setup
            status_flags=StatusFlags.UNPAIRED,
            config_num=1,
            state_num=1,
            category=Categories.OTHER,
            protocol_version="1.1",
            type=HAP_TYPE_TCP,
            address=host,
            addresses=[host],
            port=port,
        )
        data = await _run_pair_setup(_ip_controller(), description, pin, alias, attempts)
        return await cls._connected(data, device_id)

    @classmethod
    async def discover_and_pair(
        cls,
        controller: Controller,
        device_id: str,
        pin: str,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
    ) -> HapClient:
        """Find device_id through `controller`'s zeroconf, then pair with it."""
        discovery = await controller.async_find(device_id, timeout=timeout)
        if not isinstance(discovery, IpDiscovery):
            raise AssertionError(f"{device_id} was not found as an IP accessory: {discovery!r}")
        data = await _run_pair_setup(
            discovery.controller, discovery.description, pin, None, attempts
        )
        return await cls._connected(data, device_id)

    @classmethod
    def from_pairing_data(
        cls, data: PairingData, *, host: str | None = None, port: int | None = None
    ) -> HapClient:
        """A client for saved pairing data, optionally at a new address; connects lazily."""
        data = dict(data)
        if host is not None:
            data["AccessoryIP"] = host
            data["AccessoryIPs"] = [host]
        if port is not None:
            data["AccessoryPort"] = port
        return cls(data)

    @classmethod
    async def _connected(cls, data: PairingData, device_id: str) -> HapClient:
        if data["AccessoryPairingID"].lower() != device_id.lower():
            raise AssertionError(
                f"paired with {data['AccessoryPairingID']}, expected device id {device_id}"
            )
        client = cls(data)
        await client.connect()
        return client

    # --- session ------------------------------------------------------------------------

    @property
    def pairing(self) -> IpPairing:
        """The aiohomekit pairing, for what this harness does not wrap."""
        return self._pairing

    @property
    def pairing_data(self) -> PairingData:
        """A copy of the keys and address, enough for from_pairing_data()."""
        return dict(self._pairing.pairing_data)

    @property
    def device_id(self) -> str:
        return str(self._pairing.pairing_data["AccessoryPairingID"])

    @property
    def is_connected(self) -> bool:
        return bool(self._pairing.is_connected)

    async def connect(self, timeout: float | None = None) -> None:
        """Open the TCP connection and run pair-verify (once; aiohomekit reconnects itself)."""
        connection = self._pairing.connection
        try:
            async with asyncio.timeout(timeout or self.request_timeout):
                await connection.ensure_connection()
        except TimeoutError:
            raise ConnectionError(
                f"no verified session with {connection.hosts}:{connection.port}: "
                f"{connection.last_connector_error!r}"
            ) from None

    async def close(self) -> None:
        # close() (not shutdown()) so from_pairing_data on the same data still works.
        await self._pairing.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- requests -----------------------------------------------------------------------

    async def list_accessories(self) -> list[dict[str, Any]]:
        """GET /accessories; service and characteristic types come back as full UUIDs."""
        await self.connect()
        async with asyncio.timeout(self.request_timeout):
            return await self._pairing.list_accessories_and_characteristics()

    async def get(self, ids: Iterable[CharId]) -> dict[CharId, dict[str, Any]]:
        """GET /characteristics: per id {"value": v} or {"status": code}."""
        ids = list(ids)
        query = ",".join(f"{aid}.{iid}" for aid, iid in ids)
        body = await self._request("GET", f"/characteristics?id={query}")
        return _per_characteristic(body, ids)

    async def read(self, aid: int, iid: int) -> Any:
        """The value of one characteristic; AssertionError if the accessory reports a status."""
        result = (await self.get([(aid, iid)]))[(aid, iid)]
        if "value" not in result:
            raise AssertionError(f"read {aid}.{iid} failed: {result}")
        return result["value"]

    async def put(self, writes: Iterable[tuple[int, int, Any]]) -> dict[CharId, int]:
        """PUT /characteristics; per id the HAP status (0 = success, e.g. -70404 read-only).

        `last_http_status` keeps the HTTP code (204 all good, 207 multi-status).
        """
        writes = list(writes)
        payload = {"characteristics": [{"aid": a, "iid": i, "value": v} for a, i, v in writes]}
        body = await self._request("PUT", "/characteristics", payload)
        ids = [(aid, iid) for aid, iid, _ in writes]
        return {
            key: int(res.get("status", 0)) for key, res in _per_characteristic(body, ids).items()
        }

    async def subscribe(self, ids: Iterable[CharId]) -> dict[CharId, int]:
        """Ask for events; per id the HAP status. aiohomekit re-subscribes after reconnects."""
        ids = list(ids)
        await self.connect()
        async with asyncio.timeout(self.request_timeout):
            # aiohomekit sends one PUT per run of equal aids, so sort to group them.
            status = await self._pairing.subscribe(sorted(ids)) or {}
        return {key: int(status.get(key, {}).get("status", 0)) for key in ids}

    async def unsubscribe(self, ids: Iterable[CharId]) -> None:
        async with asyncio.timeout(self.request_timeout):
            await self._pairing.unsubscribe(list(ids))

    async def list_pairings(self) -> list[dict[str, Any]]:
        await self.connect()
        async with asyncio.timeout(self.request_timeout):
            return cast(list[dict[str, Any]], await self._pairing.list_pairings())

    async def unpair(self) -> None:
        """Remove this controller's own pairing from the accessory, then close."""
        await self.connect()
        async with asyncio.timeout(self.request_timeout):
            await self._pairing.remove_pairing(self._pairing.pairing_data["iOSPairingId"])
        await self.close()

    async def _request(self, method: str, target: str, payload: Any = None) -> dict[str, Any]:
        await self.connect()
        connection = self._pairing.connection
        async with asyncio.timeout(self.request_timeout):
            try:
                if method == "GET":
                    response = await connection.get(target)
                else:
                    body = json.dumps(payload, separators=(",", ":")).encode()
                    response = await connection.put(target, body)
            except HttpErrorResponse as err:  # 4xx still carries a HAP status body
                response = err.response
        self.last_http_status = response.code
        return hkjson.loads(response.body) if response.body else {}

    # --- events -------------------------------------------------------------------------

    def _record_event(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        for char in event.get("characteristics", []):
            if isinstance(char, dict) and "aid" in char and "iid" in char:
                self.events.append(HapEvent(char["aid"], char["iid"], char.get("value"), now))

    def events_for(self, aid: int, iid: int, since: float = 0.0) -> list[HapEvent]:
        return [e for e in self.events if e.aid == aid and e.iid == iid and e.at >= since]

    async def wait_event(
        self,
        aid: int,
        iid: int,
        value: Any = _ANY,
        timeout: float = 10.0,
        since: float = 0.0,
    ) -> HapEvent:
        """First event for aid.iid (with `value`, if given) at or after `since`, already
        received or arriving within `timeout`."""

        def first() -> HapEvent | None:
            for event in self.events_for(aid, iid, since):
                if value is _ANY or event.value == value:
                    return event
            return None

        wanted = "" if value is _ANY else f" = {value!r}"
        found = await wait_for(first, timeout=timeout, message=f"HAP event {aid}.{iid}{wanted}")
        assert found is not None
        return found


async def _run_pair_setup(
    controller: Any, description: HomeKitService, pin: str, alias: str | None, attempts: int
) -> PairingData:
    """Pair-setup M1..M6; retry an M4 authentication error with a new SRP session.

    aiohomekit 4.0.1 and HAP-python 5.0-5.2 serialise three SRP values differently when
    they have a leading zero byte (B in u, S in K, K in M), so about 1 pairing in 85
    fails at M4 even with the right PIN. Fresh salt and keys make a retry succeed.
    """
    alias = alias or f"test-{uuid.uuid4().hex[:8]}"
    for attempt in range(1, max(attempts, 1) + 1):
        discovery = IpDiscovery(controller, description)
        try:
            finish = await discovery.async_start_pairing(alias)
            pairing = cast(IpPairing, await finish(pin))
            break
        except AuthenticationError:
            if attempt == attempts:
                raise
            _LOGGER.warning("pair-setup rejected at M4 (attempt %d); retrying", attempt)
        finally:
            await discovery.close()  # the unencrypted setup connection
    # finish_pairing registers an IpPairing we do not use; the client builds its own.
    controller.pairings.pop(alias, None)
    return dict(pairing.pairing_data)


def _per_characteristic(
    body: dict[str, Any], ids: Iterable[CharId]
) -> dict[CharId, dict[str, Any]]:
    """Map a /characteristics reply to {(aid, iid): {...}}; a whole-request status (e.g. a
    500 with {"status": -70402}) is copied to every requested id."""
    ids = list(ids)
    result: dict[CharId, dict[str, Any]] = {}
    if "status" in body and "characteristics" not in body:
        result = {key: {"status": body["status"]} for key in ids}
    for char in body.get("characteristics", []):
        key = (char.get("aid"), char.get("iid"))
        result[key] = {k: v for k, v in char.items() if k not in ("aid", "iid")}
    for key in ids:
        result.setdefault(key, {})  # 204: success with no body
    return result


def find_iid(
    accessories: list[dict[str, Any]],
    aid: int,
    characteristic_type: str,
    service_type: str | None = None,
) -> int:
    """iid of the first characteristic of that type (short "25" or full UUID) on accessory
    aid, optionally within a service type."""
    char_type = normalize_uuid(characteristic_type)
    svc_type = normalize_uuid(service_type) if service_type else None
    for accessory in accessories:
        if accessory["aid"] != aid:
            continue
        for service in accessory["services"]:
            if svc_type and normalize_uuid(service["type"]) != svc_type:
                continue
            for char in service["characteristics"]:
                if normalize_uuid(char["type"]) == char_type:
                    return int(char["iid"])
    raise AssertionError(f"no characteristic {characteristic_type} on aid {aid}")


class LoopbackZeroconf(AsyncZeroconf):
    """AsyncZeroconf on 127.0.0.1 only, which finishes its re-announcements on close.

    zeroconf's async_update_service returns a broadcast task that HAP-python never awaits
    (it runs after each pairing change); closing the instance while it sleeps leaves a
    "Task was destroyed but it is pending" at loop teardown.
    """

    def __init__(self) -> None:
        super().__init__(interfaces=["127.0.0.1"])
        self._broadcasts: set[asyncio.Future[Any]] = set()

    async def async_update_service(self, info: Any) -> Awaitable[Any]:
        broadcast = asyncio.ensure_future(await super().async_update_service(info))
        self._broadcasts.add(broadcast)
        broadcast.add_done_callback(self._broadcasts.discard)
        return broadcast

    async def async_close(self) -> None:
        for broadcast in list(self._broadcasts):
            broadcast.cancel()
        await asyncio.gather(*self._broadcasts, return_exceptions=True)
        await super().async_close()


@contextlib.asynccontextmanager
async def loopback_controller() -> AsyncIterator[Controller]:
    """A started aiohomekit Controller whose mDNS stays on 127.0.0.1.

    Controller (via its IP and CoAP backends) looks for already-running browsers for both
    _hap._tcp and _hap._udp on the zeroconf instance and fails without them.
    """
    azc = LoopbackZeroconf()
    browser = AsyncServiceBrowser(
        azc.zeroconf, [HAP_TYPE_TCP, HAP_TYPE_UDP], listener=ZeroconfServiceListener()
    )
    controller = Controller(async_zeroconf_instance=azc)
    try:
        async with controller:
            yield controller
    finally:
        await browser.async_cancel()
        await azc.async_close()
