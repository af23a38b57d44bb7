"""The HAP-BLE attribute database: HAP services and characteristics, their signatures and
values, laid out as a GATT table (from the HAP specification's Bluetooth LE chapter).

Every HAP service is a GATT service with a Service Instance ID characteristic (its 16-bit iid,
read in the clear); every HAP characteristic is a GATT characteristic whose Characteristic
Instance ID descriptor holds its iid. A characteristic's signature (type, service, properties,
presentation format, range and step) is what a controller reads to learn the database.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from itertools import count
from typing import Any

from tests.peers.pdu_codes import PduParam
from tests.peers.tlv8 import Tlv8
from tests.support.ble_air import GattCharacteristic, GattDescriptor, GattService

SERVICE_INSTANCE_ID_UUID = "e604e95d-a759-4817-87d3-aa005083a0d1"
CHARACTERISTIC_INSTANCE_ID_UUID = "dc46f0fe-81d2-4616-b5d9-6abdd796939a"
CCCD_UUID = "00002902-0000-1000-8000-00805f9b34fb"


def hap_uuid(short: str) -> str:
    """The full lower-case UUID of an Apple-defined type ("43" -> 00000043-0000-1000-...)."""
    return f"{int(short, 16):08x}-0000-1000-8000-0026bb765291"


def uuid_wire(uuid: str) -> bytes:
    """A 128-bit UUID as HAP-BLE parameters carry it: little-endian."""
    return bytes.fromhex(uuid.replace("-", ""))[::-1]


class Format(IntEnum):
    """Bluetooth presentation-format codes HAP-BLE uses."""

    BOOL = 0x01
    UINT8 = 0x04
    UINT16 = 0x06
    UINT32 = 0x08
    INT = 0x10
    FLOAT = 0x14
    STRING = 0x19
    DATA = 0x1B


class Unit(IntEnum):
    UNITLESS = 0x2700
    CELSIUS = 0x272F
    PERCENTAGE = 0x27AD


class Prop(IntFlag):
    """HAP characteristic properties (the signature's 16-bit field)."""

    READ = 0x0001  # readable without a secure session
    WRITE = 0x0002  # writable without a secure session
    SECURE_READ = 0x0010
    SECURE_WRITE = 0x0020
    EVENTS_CONNECTED = 0x0080  # zero-length indications while connected
    EVENTS_DISCONNECTED = 0x0100  # global state number bumps while nobody is connected
    BROADCAST = 0x0200  # encrypted broadcast notifications, once a controller enables them


class ServiceProp(IntFlag):
    NONE = 0x0000
    PRIMARY = 0x0001
    HIDDEN = 0x0002
    SUPPORTS_CONFIGURATION = 0x0004


_PACK = {
    Format.BOOL: "<B",
    Format.UINT8: "<B",
    Format.UINT16: "<H",
    Format.UINT32: "<I",
    Format.INT: "<i",
    Format.FLOAT: "<f",
}


class InvalidValue(ValueError):
    """Bytes a controller wrote that are not a valid value for the characteristic."""


@dataclass
class HapCharacteristic:
    uuid: str
    fmt: Format
    props: Prop
    value: Any = None
    unit: Unit = Unit.UNITLESS
    valid_range: tuple[float, float] | None = None
    step: float | None = None
    iid: int = 0
    handle: int = 0  # GATT value handle, given when the table is laid out
    service: HapService | None = None

    def encode(self, value: Any) -> bytes:
        if self.fmt == Format.STRING:
            return str(value).encode()
        if self.fmt == Format.DATA:
            return bytes(value or b"")  # a data characteristic never written reads empty
        return struct.pack(_PACK[self.fmt], int(value) if self.fmt != Format.FLOAT else value)

    def decode(self, data: bytes) -> Any:
        """The value written, validated as the accessory would; raises InvalidValue."""
        if self.fmt == Format.STRING:
            return data.decode()
        if self.fmt == Format.DATA:
            return data
        pack = _PACK[self.fmt]
        if len(data) != struct.calcsize(pack):
            raise InvalidValue(f"{len(data)} bytes for format {self.fmt.name}")
        (value,) = struct.unpack(pack, data)
        if self.fmt == Format.BOOL:
            if value > 1:
                raise InvalidValue(f"bool {value}")
            return bool(value)
        if self.valid_range and not self.valid_range[0] <= value <= self.valid_range[1]:
            raise InvalidValue(f"{value} outside {self.valid_range}")
        return value

    def signature(self) -> bytes:
        assert self.service is not None
        presentation = struct.pack("<BbHBH", self.fmt, 0, self.unit, 0x01, 0x0000)
        items = [
            (PduParam.CHARACTERISTIC_TYPE, uuid_wire(self.uuid)),
            (PduParam.SERVICE_INSTANCE_ID, struct.pack("<H", self.service.iid)),
            (PduParam.SERVICE_TYPE, uuid_wire(self.service.uuid)),
            (PduParam.CHARACTERISTIC_PROPERTIES, struct.pack("<H", self.props)),
            (PduParam.PRESENTATION_FORMAT, presentation),
        ]
        if self.valid_range is not None:
            low, high = self.valid_range
            items.append((PduParam.VALID_RANGE, self.encode(low) + self.encode(high)))
        if self.step is not None:
            items.append((PduParam.STEP_VALUE, self.encode(self.step)))
        return Tlv8.encode(items)


@dataclass
class HapService:
    uuid: str
    characteristics: list[HapCharacteristic]
    props: ServiceProp = ServiceProp.NONE
    linked: list[HapService] = field(default_factory=list)
    iid: int = 0
    handle: int = 0
    instance_id_handle: int = 0

    def signature(self) -> bytes:
        linked = b"".join(struct.pack("<H", service.iid) for service in self.linked)
        return Tlv8.encode(
            [
                (PduParam.SERVICE_PROPERTIES, struct.pack("<H", self.props)),
                (PduParam.LINKED_SERVICES, linked),
            ]
        )


SERVICE_SIGNATURE = hap_uuid("A5")


class AttributeDatabase:
    """Services in order, with iids and GATT handles given once, as the accessory boots."""

    def __init__(self, services: list[HapService]) -> None:
        self.services = services
        iids = count(1)
        handles = count(1)
        self.instance_id_descriptors: dict[int, HapCharacteristic] = {}
        for service in services:
            service.iid = next(iids)
            service.handle = next(handles)
            service.instance_id_handle = next(handles)
            for char in service.characteristics:
                char.service = service
                char.iid = next(iids)
                char.handle = next(handles)
                self.instance_id_descriptors[next(handles)] = char
                if char.props & Prop.EVENTS_CONNECTED:
                    next(handles)  # the CCCD
        self._by_handle = {c.handle: c for c in self.characteristics()}
        self._service_ids = {s.instance_id_handle: s for s in services}

    def characteristics(self) -> Iterator[HapCharacteristic]:
        for service in self.services:
            yield from service.characteristics

    def by_handle(self, handle: int) -> HapCharacteristic | None:
        return self._by_handle.get(handle)

    def service_by_instance_id_handle(self, handle: int) -> HapService | None:
        return self._service_ids.get(handle)

    def find(self, service_uuid: str, char_uuid: str) -> HapCharacteristic:
        for service in self.services:
            if service.uuid == service_uuid:
                for char in service.characteristics:
                    if char.uuid == char_uuid:
                        return char
        raise KeyError(f"{service_uuid}/{char_uuid}")

    def gatt_table(self) -> tuple[GattService, ...]:
        descriptor_handles = {c.handle: h for h, c in self.instance_id_descriptors.items()}
        table = []
        for service in self.services:
            chars = [
                GattCharacteristic(service.instance_id_handle, SERVICE_INSTANCE_ID_UUID, ("read",))
            ]
            for char in service.characteristics:
                descriptors = [
                    GattDescriptor(descriptor_handles[char.handle], CHARACTERISTIC_INSTANCE_ID_UUID)
                ]
                properties: tuple[str, ...] = ("read", "write")
                if char.props & Prop.EVENTS_CONNECTED:
                    properties += ("indicate",)
                    descriptors.append(
                        GattDescriptor(descriptor_handles[char.handle] + 1, CCCD_UUID)
                    )
                chars.append(
                    GattCharacteristic(char.handle, char.uuid, properties, tuple(descriptors))
                )
            table.append(GattService(service.handle, service.uuid, tuple(chars)))
        return tuple(table)
