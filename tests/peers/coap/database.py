"""The accessory's database and state: accessories, services, characteristics with their
HAP metadata and current values, in the HAP-BLE encodings HAP over Thread uses.

Requests over CoAP name a characteristic by instance id only, so iids are unique across
the whole database (a Thread accessory is one accessory; a bridge's database is refused).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from tests.peers.pdu_codes import PduParam
from tests.peers.tlv8 import Tlv8

_APPLE_BASE = "-0000-1000-8000-0026BB765291"

Value = bool | int | float | str | bytes


def hap_uuid(hap_type: str) -> UUID:
    """A recorded type as UUID: short Apple form ("25", "701") or full, dashes or not."""
    if len(hap_type) <= 8:
        return UUID(hap_type.rjust(8, "0") + _APPLE_BASE)
    return UUID(hap_type)


class ValueFormat(enum.Enum):
    """HAP formats with their Bluetooth presentation-format code and packing."""

    BOOL = ("bool", 0x01, "<B")
    UINT8 = ("uint8", 0x04, "<B")
    UINT16 = ("uint16", 0x06, "<H")
    UINT32 = ("uint32", 0x08, "<I")
    UINT64 = ("uint64", 0x0A, "<Q")
    INT = ("int", 0x10, "<i")
    FLOAT = ("float", 0x14, "<f")
    STRING = ("string", 0x19, "")
    DATA = ("data", 0x1B, "")
    TLV8 = ("tlv8", 0x1B, "")

    def __init__(self, hap_name: str, gatt_code: int, packing: str) -> None:
        self.hap_name = hap_name
        self.gatt_code = gatt_code
        self.packing = packing

    @classmethod
    def named(cls, hap_name: str) -> ValueFormat:
        for member in cls:
            if member.hap_name == hap_name:
                return member
        raise ValueError(f"unknown HAP format {hap_name!r}")

    @property
    def is_numeric(self) -> bool:
        return bool(self.packing) and self is not ValueFormat.BOOL

    def pack(self, value: Value) -> bytes:
        if self is ValueFormat.STRING:
            return str(value).encode()
        if self in (ValueFormat.DATA, ValueFormat.TLV8):
            return bytes(value) if isinstance(value, bytes) else b""
        assert not isinstance(value, (str, bytes))
        return struct.pack(self.packing, float(value) if self is ValueFormat.FLOAT else int(value))

    def unpack(self, raw: bytes) -> Value:
        """Raises ValueError when the bytes are not a value of this format."""
        if self is ValueFormat.STRING:
            try:
                return raw.decode()
            except UnicodeDecodeError as err:
                raise ValueError("not UTF-8") from err
        if self in (ValueFormat.DATA, ValueFormat.TLV8):
            return raw
        try:
            (number,) = struct.unpack(self.packing, raw)
        except struct.error as err:
            raise ValueError(f"{len(raw)} bytes are not a {self.hap_name}") from err
        if self is ValueFormat.BOOL:
            if number > 1:
                raise ValueError(f"{number} is not a bool")
            return bool(number)
        return float(number) if self is ValueFormat.FLOAT else int(number)


# HAP unit names and their Bluetooth unit codes (GATT Specification Supplement).
UNIT_CODES = {
    "celsius": 0x272F,
    "arcdegrees": 0x2763,
    "percentage": 0x27AD,
    "lux": 0x2731,
    "seconds": 0x2703,
}
_UNITLESS = 0x2700
_BLUETOOTH_SIG_NAMESPACE = 0x01

# HAP-BLE characteristic property bits, by HAP permission.
PERMISSION_BITS = {
    "aa": 0x0004,  # additional authorization data
    "tw": 0x0008,  # timed write required
    "pr": 0x0010,  # paired (secure) read
    "pw": 0x0020,  # paired (secure) write
    "hd": 0x0040,  # hidden from the user
    "ev": 0x0080,  # events while connected
}
_SERVICE_PRIMARY, _SERVICE_HIDDEN = 0x0001, 0x0002
# The pairing characteristics work without a session (plain read 0x01, write 0x02), as the
# database dumps of real Thread devices declare them; HAP JSON has no permission for that.
_UNSECURED_BITS = {hap_uuid("4C"): 0x0003, hap_uuid("4E"): 0x0003, hap_uuid("4F"): 0x0001}


def _u16(number: int) -> bytes:
    return struct.pack("<H", number)


def _type_bytes(uuid: UUID) -> bytes:
    """A type as accessories send it: an Apple type as its short number in as few
    little-endian bytes as it needs (0x3E -> 3e, 0x220 -> 20 02), any other as the whole
    UUID, little-endian (database dumps of real Thread devices show both)."""
    text = str(uuid).upper()
    if text.endswith(_APPLE_BASE):
        short = int(text[:8], 16)
        return short.to_bytes(max(1, (short.bit_length() + 7) // 8), "little")
    return uuid.bytes[::-1]


@dataclass(eq=False)
class Characteristic:
    iid: int
    type: UUID
    format: ValueFormat
    perms: frozenset[str]
    value: Value = b""
    unit: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    min_step: float | None = None
    valid_values: tuple[int, ...] | None = None

    def readable(self) -> bool:
        return "pr" in self.perms

    def writable(self) -> bool:
        return "pw" in self.perms

    def notifies(self) -> bool:
        return "ev" in self.perms

    @property
    def properties(self) -> int:
        bits = _UNSECURED_BITS.get(self.type, 0)
        for perm in self.perms:
            bits |= PERMISSION_BITS.get(perm, 0)
        return bits

    def value_tlv(self) -> bytes:
        """The body of a read response or event: the value as a HAP-Param-Value TLV."""
        return Tlv8.encode([(PduParam.VALUE, self.format.pack(self.value))])

    def check(self, value: Value) -> Value:
        """The value as stored after a write; ValueError when the accessory refuses it."""
        fmt = self.format
        if fmt is ValueFormat.BOOL:
            if value not in (True, False):
                raise ValueError(f"{value!r} is not a bool")
            return bool(value)
        if fmt is ValueFormat.STRING or fmt in (ValueFormat.DATA, ValueFormat.TLV8):
            if not isinstance(value, str if fmt is ValueFormat.STRING else bytes):
                raise ValueError(f"{value!r} is not {fmt.hap_name}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{value!r} is not a number")
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        if fmt is not ValueFormat.FLOAT and value != int(value):
            raise ValueError(f"{value} is not an integer")
        if self.min_value is not None and value < self.min_value:
            raise ValueError(f"{value} < minValue {self.min_value}")
        if self.max_value is not None and value > self.max_value:
            raise ValueError(f"{value} > maxValue {self.max_value}")
        if self.valid_values is not None and value not in self.valid_values:
            raise ValueError(f"{value} not in valid-values {self.valid_values}")
        try:
            # Stored as the wire format holds it (a float32, an int32...), as a device would.
            return fmt.unpack(fmt.pack(value))
        except struct.error as err:
            raise ValueError(f"{value} does not fit a {fmt.hap_name}") from err

    def metadata(self) -> list[tuple[int, bytes]]:
        """Properties and presentation: what a database entry and a signature read share."""
        items = [(int(PduParam.CHARACTERISTIC_PROPERTIES), _u16(self.properties))]
        unit = UNIT_CODES.get(self.unit or "", _UNITLESS)
        presentation = struct.pack(
            "<BbHBH", self.format.gatt_code, 0, unit, _BLUETOOTH_SIG_NAMESPACE, 0
        )
        items.append((PduParam.PRESENTATION_FORMAT, presentation))
        if self.format.is_numeric and self.min_value is not None and self.max_value is not None:
            low, high = self.format.pack(self.min_value), self.format.pack(self.max_value)
            items.append((PduParam.VALID_RANGE, low + high))
        if self.format.is_numeric and self.min_step:
            items.append((PduParam.STEP_VALUE, self.format.pack(self.min_step)))
        if self.valid_values is not None:
            items.append((PduParam.VALID_VALUES, bytes(self.valid_values)))
        return items

    def tlv(self) -> bytes:
        """The characteristic's entry in the database."""
        return Tlv8.encode(
            [
                (PduParam.CHARACTERISTIC_TYPE, _type_bytes(self.type)),
                (PduParam.CHARACTERISTIC_INSTANCE_ID, _u16(self.iid)),
                *self.metadata(),
            ]
        )

    def signature(self, service: Service) -> bytes:
        """The body of a characteristic signature read."""
        return Tlv8.encode(
            [
                (PduParam.CHARACTERISTIC_TYPE, _type_bytes(self.type)),
                (PduParam.SERVICE_INSTANCE_ID, _u16(service.iid)),
                (PduParam.SERVICE_TYPE, _type_bytes(service.type)),
                *self.metadata(),
            ]
        )


