"""HAP service and characteristic definitions, read from HAP-python's own tables.

Names are HAP-python's (`TemperatureSensor`, `CurrentTemperature`); a lookup is exact first,
then case-insensitive. Nothing here is hand-written but `SPEC_OPTIONAL`, what HAP-python's
table leaves out: a HAP-python upgrade brings new types.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyhap.loader import get_loader

from ..display import quoted
from ..errors import CatalogError

NUMERIC_FORMATS = frozenset({"int", "float", "uint8", "uint16", "uint32", "uint64"})
INTEGER_FORMATS = NUMERIC_FORMATS - {"float"}
#: Value ranges of the integer formats, for characteristics without min/max.
FORMAT_RANGES: Mapping[str, tuple[int, int]] = {
    "int": (-(2**31), 2**31 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
#: HAP's default maximum string length.
DEFAULT_MAX_LEN = 64
#: Apple's base UUID: `0000XXXX-0000-1000-8000-0026BB765291` is shortened to `XXXX`.
APPLE_UUID_SUFFIX = "-0000-1000-8000-0026BB765291"
#: Optional characteristics the HAP specification gives a service and HAP-python's table
#: leaves out (5.2: a Lightbulb without ColorTemperature, which white-spectrum bulbs need).
SPEC_OPTIONAL: Mapping[str, tuple[str, ...]] = {"Lightbulb": ("ColorTemperature",)}


@dataclass(frozen=True)
class CharInfo:
    name: str
    uuid: str
    format: str
    perms: tuple[str, ...]
    min_value: float | None = None
    max_value: float | None = None
    min_step: float | None = None
    valid_values: tuple[int, ...] | None = None
    max_len: int = DEFAULT_MAX_LEN
    unit: str | None = None

    @property
    def readable(self) -> bool:
        return "pr" in self.perms

    @property
    def writable(self) -> bool:
        return "pw" in self.perms

    @property
    def notifies(self) -> bool:
        return "ev" in self.perms


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    uuid: str
    required: tuple[str, ...]
    optional: tuple[str, ...]

    def allows(self, characteristic: str) -> bool:
        return characteristic in self.required or characteristic in self.optional


def normalize_uuid(value: str) -> str:
    """Full upper-case UUID from a HAP type (`43`, `00000043`, or the long form)."""
    text = value.upper()
    if len(text) <= 8 and all(c in "0123456789ABCDEF" for c in text):
        return f"{text.rjust(8, '0')}{APPLE_UUID_SUFFIX}"
    return str(uuid.UUID(text)).upper()


def _char_info(name: str, raw: Mapping[str, Any]) -> CharInfo:
    valid = raw.get("ValidValues")
    return CharInfo(
        name=name,
        uuid=normalize_uuid(raw["UUID"]),
        format=raw["Format"],
        perms=tuple(raw["Permissions"]),
        min_value=raw.get("minValue"),
        max_value=raw.get("maxValue"),
        min_step=raw.get("minStep"),
        valid_values=tuple(sorted(valid.values())) if valid else None,
        max_len=raw.get("maxLen", DEFAULT_MAX_LEN),
        unit=raw.get("unit"),
    )


def _lookup(table: Mapping[str, Any], folded: Mapping[str, str], name: str) -> Any | None:
    found = table.get(name)
    if found is None and name.isascii():
        # ASCII only: casefold() maps look-alikes (long s, Kelvin sign) onto real names,
        # and a topic the device did not really use must not become a valid one.
        canonical = folded.get(name.casefold())
        found = table.get(canonical) if canonical else None
    return found


def _optional(service: str, listed: Any) -> tuple[str, ...]:
    extra = [name for name in SPEC_OPTIONAL.get(service, ()) if name not in listed]
    return (*listed, *extra)


class Catalog:
    """Every service and characteristic HAP-python knows, by name and by UUID."""

    def __init__(self) -> None:
        loader = get_loader()
        self.characteristics: dict[str, CharInfo] = {
            name: _char_info(name, raw) for name, raw in loader.char_types.items()
        }
        self.services: dict[str, ServiceInfo] = {
            name: ServiceInfo(
                name=name,
                uuid=normalize_uuid(raw["UUID"]),
                required=tuple(raw["RequiredCharacteristics"]),
                optional=_optional(name, raw.get("OptionalCharacteristics", ())),
            )
            for name, raw in loader.serv_types.items()
        }
        self._folded_chars = {name.casefold(): name for name in self.characteristics}
        self._folded_services = {name.casefold(): name for name in self.services}
        self._char_by_uuid = {info.uuid: info for info in self.characteristics.values()}
        self._service_by_uuid = {info.uuid: info for info in self.services.values()}

    def service(self, name: str) -> ServiceInfo:
        found: ServiceInfo | None = _lookup(self.services, self._folded_services, name)
        if found is None:
            raise CatalogError(f"unknown HomeKit service {quoted(name)}")
        return found

    def characteristic(self, service: ServiceInfo, name: str) -> CharInfo:
        """The characteristic `name` of `service`; it must be one the service may carry."""
        found: CharInfo | None = _lookup(self.characteristics, self._folded_chars, name)
        if found is None:
            raise CatalogError(f"unknown HomeKit characteristic {quoted(name)}")
        if not service.allows(found.name):
            allowed = ", ".join(service.required + service.optional)
            raise CatalogError(
                f"{service.name} has no characteristic {found.name} (it has: {allowed})"
            )
        return found

    def service_by_uuid(self, type_uuid: str) -> ServiceInfo | None:
        return self._service_by_uuid.get(normalize_uuid(type_uuid))

    def characteristic_by_uuid(self, type_uuid: str) -> CharInfo | None:
        return self._char_by_uuid.get(normalize_uuid(type_uuid))


@functools.cache
def get_catalog() -> Catalog:
    """The catalog is read once per process: the tables are large and never change."""
    return Catalog()
