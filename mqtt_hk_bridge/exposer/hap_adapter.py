"""The one place the bridge reaches into HAP-python (5.2): its driver, server, connection
protocol and request handler, subclassed. Everything else in the package uses HAP-python's
public API only; `tests/unit/test_library_surface.py` pins what is used here, so an upgrade
that moves it fails there by name. docs/libraries.md says why each piece exists.

What the driver changes:
- State file: written through our atomic 0600 store (`JsonStore`, with .bak), not in place;
  a pairing that cannot be saved is refused instead of living only in memory.
- Writes: unknown, read-only or unavailable characteristics and invalid values get their HAP
  status (-70409, -70404, -70402, -70410) before HAP-python sees them (5.2 skips an unknown
  one silently and clamps out-of-range values).
- Removing a pairing closes that controller's open sessions (HAP-python keeps them).
- mDNS: advertised on the zeroconf the whole process shares. HAP-python's own advertiser
  closes the zeroconf it was given when the driver stops, so it is switched off
  (`advertise=False`) and the same records are registered here.
- The announced address: HAP-python asks the routing table for one whenever it is given no
  `address` (see `announced_address`), which raises on a host without a default route.
- Listening: a port in use or an address not on this host is a BridgeError naming the key,
  not an OSError from inside asyncio.

What the handler adds on top of HAP-python's pair-setup (policy in `pair_setup`): our
persisted 100-try cap (MaxTries), one pair-setup at a time (Busy), at most 16 pairings and no
silent key change of a known controller. HAP-python 5.2 itself refuses an SRP key A = 0 mod N
and locks pair-setup for 60 s after 5 wrong proofs; both are kept and counted by us too.

What the server adds (policy in `connection_limits`): connections that have not verified a
pairing are capped, the oldest making room, and closed after 30 s (HAP-python keeps any
connection 90 hours).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from pyhap import tlv, util
from pyhap.accessory import Accessory, Bridge
from pyhap.accessory_driver import AccessoryDriver, AccessoryMDNSServiceInfo
from pyhap.characteristic import Characteristic
from pyhap.const import (
    HAP_REPR_AID,
    HAP_REPR_CHARS,
    HAP_REPR_IID,
    HAP_REPR_STATUS,
    HAP_REPR_VALUE,
    HAP_SERVER_STATUS,
)
from pyhap.hap_handler import HAP_TLV_STATES, HAP_TLV_TAGS, HAPServerHandler
from pyhap.hap_protocol import HAPServerProtocol
from pyhap.hap_server import HAPServer
from pyhap.loader import get_loader
from zeroconf.asyncio import AsyncZeroconf

from ..errors import BridgeError, PayloadError
from ..homekit.catalog import Catalog
from ..interfaces import first_lan_address
from ..mqtt.payloads import coerce
from ..preflight import describe_listen_error
from ..store import JsonStore
from .connection_limits import MAX_UNVERIFIED_PER_SOURCE, UnverifiedConnections
from .pair_setup import (
    ATTEMPTS_FILE,
    ERROR_MAX_PEERS,
    ERROR_UNKNOWN,
    MAX_PAIRINGS,
    FailedAttempts,
    PairSetupGuard,
)

_LOGGER = logging.getLogger(__name__)

#: How often unverified HAP connections are checked against their timeout.
SWEEP_INTERVAL = 5.0
#: The connection-limit warning is logged at most this often.
LIMIT_LOG_INTERVAL = 60.0
#: HAP pairing permissions (kTLVType_Permissions): what the log says instead of raw bytes.
_PERMISSIONS = {b"\x00": "user", b"\x01": "admin"}
#: What mDNS announces when this host has no other address: only this machine reaches it.
_LOOPBACK = "127.0.0.1"


def announced_address(advertised_address: str | None) -> tuple[str, str | None]:
    """The address HAP-python is given (mDNS announces it), and a notice when it was guessed.

    HAP-python 5.2 calls `util.get_local_address()` (a UDP connect towards 8.8.8.8) whenever
    its driver gets no `address`, even with `advertised_address` set; on a host without a
    default route that raises OSError inside the driver's constructor. So an address is
    always given: the advertised one, the one HAP-python would pick, else a LAN address,
    else loopback with a notice naming the key to set.
    """
    if advertised_address:
        return advertised_address, None
    try:
        return util.get_local_address(), None
    except OSError:
        pass
    lan = first_lan_address()
    if lan is not None:
        return lan, (
            f"This host has no default route: HomeKit is announced on {lan}; set "
            "homekit.advertised_address if the Home app reaches the bridge elsewhere"
        )
    return _LOOPBACK, (
        f"This host has no network but loopback: HomeKit is announced on {_LOOPBACK}, which "
        "only this machine reaches; set homekit.advertised_address to the address the "
        "Home app should use"
    )


class _QuietPairingRecord(logging.Filter):
    """HAP-python logs each pairing with its permissions as raw bytes (`b'\\x01'`); our
    own line (`BridgeDriver.pair`) says admin or user, so that record is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Paired with %s with permissions")