@dataclass(eq=False)
class Service:
    iid: int
    type: UUID
    characteristics: list[Characteristic]
    primary: bool = False
    hidden: bool = False

    @property
    def properties(self) -> int:
        return (_SERVICE_PRIMARY if self.primary else 0) | (_SERVICE_HIDDEN if self.hidden else 0)

    def signature(self) -> bytes:
        """The body of a service signature read: properties and (no) linked services."""
        return Tlv8.encode(
            [(PduParam.SERVICE_PROPERTIES, _u16(self.properties)), (PduParam.LINKED_SERVICES, b"")]
        )

    def tlv(self) -> bytes:
        items: list[tuple[int, bytes]] = [
            (PduParam.SERVICE_TYPE, _type_bytes(self.type)),
            (PduParam.SERVICE_INSTANCE_ID, _u16(self.iid)),
        ]
        chars = Tlv8.sequence(PduParam.CHARACTERISTIC, (c.tlv() for c in self.characteristics))
        items.append((PduParam.CHARACTERISTICS, chars))
        if self.properties:
            items.append((PduParam.SERVICE_PROPERTIES, _u16(self.properties)))
        return Tlv8.encode(items)


@dataclass(eq=False)
class Accessory:
    aid: int
    services: list[Service]

    def tlv(self) -> bytes:
        services = Tlv8.sequence(PduParam.SERVICE, (s.tlv() for s in self.services))
        return Tlv8.encode(
            [(PduParam.ACCESSORY_IID, _u16(self.aid)), (PduParam.SERVICES, services)]
        )


