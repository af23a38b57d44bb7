"""The HAP bridge and its bridged accessories, built from the registry with the ids from
`ids`, on HAP-python's public API (the driver and what reaches inside HAP-python live in
`hap_adapter`)."""

from __future__ import annotations

from collections.abc import Callable

from pyhap.accessory import Accessory, Bridge
from pyhap.characteristic import Characteristic
from pyhap.iid_manager import IIDManager
from pyhap.service import Service

from ..const import INFO_SERVICE
from ..homekit.catalog import Catalog, CharInfo
from ..mqtt.payloads import HapValue, coerce
from ..mqtt.topics import CharKey, ServiceKey
from .hap_adapter import BridgeDriver
from .ids import IdStore
from .narrowing import Narrowing
from .registry import Device

WriteHandler = Callable[[str, CharKey, HapValue], None]


class MqttBridge(Bridge):
    """The HAP bridge; `on_setup_message` shows the setup code when unpaired."""

    def __init__(
        self, driver: BridgeDriver, name: str, on_setup_message: Callable[[], None]
    ) -> None:
        super().__init__(driver, name)
        self._on_setup_message = on_setup_message

    def setup_message(self) -> None:
        self._on_setup_message()


class StableIids(IIDManager):
    """HAP-python asks this for every iid; the answer comes from the persisted IdStore."""

    def __init__(self, ids: IdStore, device_id: str) -> None:
        super().__init__()
        self._ids = ids
        self._device_id = device_id

    def get_iid_for_obj(self, obj: Service | Characteristic) -> int:
        if isinstance(obj, Service):
            return self._ids.iid(self._device_id, _service_key(obj))
        assert obj.service is not None  # HAP-python asks once the service holds it
        return self._ids.iid(self._device_id, f"{_service_key(obj.service)}/{name_of(obj)}")


def name_of(obj: Service | Characteristic) -> str:
    """The HAP name; HAP-python's loader gives every service and characteristic one."""
    assert obj.display_name is not None
    return obj.display_name


def _service_key(service: Service) -> str:
    # The information service is made by HAP-python's Accessory itself, without our key.
    return str(service.unique_id or ServiceKey(name_of(service)))


class MqttAccessory(Accessory):
    """A bridged accessory for one MQTT device; availability is asked of the registry."""

    aid: int

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
    assert info_service is not None  # every HAP-python accessory is made with one
    for char in info_service.characteristics:
        accessory.characteristics[CharKey(ServiceKey(INFO_SERVICE), name_of(char))] = char
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
            char_key = CharKey(key, name_of(char))
            accessory.characteristics[char_key] = char
            narrowing = device.narrowed.get(char_key)
            if narrowing is not None:
                narrow(char, narrowing)
            value = values.get(char_key.characteristic)
            if value is not None and (narrowing is None or narrowing.allows(value)):
                show_value(char, value)
            if "pw" in char.properties["Permissions"]:
                info = catalog.characteristics[char_key.characteristic]
                char.setter_callback = _writer(on_write, device.device_id, char_key, char, info)
    return accessory


def narrow(char: Characteristic, narrowing: Narrowing) -> None:
    """Offer the Home app only what the device can do (HAP-python validates writes by it)."""
    properties, valid_values = narrowing.hap_properties()
    if properties or valid_values:
        char.override_properties(properties or None, valid_values or None)


def show_value(char: Characteristic, value: HapValue) -> None:
    """Give HAP-python a value our payload codec has already checked and rounded.

    Its set_value rounds a float to minStep again with other arithmetic (38.4 becomes
    38.40000000000001), and an event (our value) and a read (its value) would disagree.
    """
    if isinstance(value, float):
        char.value = value
    else:
        char.set_value(value, should_notify=False)


def _writer(
    on_write: WriteHandler, device_id: str, key: CharKey, char: Characteristic, info: CharInfo
) -> Callable[[HapValue], None]:
    def setter(value: HapValue) -> None:
        # The driver checked the value with this same codec before HAP-python took it.
        ours = coerce(value, info)
        show_value(char, ours)
        on_write(device_id, key, ours)

    return setter


def _text(value: HapValue | None) -> str | None:
    return None if value is None else str(value)
