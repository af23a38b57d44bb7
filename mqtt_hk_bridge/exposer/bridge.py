"""The HAP-python seam: a driver with our state files and write checks, and accessories
built from the registry with the ids from `ids`.

HAP-python gaps closed here (RELIABILITY.md): its state file is written through our atomic
0600 store and a pairing that cannot be saved is refused; writes to unknown, read-only or
unavailable characteristics and invalid values get their HAP status (-70409, -70404,
-70402, -70410) instead of a 500 or a silent clamp; removing a pairing closes that
controller's open sessions. Pair-setup limits and pairing caps live in `hap_guard`.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyhap.accessory import Accessory, Bridge
from pyhap.accessory_driver import AccessoryDriver
from pyhap.characteristic import Characteristic
from pyhap.const import (
    HAP_REPR_AID,
    HAP_REPR_CHARS,
    HAP_REPR_IID,
    HAP_REPR_STATUS,
    HAP_REPR_VALUE,
    HAP_SERVER_STATUS,
)
from pyhap.iid_manager import IIDManager
from pyhap.service import Service

from ..const import INFO_SERVICE
from ..errors import PayloadError
from ..homekit.catalog import Catalog
from ..mqtt.payloads import HapValue, coerce
from ..mqtt.topics import CharKey, ServiceKey
from ..store import JsonStore
from .hap_guard import ATTEMPTS_FILE, FailedAttempts, GuardedServer, PairSetupGuard
from .ids import IdStore
from .registry import Device

_LOGGER = logging.getLogger(__name__)

WriteHandler = Callable[[str, CharKey, HapValue], None]


class BridgeDriver(AccessoryDriver):  # type: ignore[misc]
    """AccessoryDriver with our state file and HAP write validation."""

    http_server: GuardedServer

    def __init__(self, *, state_path: Path, catalog: Catalog, **kwargs: Any) -> None:
        self._state_store = JsonStore(state_path)
        self._catalog = catalog
        #: Called after a controller pairs or is removed (bridge/info says "paired").
        self.pairing_changed: Callable[[], None] = lambda: None
        super().__init__(persist_file=str(state_path), **kwargs)
        self.pair_setup_guard = PairSetupGuard(FailedAttempts(state_path.parent / ATTEMPTS_FILE))
        # HAP-python's own server is not started yet: ours replaces it, on its address.
        self.http_server = GuardedServer(self.http_server._addr_port, self, self.pair_setup_guard)

    def add_accessory(self, accessory: Accessory) -> None:
        self.accessory = accessory
        if not self.load():
            self.persist()

    def load(self) -> bool:
        data = self._state_store.load()
        if data is None:
            return False
        self.encoder.load_into(io.StringIO(json.dumps(data)), self.state)
        return True

    def persist(self) -> None:
        buffer = io.StringIO()
        self.encoder.persist(buffer, self.state)
        self._state_store.save(json.loads(buffer.getvalue()))

    def async_persist(self) -> None:
        # Synchronous: the file is small, and two executor writes could race on the temp file.
        self.persist()

    def pair(
        self, client_username_bytes: bytes, client_public: bytes, client_permissions: bytes
    ) -> bool:
        self.state.add_paired_client(client_username_bytes, client_public, client_permissions)
        try:
            self.persist()
        except OSError as err:
            # A pairing only in memory would be lost on restart: refuse it now instead.
            _LOGGER.error("Pairing refused: cannot save the pairing (%s)", err)
            self.state.remove_paired_client(uuid.UUID(client_username_bytes.decode("utf-8")))
            return False
        _LOGGER.info("Paired with a controller (permissions %s)", client_permissions)
        self.pairing_changed()
        return True

    def unpair(self, client_uuid: uuid.UUID) -> None:
        before = set(self.state.paired_clients)
        # Removing the last admin removes every pairing (HAP-python's State does that).
        self.state.remove_paired_client(client_uuid)
        self._close_sessions(before - set(self.state.paired_clients))
        self.persist()
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

    def refresh_config(self) -> bool:
        """Bump the configuration number if, and only if, the accessory database changed."""
        if not self.state.set_accessories_hash(self.accessories_hash):
            return False
        self.persist()
        if self.advertiser is not None and self.mdns_service_info is not None:
            self.async_update_advertisement()
        _LOGGER.info(
            "Accessory database changed; configuration number %s", self.state.config_version
        )
        return True

    def _write_status(self, aid: int, iid: int, value: Any) -> int | None:
        """The HAP status refusing this write, or None to let HAP-python carry it out."""
        char = self.accessory.get_characteristic(aid, iid)
        if not isinstance(char, Characteristic):
            return int(HAP_SERVER_STATUS.RESOURCE_DOES_NOT_EXIST)
        if "pw" not in char.properties["Permissions"]:
            return int(HAP_SERVER_STATUS.READ_ONLY_CHARACTERISTIC)
        accessory = self.accessory if aid == self.accessory.aid else self.accessory.accessories[aid]
        if not accessory.available:
            return int(HAP_SERVER_STATUS.SERVICE_COMMUNICATION_FAILURE)
        info = self._catalog.characteristics.get(char.display_name)
        if info is not None:
            try:
                coerce(value, info)
            except PayloadError:
                return int(HAP_SERVER_STATUS.INVALID_VALUE_IN_REQUEST)
        return None

    def set_characteristics(
        self, chars_query: dict[str, Any], client_addr: Any
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


class MqttBridge(Bridge):  # type: ignore[misc]
    """The HAP bridge; `on_setup_message` shows the setup code when unpaired."""

    def __init__(
        self, driver: BridgeDriver, name: str, on_setup_message: Callable[[], None]
    ) -> None:
        super().__init__(driver, name)
        self._on_setup_message = on_setup_message

    def setup_message(self) -> None:
        self._on_setup_message()


class StableIids(IIDManager):  # type: ignore[misc]
    """HAP-python asks this for every iid; the answer comes from the persisted IdStore."""

    def __init__(self, ids: IdStore, device_id: str) -> None:
        super().__init__()
        self._ids = ids
        self._device_id = device_id

    def get_iid_for_obj(self, obj: Service | Characteristic) -> int:
        if isinstance(obj, Service):
            return self._ids.iid(self._device_id, _service_key(obj))
        return self._ids.iid(self._device_id, f"{_service_key(obj.service)}/{obj.display_name}")


def _service_key(service: Service) -> str:
    # The information service is made by HAP-python's Accessory itself, without our key.
    return str(service.unique_id or ServiceKey(service.display_name))


class MqttAccessory(Accessory):  # type: ignore[misc]
    """A bridged accessory for one MQTT device; availability is asked of the registry."""

    def __init__(
        self,
        driver: BridgeDriver,
        name: str,
        aid: int,
        iids: StableIids,
        available: Callable[[], bool],
    ) -> None:
        self._is_available = available
        super().__init__(driver, name, aid=aid, iid_manager=iids)
        self.characteristics: dict[CharKey, Characteristic] = {}

    @property
    def available(self) -> bool:
        return self._is_available()


def build_accessory(
    driver: BridgeDriver,
    device: Device,
    *,
    name: str,
    aid: int,
    ids: IdStore,
    catalog: Catalog,
    available: Callable[[], bool],
    on_write: WriteHandler,
) -> MqttAccessory:
    """A HAP-python accessory showing `device`: its services, last values and info."""
    accessory = MqttAccessory(driver, name, aid, StableIids(ids, device.device_id), available)
    accessory.set_info_service(
        firmware_revision=_text(device.info("FirmwareRevision")) or "1.0",
        manufacturer=_text(device.info("Manufacturer")) or "mqtt-hk-bridge",
        model=_text(device.info("Model")) or "MQTT device",
        serial_number=_text(device.info("SerialNumber")) or device.device_id,
    )
    # The information service's characteristics take value updates like any other.
    info_service = accessory.get_service(INFO_SERVICE)
    for char in info_service.characteristics:
        accessory.characteristics[CharKey(ServiceKey(INFO_SERVICE), char.display_name)] = char
    for key in device.exposed_services:
        values = device.services[key]
        service_info = catalog.service(key.service)
        service = driver.loader.get_service(service_info.name)
        service.unique_id = str(key)
        # In the catalog's order, not arrival order: the database (and c#) must not depend
        # on which topic came first.
        for char_name in service_info.optional:
            if char_name in values:
                service.add_characteristic(driver.loader.get_char(char_name))
        accessory.add_service(service)
        for char in service.characteristics:
            char_key = CharKey(key, char.display_name)
            accessory.characteristics[char_key] = char
            if char.display_name in values:
                char.set_value(values[char.display_name], should_notify=False)
            if "pw" in char.properties["Permissions"]:
                char.setter_callback = _writer(on_write, device.device_id, char_key)
    return accessory


def _writer(on_write: WriteHandler, device_id: str, key: CharKey) -> Callable[[HapValue], None]:
    def setter(value: HapValue) -> None:
        on_write(device_id, key, value)

    return setter


def _text(value: HapValue | None) -> str | None:
    return None if value is None else str(value)


def quiet_hap_protocol_logging() -> None:
    """HAP-python logs decrypted traffic at DEBUG; keep it out of our logs (secrets, T31)."""
    logger = logging.getLogger("pyhap.hap_protocol")
    if logger.getEffectiveLevel() < logging.INFO:
        logger.setLevel(logging.INFO)