ValueListener = Callable[[Characteristic, object], None]


@dataclass(eq=False)
class AccessoryDatabase:
    """Accessories and their current values; tells listeners when a value changes."""

    accessories: list[Accessory]
    config_number: int = 1
    _by_iid: dict[int, tuple[Accessory, Service, Characteristic]] = field(init=False)
    _listeners: list[ValueListener] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._by_iid = {}
        for accessory in self.accessories:
            for service in accessory.services:
                for char in service.characteristics:
                    if char.iid in self._by_iid:
                        raise ValueError(
                            f"iid {char.iid} used twice: HAP over CoAP addresses by iid alone"
                        )
                    self._by_iid[char.iid] = (accessory, service, char)

    def characteristic(self, iid: int) -> Characteristic | None:
        entry = self._by_iid.get(iid)
        return entry[2] if entry else None

    def service_of(self, iid: int) -> Service | None:
        entry = self._by_iid.get(iid)
        return entry[1] if entry else None

    def service(self, iid: int) -> Service | None:
        for accessory in self.accessories:
            for service in accessory.services:
                if service.iid == iid:
                    return service
        return None

    def aid_of(self, iid: int) -> int:
        return self._by_iid[iid][0].aid

    def find(self, service_type: str, char_type: str) -> Characteristic:
        """The first characteristic of char_type in a service of service_type."""
        wanted_service, wanted_char = hap_uuid(service_type), hap_uuid(char_type)
        for _, service, char in self._by_iid.values():
            if service.type == wanted_service and char.type == wanted_char:
                return char
        raise KeyError(f"no {char_type} in a {service_type} service")

    def __iter__(self) -> Iterator[Characteristic]:
        return (char for _, _, char in self._by_iid.values())

    def add_listener(self, listener: ValueListener) -> None:
        self._listeners.append(listener)

    def set_value(self, iid: int, value: Value, origin: object = None) -> bool:
        """Store a checked value; listeners hear of a change (origin: who made it)."""
        char = self.characteristic(iid)
        if char is None:
            raise KeyError(f"no characteristic with iid {iid}")
        stored = char.check(value)
        if stored == char.value and type(stored) is type(char.value):
            return False
        char.value = stored
        for listener in self._listeners:
            listener(char, origin)
        return True

    def tlv(self) -> bytes:
        """The body of a database read (opcode 0x09)."""
        accessories = Tlv8.sequence(PduParam.ACCESSORY, (a.tlv() for a in self.accessories))
        return Tlv8.encode([(PduParam.ACCESSORIES, accessories)])


# --- building databases ---------------------------------------------------------------------


def _decode_data(value: Any) -> bytes:
    """Recorded data values: hex (how aiohomekit's CoAP client prints them) or base64."""
    if not value:
        return b""
    text = str(value)
    try:
        return bytes.fromhex(text)
    except ValueError:
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error as err:
            raise ValueError(f"data value {text!r} is neither hex nor base64") from err


def _format_of_value(record: dict[str, Any]) -> str:
    """Some recordings leave "format" out; the value's JSON type tells."""
    value = record.get("value")
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return "float" if isinstance(value, float) else "string"


def _recorded_value(fmt: ValueFormat, value: Any) -> Value:
    if fmt in (ValueFormat.DATA, ValueFormat.TLV8):
        return _decode_data(value)
    if fmt is ValueFormat.STRING:
        return "" if value is None else str(value)
    if fmt is ValueFormat.BOOL:
        return bool(value)
    if fmt is ValueFormat.FLOAT:
        return float(value or 0)
    return int(value or 0)