_QUIET_PAIRING_RECORD = _QuietPairingRecord()


class BridgeDriver(AccessoryDriver):
    """AccessoryDriver with our state file, HAP write validation and shared-zeroconf mDNS."""

    http_server: GuardedServer

    def __init__(
        self,
        *,
        state_path: Path,
        catalog: Catalog,
        zeroconf: AsyncZeroconf,
        **kwargs: Any,
    ) -> None:
        self._state_store = JsonStore(state_path)
        self._catalog = catalog
        self._zeroconf = zeroconf
        #: Called after a controller pairs or is removed (bridge/info says "paired").
        self.pairing_changed: Callable[[], None] = lambda: None
        if kwargs.get("address") is None:
            kwargs["address"], notice = announced_address(kwargs.get("advertised_address"))
            if notice is not None:
                _LOGGER.warning("%s", notice)
        # HAP-python's shared tables of services and characteristics (the catalog reads
        # them too), not a copy per bridge.
        kwargs.setdefault("loader", get_loader())
        super().__init__(persist_file=str(state_path), advertise=False, **kwargs)
        self.pair_setup_guard = PairSetupGuard(FailedAttempts(state_path.parent / ATTEMPTS_FILE))
        # HAP-python's own server is not started yet: ours replaces it, on the same address.
        self.http_server = GuardedServer(
            (self.listen_address(), self.state.port), self, self.pair_setup_guard
        )

    # -- life cycle and mDNS ------------------------------------------------------------

    async def async_start(self) -> None:
        await super().async_start()
        self.mdns_service_info = self._service_info()
        await self._zeroconf.async_register_service(
            self.mdns_service_info, cooperating_responders=True
        )

    async def async_stop(self) -> None:
        if self.mdns_service_info is not None:
            await self._zeroconf.async_unregister_service(self.mdns_service_info)
            self.mdns_service_info = None
        await super().async_stop()

    @util.callback
    def async_update_advertisement(self) -> None:
        """A new c# or pairing state: HAP-python calls this; it advertises nothing itself."""
        if self.mdns_service_info is None:
            return  # not started yet, or stopped
        self.mdns_service_info = self._service_info()
        util.async_create_background_task(
            self._zeroconf.async_update_service(self.mdns_service_info)
        )

    def _service_info(self) -> AccessoryMDNSServiceInfo:
        return AccessoryMDNSServiceInfo(self.accessory, self.state, self.zeroconf_server)

    # -- state file ---------------------------------------------------------------------

    def add_accessory(self, accessory: Accessory) -> None:
        # HAP-python loads only when `persist_file` itself exists, and would replace a state
        # that only our .bak still holds with fresh keys; loaded first, it writes that back.
        if not Path(self.persist_file).exists():
            self.load()
        super().add_accessory(accessory)

    def load(self) -> None:
        data = self._state_store.load()
        if data is not None:
            self.encoder.load_into(io.StringIO(json.dumps(data)), self.state)

    def persist(self) -> None:
        buffer = io.StringIO()
        self.encoder.persist(buffer, self.state)
        self._state_store.save(json.loads(buffer.getvalue()))

    def async_persist(self) -> None:
        # At once, not in an executor: the file is small, two executor writes could race on
        # the temp file, and `pair` must know whether the pairing was saved.
        self.persist()

    # -- pairings -----------------------------------------------------------------------

    def pair(
        self, client_username_bytes: bytes, client_public: bytes, client_permissions: bytes
    ) -> bool:
        try:
            super().pair(client_username_bytes, client_public, client_permissions)
        except OSError as err:
            # A pairing only in memory would be lost on restart: refuse it now instead.
            _LOGGER.error("Pairing refused: cannot save the pairing (%s)", err)
            self.state.remove_paired_client(uuid.UUID(client_username_bytes.decode("utf-8")))
            return False
        _LOGGER.info(
            "Paired with controller %s (%s)",
            bytes(client_username_bytes).decode("utf-8", "replace"),
            _PERMISSIONS.get(bytes(client_permissions), "unknown permissions"),
        )
        self.pairing_changed()
        return True

    def unpair(self, client_uuid: uuid.UUID) -> None:
        before = set(self.state.paired_clients)
        # Removing the last admin removes every pairing (HAP-python's State does that).
        super().unpair(client_uuid)
        self._close_sessions(before - set(self.state.paired_clients))
        _LOGGER.info("Removed a controller's pairing; %d left", len(self.state.paired_clients))
        self.pairing_changed()

    def _close_sessions(self, removed: set[uuid.UUID]) -> None:
        """Close the verified sessions of removed controllers (HAP-python keeps them open)."""
        for connection in list(self.http_server.connections.values()):
            handler = connection.handler
            if handler is not None and handler.client_uuid in removed:
                # After this request's response is written: it may be the removed one's own.
                self.loop.call_soon(connection.close)
                _LOGGER.info("Closing the session of a removed controller")

    # -- accessory database -------------------------------------------------------------

    def refresh_config(self) -> bool:
        """Bump the configuration number if, and only if, the accessory database changed."""
        if not self.state.set_accessories_hash(self.accessories_hash):
            return False
        self.persist()
        self.async_update_advertisement()
        _LOGGER.info(
            "Accessory database changed; configuration number %s", self.state.config_version
        )
        return True

    # -- writes from the Home app -------------------------------------------------------

    def _accessory(self, aid: int) -> Accessory | None:
        bridge = self.accessory
        if bridge is None or aid == bridge.aid:
            return bridge
        return bridge.accessories.get(aid) if isinstance(bridge, Bridge) else None

    def _write_status(self, aid: int, iid: int, value: Any) -> int | None:
        """The HAP status refusing this write, or None to let HAP-python carry it out."""
        accessory = self._accessory(aid)
        char = accessory.get_characteristic(aid, iid) if accessory is not None else None
        if accessory is None or not isinstance(char, Characteristic):
            return int(HAP_SERVER_STATUS.RESOURCE_DOES_NOT_EXIST)
        if "pw" not in char.properties["Permissions"]:
            return int(HAP_SERVER_STATUS.READ_ONLY_CHARACTERISTIC)
        if not accessory.available:
            return int(HAP_SERVER_STATUS.SERVICE_COMMUNICATION_FAILURE)
        info = self._catalog.characteristics.get(char.display_name or "")
        if info is not None:
            try:
                coerce(value, info)
            except PayloadError:
                return int(HAP_SERVER_STATUS.INVALID_VALUE_IN_REQUEST)
        return None

    def set_characteristics(
        self, chars_query: dict[str, Any], client_addr: tuple[str, int]
    ) -> dict[str, Any] | None:
        refused: list[dict[str, Any]] = []
        passed: list[dict[str, Any]] = []
        for query in chars_query[HAP_REPR_CHARS]:
            status = None
            if HAP_REPR_VALUE in query:
                status = self._write_status(
                    query[HAP_REPR_AID], query[HAP_REPR_IID], query[HAP_REPR_VALUE]
                )
            if status is None:
                passed.append(query)
            else:
                refused.append(
                    {
                        HAP_REPR_AID: query[HAP_REPR_AID],
                        HAP_REPR_IID: query[HAP_REPR_IID],
                        HAP_REPR_STATUS: status,
                    }
                )
        result = (
            super().set_characteristics({**chars_query, HAP_REPR_CHARS: passed}, client_addr)
            if passed
            else None
        )
        if not refused:
            return result
        done = (
            result[HAP_REPR_CHARS]
            if result
            else [
                {HAP_REPR_AID: q[HAP_REPR_AID], HAP_REPR_IID: q[HAP_REPR_IID], HAP_REPR_STATUS: 0}
                for q in passed
                if HAP_REPR_VALUE in q
            ]
        )
        return {HAP_REPR_CHARS: refused + done}


