"""bridge.yaml keys for devices that do not speak our topic layout: a mapped device's
services and topics (`devices.<id>.services`, `.availability`), and which sources run
(`sources`; the discovery prefix is `homeassistant.prefix`). docs/mapping.md describes them.

`config.py` calls in here; every error names the device and the key
(`bridge.yaml: devices.plug.services.0.characteristics.On.values: ...`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from . import const
from .durations import duration
from .errors import CatalogError, PayloadError
from .exposer.narrowing import Narrowing
from .exposer.transforms import JsonPath
from .homekit.catalog import NUMERIC_FORMATS, CharInfo, get_catalog
from .mqtt.payloads import HapValue, coerce

#: The sources a user may turn on, in the order they get a message's device id.
SOURCE_NAMES = (const.SOURCE_HOMEKIT_TOPICS, const.SOURCE_HOMEASSISTANT_DISCOVERY)
DEFAULT_SOURCES = (const.SOURCE_HOMEKIT_TOPICS,)
#: Most services a mapped device may name (the same cap as any device).
MAX_SERVICES = 16
YAML_BOOLEAN_HINT = (
    "YAML reads unquoted ON/OFF/yes/no/true/false as booleans; quote device words ('ON', 'true')"
)


@dataclass(frozen=True)
class CharMapping:
    characteristic: str
    state_topic: str | None = None
    command_topic: str | None = None
    json_path: JsonPath | None = None
    #: Device word -> HAP value, for reading (and, reversed, for writing).
    values: Mapping[str, HapValue] | None = None
    #: HAP value -> device word, when commands use other words than states.
    command_values: Mapping[HapValue, str] | None = None
    scale: float = 1.0
    offset: float = 0.0
    command_template: str | None = None
    retain_command: bool = False
    #: A fixed value (no topic): TemperatureDisplayUnits, a Name...
    value: HapValue | None = None
    #: Seconds of quiet after which the value returns to off (false, or the lowest value):
    #: for a sensor that only ever says ON.
    off_delay: float | None = None
    #: A state message the json_path or value map does not match is another device's (a
    #: topic several devices share, as behind an RF bridge): skipped without an event.
    ignore_unmatched: bool = False
    #: What the device can do, where that is less than HomeKit's range (its modes, its
    #: temperature range): the Home app offers only this.
    narrowing: Narrowing | None = None


@dataclass(frozen=True)
class ServiceMapping:
    service: str
    index: int
    characteristics: tuple[CharMapping, ...]


@dataclass(frozen=True)
class AvailabilityMapping:
    topic: str
    json_path: JsonPath | None = None
    payload_available: str = const.ONLINE
    payload_not_available: str = const.OFFLINE


@dataclass(frozen=True)
class DeviceMapping:
    services: tuple[ServiceMapping, ...]
    availability: AvailabilityMapping | None = None


def _topic(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in "+#\x00") or len(text.encode()) > 65535:
        raise vol.Invalid("must be an MQTT topic: non-empty, without + # or NUL")
    return text


def _json_path(value: Any) -> JsonPath:
    try:
        return JsonPath.parse(str(value))
    except ValueError as err:
        raise vol.Invalid(str(err)) from err


def _word(value: Any) -> str:
    if isinstance(value, bool):
        raise vol.Invalid(YAML_BOOLEAN_HINT)
    if not isinstance(value, str | int | float):
        raise vol.Invalid("expected a word or a number")
    return str(value)


def _yaml_on(service: Any) -> Any:
    """YAML 1.1 reads an unquoted `On:` (the HAP characteristic) as the boolean true."""
    if isinstance(service, dict) and isinstance(service.get("characteristics"), dict):
        chars = service["characteristics"]
        if True in chars and "On" not in chars:
            renamed = {("On" if key is True else key): value for key, value in chars.items()}
            return {**service, "characteristics": renamed}
    return service


CHARACTERISTIC = vol.Schema(
    {
        vol.Optional("state_topic"): _topic,
        vol.Optional("command_topic"): _topic,
        vol.Optional("json_path"): _json_path,
        vol.Optional("values"): vol.Schema({_word: vol.Any(bool, int, float, str)}),
        vol.Optional("command_values"): vol.Schema({vol.Any(bool, int, float, str): _word}),
        vol.Optional("scale"): vol.All(vol.Coerce(float), vol.NotIn([0.0], msg="must not be 0")),
        vol.Optional("offset"): vol.Coerce(float),
        vol.Optional("command_template"): vol.All(str, vol.Length(min=1, max=1024)),
        vol.Optional("retain_command"): bool,
        vol.Optional("value"): vol.Any(bool, int, float, str),
        vol.Optional("off_delay"): duration(0.1),
        vol.Optional("ignore_unmatched"): bool,
        vol.Optional("valid_values"): vol.All([vol.Any(bool, int, float, str)], vol.Length(min=1)),
        vol.Optional("min_value"): vol.Coerce(float),
        vol.Optional("max_value"): vol.Coerce(float),
        vol.Optional("min_step"): vol.All(vol.Coerce(float), vol.Range(min=0, min_included=False)),
    }
)

SERVICE = vol.Schema(
    {
        vol.Required("type"): str,
        vol.Required("characteristics"): vol.All(
            vol.Schema({str: vol.Any(None, CHARACTERISTIC)}), vol.Length(min=1)
        ),
    }
)

AVAILABILITY = vol.Schema(
    {
        vol.Required("topic"): _topic,
        vol.Optional("json_path"): _json_path,
        vol.Optional("payload_available", default=const.ONLINE): _word,
        vol.Optional("payload_not_available", default=const.OFFLINE): _word,
    }
)

#: Keys a `devices.<id>` entry takes besides the per-device options of our own layout.
DEVICE_KEYS = {
    vol.Optional("services"): vol.All(
        [vol.All(_yaml_on, SERVICE)], vol.Length(min=1, max=MAX_SERVICES)
    ),
    vol.Optional("availability"): AVAILABILITY,
}

#: Top-level keys.
TOP_LEVEL_KEYS = {
    vol.Optional("sources", default=list(DEFAULT_SOURCES)): vol.All(
        [vol.In(SOURCE_NAMES, msg=f"expected one of {', '.join(SOURCE_NAMES)}")],
        vol.Length(min=1),
    ),
}


def _hap_value(value: Any, info: CharInfo, path: list[Any]) -> HapValue:
    try:
        return coerce(value, info)
    except PayloadError as err:
        raise vol.Invalid(str(err), path=path) from err


def _characteristic(name: str, raw: dict[str, Any], info: CharInfo, path: list[Any]) -> CharMapping:
    if not any(key in raw for key in ("state_topic", "command_topic", "value")):
        raise vol.Invalid("needs a state_topic, a command_topic or a fixed value", path=path)
    if "value" in raw and ("state_topic" in raw or "command_topic" in raw):
        raise vol.Invalid("a fixed value takes no topics", path=[*path, "value"])
    for option in ("off_delay", "ignore_unmatched"):
        if option in raw and "state_topic" not in raw:
            raise vol.Invalid(f"{option} needs a state_topic", path=[*path, option])
    if "command_topic" in raw and not info.writable:
        raise vol.Invalid(f"{name} is read-only in HomeKit", path=[*path, "command_topic"])
    mapped = "values" in raw or "command_values" in raw
    if mapped and ("scale" in raw or "offset" in raw):
        raise vol.Invalid("values and scale/offset do not go together", path=[*path, "scale"])
    values = None
    if "values" in raw:
        values = {
            word: _hap_value(value, info, [*path, "values", word])
            for word, value in raw["values"].items()
        }
    command_values = None
    if "command_values" in raw:
        command_values = {
            _hap_value(value, info, [*path, "command_values", value]): word
            for value, word in raw["command_values"].items()
        }
    constant = raw.get("value")
    return CharMapping(
        characteristic=name,
        state_topic=raw.get("state_topic"),
        command_topic=raw.get("command_topic"),
        json_path=raw.get("json_path"),
        values=values,
        command_values=command_values,
        scale=raw.get("scale", 1.0),
        offset=raw.get("offset", 0.0),
        command_template=raw.get("command_template"),
        retain_command=raw.get("retain_command", False),
        value=None if constant is None else _hap_value(constant, info, [*path, "value"]),
        off_delay=raw.get("off_delay"),
        ignore_unmatched=raw.get("ignore_unmatched", False),
        narrowing=_narrowing(raw, info, path),
    )


def _narrowing(raw: dict[str, Any], info: CharInfo, path: list[Any]) -> Narrowing | None:
    """valid_values, min_value, max_value and min_step: only ever within HomeKit's own."""
    options = ("valid_values", "min_value", "max_value", "min_step")
    if not any(option in raw for option in options):
        return None
    valid = None
    if "valid_values" in raw:
        if info.valid_values is None:
            raise vol.Invalid(f"{info.name} has no valid values", path=[*path, "valid_values"])
        where = [*path, "valid_values"]
        valid = tuple(
            sorted({int(_hap_value(value, info, where)) for value in raw["valid_values"]})
        )
    for option in ("min_value", "max_value", "min_step"):
        if option in raw and (info.format not in NUMERIC_FORMATS or info.valid_values):
            raise vol.Invalid(f"{info.name} is not a number with a range", path=[*path, option])
    low, high = raw.get("min_value"), raw.get("max_value")
    if low is not None and high is not None and low > high:
        raise vol.Invalid("min_value is above max_value", path=[*path, "min_value"])
    narrowing = Narrowing(valid, low, high, raw.get("min_step"))
    if narrowing.within(info) != narrowing:
        raise vol.Invalid(
            f"goes beyond HomeKit's own range for {info.name} "
            f"({_range(info)}); the bridge only narrows it",
            path=[*path, next(option for option in options if option in raw)],
        )
    return narrowing


