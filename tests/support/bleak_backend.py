"""A bleak backend on the simulated air (tests/support/ble_air.py), so unchanged bleak users
(aiohomekit's BLE transport, bleak-retry-connector) talk to simulated peripherals.

bleak 3 offers custom backends through `BleakScanner(..., backend=...)` and
`BleakClient(..., backend=...)`, but aiohomekit creates its scanner as
`BleakScanner(detection_callback=...)` and bleak-retry-connector creates its client as
`client_class(device, disconnected_callback=..., ...)`: neither passes a backend. Without one,
both ask bleak's backend lookup, the functions `bleak.get_platform_scanner_backend_type` and
`bleak.get_platform_client_backend_type`, at construction time. `installed(air)` points that
lookup at this module's backends for as long as it is entered:

    air = Air()
    with installed(air):
        controller = BleController(char_cache=CharacteristicCacheMemory())
        await controller.async_start()      # its BleakScanner hears the air

Devices carry `details={"source": "simulated-air"}` and no BlueZ object path, so
bleak-retry-connector skips its BlueZ D-Bus checks (connected devices, service cache).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import bleak
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError

from tests.support.ble_air import (
    Advertisement,
    Air,
    AirError,
    Link,
    LinkLost,
    PeripheralNotFound,
)

T = TypeVar("T")

BACKEND_ID = "simulated-air"
ATT_HEADER_SIZE = 3

_active_air: Air | None = None


# bleak's backend lookup: BleakScanner and BleakClient call these (bleak's module globals)
# whenever they are built without an explicit backend.
_LOOKUPS = ("get_platform_scanner_backend_type", "get_platform_client_backend_type")


def _scanner_backend() -> tuple[type[BaseBleakScanner], str]:
    return SimulatedScanner, BACKEND_ID


def _client_backend() -> tuple[type[BaseBleakClient], str]:
    return SimulatedClient, BACKEND_ID


@contextmanager
def installed(air: Air) -> Iterator[Air]:
    """Make every BleakScanner and BleakClient created inside the block use `air`."""
    global _active_air
    if _active_air is not None:
        raise RuntimeError("a simulated air is already installed")
    namespace = vars(bleak)
    saved = {name: namespace[name] for name in _LOOKUPS}  # KeyError: bleak renamed its lookup
    namespace.update(zip(_LOOKUPS, (_scanner_backend, _client_backend), strict=True))
    _active_air = air
    try:
        yield air
    finally:
        namespace.update(saved)
        _active_air = None


def _air() -> Air:
    if _active_air is None:
        raise BleakError("no simulated air installed (tests.support.bleak_backend.installed)")
    return _active_air


class SimulatedScanner(BaseBleakScanner):
    """Hears the advertisements on the air while started."""

    def __init__(
        self,
        detection_callback: Callable[[BLEDevice, AdvertisementData], Any] | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._air = _air()

    async def start(self) -> None:
        self.seen_devices = {}
        self._air.start_scanning(self)

    async def stop(self) -> None:
        self._air.stop_scanning(self)

    def on_advertisement(self, address: str, advertisement: Advertisement) -> None:
        data = AdvertisementData(
            local_name=advertisement.local_name,
            manufacturer_data=dict(advertisement.manufacturer_data),
            service_data={},
            service_uuids=[],
            tx_power=None,
            rssi=advertisement.rssi,
            platform_data=(),
        )
        if not self.is_allowed_uuid(data.service_uuids):
            return
        device = self.create_or_update_device(
            address, address, advertisement.local_name, {"source": BACKEND_ID}, data
        )
        self.call_detection_callbacks(device, data)


class SimulatedClient(BaseBleakClient):
    """A GATT client over one simulated link."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None,
        timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._air = _air()
        self._name = (
            address_or_ble_device.name or self.address
            if isinstance(address_or_ble_device, BLEDevice)
            else self.address
        )
        self._link: Link | None = None
        self._notify: dict[int, NotifyCallback] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def mtu_size(self) -> int:
        return self._link.mtu if self._link else 23

    @property
    def is_connected(self) -> bool:
        return self._link is not None and self._link.connected

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        try:
            self._link = self._air.connect(self.address, self)
        except PeripheralNotFound as exc:
            raise BleakDeviceNotFoundError(self.address, str(exc)) from exc
        except AirError as exc:
            raise BleakError(str(exc)) from exc
        self.services = self._discover_services(self._link)

    async def disconnect(self) -> None:
        if self._link is not None:
            self._link.disconnect_central()
        self._notify.clear()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise BleakError("bonding is not simulated (HAP does not use it)")

    async def unpair(self) -> None:
        raise BleakError("bonding is not simulated (HAP does not use it)")

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        link = self._connected_link()
        return bytearray(await self._call(link.read(characteristic.handle)))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        link = self._connected_link()
        return bytearray(await self._call(link.read_descriptor(descriptor.handle)))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        link = self._connected_link()
        await self._call(link.write(characteristic.handle, bytes(data)))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        raise BleakError("writing descriptors is not simulated")

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        if "indicate" not in characteristic.properties and (
            "notify" not in characteristic.properties
        ):
            raise BleakError(f"{characteristic.uuid} supports neither notify nor indicate")
        link = self._connected_link()
        self._notify[characteristic.handle] = callback
        await self._call(link.set_indications(characteristic.handle, True))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        link = self._connected_link()
        self._notify.pop(characteristic.handle, None)
        await self._call(link.set_indications(characteristic.handle, False))

    # Central: events from the air.

    def on_indication(self, handle: int, data: bytes) -> None:
        if callback := self._notify.get(handle):
            callback(bytearray(data))

    def on_link_lost(self) -> None:
        self._notify.clear()
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    def _connected_link(self) -> Link:
        if self._link is None or not self._link.connected:
            raise BleakError("Not connected")
        return self._link

    @staticmethod
    async def _call(operation: Awaitable[T]) -> T:
        try:
            return await operation
        except LinkLost as exc:
            # bleak-retry-connector reads "Disconnected" as a normal disconnect (no backoff).
            raise BleakError(f"Disconnected: {exc}") from exc
        except AirError as exc:
            raise BleakError(str(exc)) from exc

    def _discover_services(self, link: Link) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        write_size = link.mtu - ATT_HEADER_SIZE
        for service in link.peripheral.gatt_table():
            bleak_service = BleakGATTService(service, service.handle, service.uuid)
            collection.add_service(bleak_service)
            for char in service.characteristics:
                bleak_char = BleakGATTCharacteristic(
                    char,
                    char.handle,
                    char.uuid,
                    list(char.properties),  # type: ignore[arg-type]
                    lambda: write_size,
                    bleak_service,
                )
                collection.add_characteristic(bleak_char)
                for descriptor in char.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            descriptor, descriptor.handle, descriptor.uuid, bleak_char
                        )
                    )
        return collection