class GuardedHandler(HAPServerHandler):
    """HAP-python's handler with the pair-setup guard and the pairing-management limits."""

    def __init__(
        self,
        driver: AccessoryDriver,
        client_address: tuple[str, int] | str,
        guard: PairSetupGuard,
    ) -> None:
        super().__init__(driver, client_address)
        self._guard = guard

    def _send_pairing_error(self, state: bytes, error: bytes) -> None:
        self._send_tlv_pairing_response(
            tlv.encode(HAP_TLV_TAGS.SEQUENCE_NUM, state, HAP_TLV_TAGS.ERROR_CODE, error)
        )

    def _pairing_one(self) -> None:
        refusal = self._guard.begin(self.client_address)
        if refusal is not None:
            self._send_pairing_error(HAP_TLV_STATES.M2, refusal)
            return
        super()._pairing_one()

    def _pairing_two(self, tlv_objects: dict[bytes, bytes]) -> None:
        """M3 -> M4, only on this connection's session; every refused proof is counted."""
        if not self._guard.owns(self.client_address):
            # Not this connection's session (never started, over, or someone else's).
            self._send_pairing_error(HAP_TLV_STATES.M4, ERROR_UNKNOWN)
            return
        super()._pairing_two(tlv_objects)
        assert self.response is not None  # set for every request by `dispatch`
        answer = tlv.decode(self.response.body)
        # A proof is accepted when M4 carries the accessory's own proof. Anything else (a
        # wrong code, or an SRP key HAP-python refuses) counts as a wrong setup code.
        if HAP_TLV_TAGS.PASSWORD_PROOF in answer and HAP_TLV_TAGS.ERROR_CODE not in answer:
            self._guard.proof_accepted(self.client_address)
        else:
            self._guard.proof_failed(self.client_address)

    def _pairing_three(self, tlv_objects: dict[bytes, bytes]) -> None:
        """M5 -> M6, only after this connection proved the code; the session ends here."""
        if not self._guard.owns(self.client_address, proven=True):
            self._send_pairing_error(HAP_TLV_STATES.M6, ERROR_UNKNOWN)
            return
        try:
            super()._pairing_three(tlv_objects)
        finally:
            self._guard.end(self.client_address)

    def _handle_add_pairing(self, tlv_objects: dict[bytes, bytes]) -> None:
        try:
            client_uuid = uuid.UUID(bytes(tlv_objects[HAP_TLV_TAGS.USERNAME]).decode("utf-8"))
            client_public = bytes(tlv_objects[HAP_TLV_TAGS.PUBLIC_KEY])
        except (KeyError, ValueError):
            self._send_pairing_error(HAP_TLV_STATES.M2, ERROR_UNKNOWN)
            return
        known = self.state.paired_clients.get(client_uuid)
        if known is None and len(self.state.paired_clients) >= MAX_PAIRINGS:
            _LOGGER.warning("Add pairing refused: already %d pairings", MAX_PAIRINGS)
            self._send_pairing_error(HAP_TLV_STATES.M2, ERROR_MAX_PEERS)
            return
        if known is not None and bytes(known) != client_public:
            # Only the permissions of a known controller may change, never its key.
            _LOGGER.warning("Add pairing refused: a known controller with another key")
            self._send_pairing_error(HAP_TLV_STATES.M2, ERROR_UNKNOWN)
            return
        super()._handle_add_pairing(tlv_objects)