def _range(info: CharInfo) -> str:
    if info.valid_values is not None:
        return "valid values " + ", ".join(str(value) for value in info.valid_values)
    parts = [
        f"{name} {value:g}"
        for name, value in (
            ("min", info.min_value),
            ("max", info.max_value),
            ("step", info.min_step),
        )
        if value is not None
    ]
    return ", ".join(parts) or "no range"


def _device_mapping(options: dict[str, Any]) -> DeviceMapping:
    catalog = get_catalog()
    services: list[ServiceMapping] = []
    indexes: dict[str, int] = {}
    for position, raw in enumerate(options["services"]):
        path: list[Any] = ["services", position]
        try:
            service = catalog.service(raw["type"])
        except CatalogError as err:
            raise vol.Invalid(str(err), path=[*path, "type"]) from err
        if service.name == const.INFO_SERVICE:
            raise vol.Invalid(
                "AccessoryInformation is filled by the bridge; use name", path=[*path, "type"]
            )
        index = indexes[service.name] = indexes.get(service.name, 0) + 1
        if index > const.MAX_SERVICE_INDEX:
            raise vol.Invalid(
                f"at most {const.MAX_SERVICE_INDEX} {service.name} services", path=[*path, "type"]
            )
        characteristics = []
        for name, char_raw in raw["characteristics"].items():
            char_path = [*path, "characteristics", name]
            try:
                info = catalog.characteristic(service, name)
            except CatalogError as err:
                raise vol.Invalid(str(err), path=char_path) from err
            characteristics.append(_characteristic(info.name, char_raw or {}, info, char_path))
        services.append(ServiceMapping(service.name, index, tuple(characteristics)))
    availability = None
    if "availability" in options:
        raw_availability = options["availability"]
        availability = AvailabilityMapping(
            topic=raw_availability["topic"],
            json_path=raw_availability.get("json_path"),
            payload_available=raw_availability["payload_available"],
            payload_not_available=raw_availability["payload_not_available"],
        )
    return DeviceMapping(tuple(services), availability)


def with_mapping(options: dict[str, Any]) -> dict[str, Any]:
    """A validated `devices.<id>` entry with its mapping keys turned into `mapping`."""
    if "availability" in options and "services" not in options:
        raise vol.Invalid(
            "availability belongs to a mapped device: add its services", path=["availability"]
        )
    rest = {key: value for key, value in options.items() if key not in ("services", "availability")}
    if "services" in options:
        rest["mapping"] = _device_mapping(options)
    return rest