def characteristic_from_record(
    record: dict[str, Any], format_of: Callable[[UUID], str]
) -> Characteristic:
    """A characteristic from a `GET /accessories`-style record.

    Recordings made through a CoAP client say "int" for every integer format; format_of
    gives the HAP format of a type it knows ("" if not), so ColorTemperature is "uint32".
    """
    char_type = hap_uuid(record["type"])
    recorded_format, known_format = record.get("format"), format_of(char_type)
    if recorded_format == "int" and known_format.startswith("uint"):
        recorded_format = known_format
    fmt = ValueFormat.named(recorded_format or known_format or _format_of_value(record))
    valid_values = record.get("valid-values")
    return Characteristic(
        iid=int(record["iid"]),
        type=char_type,
        format=fmt,
        perms=frozenset(record.get("perms", [])),
        value=_recorded_value(fmt, record.get("value")),
        unit=record.get("unit"),
        min_value=record.get("minValue"),
        max_value=record.get("maxValue"),
        min_step=record.get("minStep"),
        valid_values=tuple(valid_values) if valid_values is not None else None,
    )


def load_database(path: Path, format_of: Callable[[UUID], str]) -> AccessoryDatabase:
    """A recorded `GET /accessories` body (list of accessories, or {"accessories": [...]})."""
    recorded = json.loads(path.read_text())
    if isinstance(recorded, dict):
        recorded = recorded["accessories"]
    accessories = [
        Accessory(
            aid=int(accessory["aid"]),
            services=[
                Service(
                    iid=int(service["iid"]),
                    type=hap_uuid(service["type"]),
                    characteristics=[
                        characteristic_from_record(c, format_of) for c in service["characteristics"]
                    ],
                    primary=bool(service.get("primary", False)),
                    hidden=bool(service.get("hidden", False)),
                )
                for service in accessory["services"]
            ],
        )
        for accessory in recorded
    ]
    return AccessoryDatabase(accessories)


def _char(
    iid: int, hap_type: str, fmt: str, perms: str, value: Value, **meta: Any
) -> Characteristic:
    return Characteristic(
        iid, hap_uuid(hap_type), ValueFormat.named(fmt), frozenset(perms.split()), value, **meta
    )


def demo_database(name: str = "Thread Bulb") -> AccessoryDatabase:
    """One accessory, as a Thread bulb with a sensor would be: a Lightbulb (On, Brightness)
    and a TemperatureSensor, besides the information, protocol and pairing services."""
    info = Service(
        1,
        hap_uuid("3E"),
        [
            _char(2, "14", "bool", "pw", False),  # Identify
            _char(3, "20", "string", "pr", "mqtt-hk-bridge tests"),  # Manufacturer
            _char(4, "21", "string", "pr", "CoAP-Sim"),  # Model
            _char(5, "23", "string", "pr", name),  # Name
            _char(6, "30", "string", "pr", "SIM-0001"),  # SerialNumber
            _char(7, "52", "string", "pr", "1.0.0"),  # FirmwareRevision
        ],
    )
    protocol = Service(16, hap_uuid("A2"), [_char(17, "37", "string", "pr", "1.2.0")])
    pairing = Service(
        32,
        hap_uuid("55"),
        [
            _char(33, "4C", "tlv8", "", b""),  # PairSetup (CoAP /1)
            _char(34, "4E", "tlv8", "", b""),  # PairVerify (CoAP /2)
            _char(35, "4F", "uint8", "", 0),  # PairingFeatures
            _char(36, "50", "tlv8", "pr pw", b""),  # Pairings
        ],
    )
    bulb = Service(
        48,
        hap_uuid("43"),
        [
            _char(49, "23", "string", "pr", "Bulb"),
            _char(50, "25", "bool", "pr pw ev", False),  # On
            _char(
                51,
                "8",
                "int",
                "pr pw ev",
                100,
                unit="percentage",  # Brightness
                min_value=0,
                max_value=100,
                min_step=1,
            ),
        ],
        primary=True,
    )
    sensor = Service(
        64,
        hap_uuid("8A"),
        [
            _char(65, "23", "string", "pr", "Sensor"),
            _char(
                66,
                "11",
                "float",
                "pr ev",
                21.5,
                unit="celsius",  # CurrentTemperature
                min_value=-270.0,
                max_value=100.0,
                min_step=0.1,
            ),
        ],
    )
    return AccessoryDatabase([Accessory(1, [info, protocol, pairing, bulb, sensor])])