class GuardedProtocol(HAPServerProtocol):
    """HAPServerProtocol with a GuardedHandler and the server's connection limits; a closed
    connection ends its pair-setup."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        connections: dict[tuple[str, int], HAPServerProtocol],
        driver: AccessoryDriver,
        server: GuardedServer,
    ) -> None:
        super().__init__(loop, connections, driver)
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        made = self.handler  # HAP-python's own, swapped for ours before any request
        assert made is not None
        self.handler = GuardedHandler(
            self.accessory_driver, made.client_address, self._server.guard
        )
        self._server.admit(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._server.guard.end(self.peername)
        self._server.strangers.closed(self.peername)
        super().connection_lost(exc)


class GuardedServer(HAPServer):
    """HAPServer whose connections use GuardedProtocol, within `connection_limits`."""

    def __init__(
        self, addr_port: tuple[Any, int], driver: AccessoryDriver, guard: PairSetupGuard
    ) -> None:
        super().__init__(addr_port, driver)
        self.addr_port = addr_port
        self.guard = guard
        self.strangers = UnverifiedConnections()
        self._sweep: asyncio.TimerHandle | None = None
        self._limit_logged = -LIMIT_LOG_INTERVAL

    async def async_start(self, loop: asyncio.AbstractEventLoop) -> None:
        # HAPServer.async_start names its protocol class inline; the same steps with ours.
        self.loop = loop
        host, port = self.addr_port
        try:
            self.server = await loop.create_server(
                lambda: GuardedProtocol(loop, self.connections, self.accessory_handler, self),
                host,
                port,
            )
        except OSError as err:
            # Taken since start-up was checked (preflight), or not checked at all.
            raise BridgeError(describe_listen_error(str(host), port, err)) from err
        self.async_cleanup_connections()
        self._sweep_strangers()

    def async_stop(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        super().async_stop()

    def _verified(self, key: Hashable) -> bool:
        connection = self.connections.get(key)  # type: ignore[call-overload]
        handler = connection.handler if connection is not None else None
        return handler is not None and bool(handler.is_encrypted)

    def admit(self, connection: GuardedProtocol) -> None:
        """A new connection: close the oldest unverified ones past the limits."""
        key = connection.peername
        source = str(key[0]) if key else ""
        evicted = self.strangers.admit(
            key, source, time.monotonic(), self._verified, self.guard.owns
        )
        if not evicted:
            return
        now = time.monotonic()
        if now - self._limit_logged >= LIMIT_LOG_INTERVAL:
            # Once a minute at most: a flood must not flood the log.
            self._limit_logged = now
            _LOGGER.warning(
                "Too many HAP connections that have not paired or verified (%d in all, at "
                "most %d from one address); closing the oldest",
                len(self.strangers),
                MAX_UNVERIFIED_PER_SOURCE,
            )
        self._close(evicted)

    def _sweep_strangers(self) -> None:
        assert self.loop is not None
        expired = self.strangers.expired(time.monotonic(), self._verified, self.guard.owns)
        if expired:
            _LOGGER.info("Closing %d HAP connection(s) that never verified", len(expired))
            self._close(expired)
        self._sweep = self.loop.call_later(SWEEP_INTERVAL, self._sweep_strangers)

    def _close(self, keys: list[Hashable]) -> None:
        for key in keys:
            connection = self.connections.get(key)  # type: ignore[call-overload]
            if connection is not None:
                connection.close()


def quiet_hap_protocol_logging() -> None:
    """HAP-python logs decrypted traffic at DEBUG; keep it out of our logs (secrets). It
    also logs every TCP connection at INFO, a line per stranger in a flood of them: those
    show only when the bridge logs at debug. Its pairing record with raw permission bytes
    goes too (ours says admin or user)."""
    logger = logging.getLogger("pyhap.hap_protocol")
    debugging = logger.getEffectiveLevel() <= logging.DEBUG
    logger.setLevel(logging.INFO if debugging else max(logging.WARNING, logger.level))
    logging.getLogger("pyhap.accessory_driver").addFilter(_QUIET_PAIRING_RECORD)
