"""A Home Assistant entity (one discovery config) as HomeKit services: which service, which
characteristics, and how each reads the entity's state topics and writes its command
topics, in the entity's own payloads and templates. docs/mapping.md has the table.

`plan_entity` raises `Unmappable` with the reason when an entity has no HomeKit form (a
pressure sensor, an unknown component) or cannot be used (a template that does not
compile, a state topic with a wildcard). Pure: nothing here does I/O.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import PayloadError
from ..mqtt.payloads import HapValue
from .bindings import (
    AvailabilityBinding,
    AvailabilityMode,
    CharSpec,
    Reader,
    ResetAfter,
    Siblings,
    Skip,
    Writer,
)
from .colour import hs_to_rgb, hs_to_xy, kelvin_to_mired, rgb_to_hs, xy_to_hs
from .ha_discovery import Entity
from .narrowing import Narrowing
from .templates import Template
from .transforms import PayloadView

ON, OFF = "ON", "OFF"
ONLINE, OFFLINE = "online", "offline"
#: Home Assistant's words for payloads a template renders as nothing.
NOTHING_WORDS = frozenset({"", "None"})
#: HomeKit's colour temperature range (mireds) and ambient light floor (lux).
MIREDS_MIN, MIREDS_MAX = 140, 500
LUX_MIN, LUX_MAX = 0.0001, 100000.0
#: Below this battery level HomeKit shows "low battery" (Home Assistant's own threshold).
LOW_BATTERY_PERCENT = 20
#: CO2 at or above this is "abnormal" (a common indoor limit, ppm).
CO2_ABNORMAL_PPM = 1000
#: PM2.5 (µg/m³) upper bounds of HomeKit's AirQuality 1 (excellent) .. 4 (inferior); above: 5.
PM25_BANDS = (12.0, 35.0, 55.0, 150.0)


class Unmappable(Exception):
    """The entity has no HomeKit form; the message says why."""


@dataclass(frozen=True)
class ServiceSpec:
    service: str
    #: What identifies this service within its device across restarts and reorderings
    #: (the entity's unique id, or a button of the device).
    slot: str
    characteristics: tuple[CharSpec, ...]


@dataclass(frozen=True)
class EntityPlan:
    services: tuple[ServiceSpec, ...]
    availability: tuple[AvailabilityBinding, ...] = ()
    availability_mode: AvailabilityMode = AvailabilityMode.LATEST
    #: `expire_after`: silent this long, the entity is unavailable (None: never).
    expire_after: float | None = None


# -- reading the config ---------------------------------------------------------------------


def ha_text(value: Any) -> str:
    """A config value as Home Assistant compares it (`true` -> `True`, as a template
    renders a JSON true)."""
    return str(value)


def _topic(entity: Entity, key: str, *, required: bool = False) -> str | None:
    value = entity.config.get(key)
    if value is None:
        if required:
            raise Unmappable(f"{entity.component} without {key}")
        return None
    text = str(value)
    if not text or any(c in text for c in "+#\x00"):
        raise Unmappable(f"{key} {text[:80]!r} is not a topic we can use")
    return text


def _template(entity: Entity, key: str) -> Template | None:
    text = entity.config.get(key)
    if text is None:
        return None
    try:
        return Template(str(text))
    except ValueError as err:
        raise Unmappable(f"{key}: {err}") from err


def _number_option(entity: Entity, key: str, default: float) -> float:
    value = entity.config.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Unmappable(f"{key} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise Unmappable(f"{key} {value!r} is not a number")
    return number


def _slot(entity: Entity, suffix: str = "") -> str:
    return f"{entity.unique_id or entity.key}{suffix}"


# -- readers and writers --------------------------------------------------------------------


def text_reader(template: Template | None) -> Callable[[PayloadView], str | Skip]:
    """The state as text, through the value template if there is one; nothing for an
    empty render (Home Assistant ignores those too)."""

    def read(view: PayloadView) -> str | Skip:
        text = template.render_payload(view) if template is not None else view.text
        return Skip.NOTHING if text in NOTHING_WORDS else text

    return read


def words_reader(
    template: Template | None,
    words: Mapping[str, HapValue],
    *,
    ignore: frozenset[str] = frozenset(),
) -> Reader:
    read_text = text_reader(template)

    def read(view: PayloadView) -> Any:
        text = read_text(view)
        if text is Skip.NOTHING or text in ignore:
            return Skip.NOTHING
        if text in words:
            return words[text]
        known = " or ".join(repr(word) for word in words)
        raise PayloadError(f"{text[:40]!r} is not {known}")

    return read


def number_reader(
    template: Template | None,
    convert: Callable[[float], HapValue] = float,
    *,
    clamp: tuple[float, float] | None = None,
) -> Reader:
    read_text = text_reader(template)

    def read(view: PayloadView) -> Any:
        text = read_text(view)
        if text is Skip.NOTHING:
            return text
        try:
            number = float(text)
        except ValueError:
            raise PayloadError(f"{text[:40]!r} is not a number") from None
        if not math.isfinite(number):
            raise PayloadError(f"{text[:40]!r} is not a number")
        value = convert(number)
        if clamp is not None and isinstance(value, int | float):
            value = min(max(value, clamp[0]), clamp[1])
        return value

    return read


def command_writer(template: Template | None, word: Callable[[HapValue], Any]) -> Writer:
    """The command: the device's word for the value, through the command template."""

    def write(value: HapValue, _siblings: Siblings) -> str:
        device = word(value)
        if template is None:
            return str(device)
        return template.render(value=device)

    return write


def _on_off(entity: Entity) -> tuple[str, str, str, str]:
    payload_on = ha_text(entity.get("payload_on", ON))
    payload_off = ha_text(entity.get("payload_off", OFF))
    return (
        payload_on,
        payload_off,
        ha_text(entity.get("state_on", payload_on)),
        ha_text(entity.get("state_off", payload_off)),
    )


def _controlled(
    characteristic: str,
    topics: tuple[str | None, str | None],
    read: Reader,
    write: Writer,
    retain: bool,
    *,
    optimistic: HapValue,
    **options: Any,
) -> CharSpec:
    """A characteristic read from a state topic and written to a command topic, either of
    which an entity may leave out. Without a state topic it is optimistic: it starts at
    `optimistic` and then shows what was last written."""
    state_topic, command_topic = topics
    return CharSpec(
        characteristic,
        state_topic,
        read if state_topic else None,
        command_topic,
        write if command_topic else None,
        retain,
        initial=None if state_topic else optimistic,
        **options,
    )


def _describe(**items: Any) -> dict[str, Any]:
    return {key: value for key, value in items.items() if value is not None}


# -- availability ---------------------------------------------------------------------------


def availability(entity: Entity) -> tuple[tuple[AvailabilityBinding, ...], AvailabilityMode]:
    items: list[Mapping[str, Any]] = []
    listed = entity.config.get("availability")
    if isinstance(listed, list):
        items = [item for item in listed if isinstance(item, dict)]
    elif entity.config.get("availability_topic") is not None:
        items = [
            {
                "topic": entity.config["availability_topic"],
                "payload_available": entity.config.get("payload_available"),
                "payload_not_available": entity.config.get("payload_not_available"),
                "value_template": entity.config.get("availability_template"),
            }
        ]
    bindings = []
    for item in items:
        topic = item.get("topic")
        if not isinstance(topic, str) or not topic or any(c in topic for c in "+#\x00"):
            raise Unmappable(f"availability topic {topic!r} is not a topic we can use")
        template = None
        if item.get("value_template") is not None:
            try:
                template = Template(str(item["value_template"]))
            except ValueError as err:
                raise Unmappable(f"availability value_template: {err}") from err
        available = ha_text(item.get("payload_available") or ONLINE)
        not_available = ha_text(item.get("payload_not_available") or OFFLINE)
        bindings.append(
            AvailabilityBinding(
                topic,
                _availability_reader(template, available, not_available),
                _describe(
                    topic=topic,
                    payload_available=available,
                    payload_not_available=not_available,
                    value_template=template.text if template else None,
                ),
            )
        )
    mode_text = str(entity.config.get("availability_mode", AvailabilityMode.LATEST.value))
    try:
        mode = AvailabilityMode(mode_text)
    except ValueError:
        raise Unmappable(f"availability_mode {mode_text!r} is not all, any or latest") from None
    return tuple(bindings), mode


def _availability_reader(
    template: Template | None, available: str, not_available: str
) -> Callable[[PayloadView], bool | Skip]:
    read_text = text_reader(template)

    def read(view: PayloadView) -> bool | Skip:
        text = read_text(view)
        if text == available:
            return True
        if text == not_available:
            return False
        return Skip.NOTHING  # Home Assistant ignores other payloads too

    return read


# -- components -----------------------------------------------------------------------------


def _switch(entity: Entity) -> list[ServiceSpec]:
    service = "Outlet" if entity.config.get("device_class") == "outlet" else "Switch"
    chars = [_on_characteristic(entity, "state_topic", "value_template")]
    if service == "Outlet":
        # HomeKit's "in use": the outlet is on (no power reading belongs to the switch).
        on = chars[0]
        chars.append(
            CharSpec(
                "OutletInUse",
                on.state_topic,
                on.read,
                initial=on.initial,
                describe={**on.describe, "follows": "On"},
            )
        )
    return [ServiceSpec(service, _slot(entity), tuple(chars))]


def _on_characteristic(entity: Entity, state_key: str, template_key: str) -> CharSpec:
    payload_on, payload_off, state_on, state_off = _on_off(entity)
    state_topic = _topic(entity, state_key)
    command_topic = _topic(entity, "command_topic")
    template = _template(entity, template_key)
    command_template = _template(entity, "command_template")
    return _controlled(
        "On",
        (state_topic, command_topic),
        words_reader(template, {state_on: True, state_off: False}),
        command_writer(command_template, lambda on: payload_on if on else payload_off),
        bool(entity.get("retain", False)),
        optimistic=False,
        describe=_describe(
            state_topic=state_topic,
            value_template=template.text if template else None,
            state_on=state_on,
            state_off=state_off,
            command_topic=command_topic,
            payload_on=payload_on,
            payload_off=payload_off,
        ),
    )


def _light(entity: Entity) -> list[ServiceSpec]:
    schema = str(entity.config.get("schema", "default"))
    if schema == "json":
        chars = _json_light(entity)
    elif schema in ("default", "basic"):
        chars = _default_light(entity)
    else:
        raise Unmappable(f"light schema {schema!r} is not supported (default and json are)")
    return [ServiceSpec("Lightbulb", _slot(entity), tuple(chars))]


def _json_field(path: tuple[str, ...]) -> Callable[[PayloadView], Any]:
    def read(view: PayloadView) -> Any:
        value = view.document
        for step in path:
            if not isinstance(value, dict) or step not in value:
                return Skip.NOTHING
            value = value[step]
        return Skip.NOTHING if value is None else value

    return read


def _json_light(entity: Entity) -> list[CharSpec]:
    state_topic = _topic(entity, "state_topic")
    command_topic = _topic(entity, "command_topic", required=True)
    retain = bool(entity.get("retain", False))
    scale = _number_option(entity, "brightness_scale", 255)
    modes = entity.config.get("supported_color_modes") or []
    if not isinstance(modes, list):
        raise Unmappable("supported_color_modes is not a list")

    def json_command(build: Callable[[HapValue, Siblings], dict[str, Any]]) -> Writer:
        def write(value: HapValue, siblings: Siblings) -> str:
            return json.dumps(build(value, siblings), separators=(",", ":"))

        return write

    def char(
        name: str,
        read: Reader,
        build: Callable[[HapValue, Siblings], dict[str, Any]],
        described: dict[str, Any],
    ) -> CharSpec:
        return CharSpec(
            name,
            state_topic,
            read if state_topic else None,
            command_topic,
            json_command(build),
            retain,
            describe={"state_topic": state_topic, "command_topic": command_topic, **described},
        )

    state = _json_field(("state",))

    def read_on(view: PayloadView) -> Any:
        word = state(view)
        if word is Skip.NOTHING:
            return word
        if str(word).upper() not in (ON, OFF):
            raise PayloadError(f"state {str(word)[:40]!r} is not ON or OFF")
        return str(word).upper() == ON

    chars = [char("On", read_on, lambda on, _: {"state": ON if on else OFF}, {"json": "state"})]
    if entity.config.get("brightness") or "brightness" in modes or _has_colour(modes):
        brightness = _json_field(("brightness",))

        def read_brightness(view: PayloadView) -> Any:
            raw = brightness(view)
            return raw if raw is Skip.NOTHING else _number(raw) * 100 / scale

        chars.append(
            char(
                "Brightness",
                read_brightness,
                lambda level, _: {"brightness": round(float(level) * scale / 100)},
                {"json": "brightness", "brightness_scale": scale},
            )
        )
    if entity.config.get("color_temp") or "color_temp" in modes:
        kelvin = bool(entity.config.get("color_temp_kelvin"))
        temperature = _json_field(("color_temp",))

        def read_temperature(view: PayloadView) -> Any:
            raw = temperature(view)
            if raw is Skip.NOTHING:
                return raw
            mireds = kelvin_to_mired(_number(raw)) if kelvin else _number(raw)
            return min(max(mireds, MIREDS_MIN), MIREDS_MAX)

        def write_temperature(mireds: HapValue, _: Siblings) -> dict[str, Any]:
            value = round(kelvin_to_mired(float(mireds))) if kelvin else int(mireds)
            return {"color_temp": value}

        chars.append(
            char("ColorTemperature", read_temperature, write_temperature, {"json": "color_temp"})
        )
    if _has_colour(modes):
        chars.extend(_json_colour(modes, char))
    return chars


def _has_colour(modes: list[Any]) -> bool:
    return any(mode in modes for mode in ("hs", "xy", "rgb", "rgbw", "rgbww"))


def _json_colour(modes: list[Any], char: Callable[..., CharSpec]) -> list[CharSpec]:
    colour = _json_field(("color",))

    def hue_saturation(view: PayloadView) -> tuple[float, float] | Skip:
        value = colour(view)
        if not isinstance(value, dict):
            return Skip.NOTHING
        if "h" in value or "hue" in value:
            return _number(value.get("h", value.get("hue"))), _number(
                value.get("s", value.get("saturation", 100))
            )
        if "x" in value and "y" in value:
            return xy_to_hs(_number(value["x"]), _number(value["y"]))
        if all(key in value for key in "rgb"):
            return rgb_to_hs(_number(value["r"]), _number(value["g"]), _number(value["b"]))
        return Skip.NOTHING

    def part(index: int) -> Reader:
        def read(view: PayloadView) -> Any:
            found = hue_saturation(view)
            return found if found is Skip.NOTHING else found[index]

        return read

    def command(hue: float, saturation: float) -> dict[str, Any]:
        if "hs" in modes:
            return {"color": {"h": round(hue, 1), "s": round(saturation, 1)}}
        if "xy" in modes:
            x, y = hs_to_xy(hue, saturation)
            return {"color": {"x": x, "y": y}}
        red, green, blue = hs_to_rgb(hue, saturation)
        return {"color": {"r": red, "g": green, "b": blue}}

    def write_hue(hue: HapValue, siblings: Siblings) -> dict[str, Any]:
        return command(float(hue), float(siblings("Saturation") or 100))

    def write_saturation(saturation: HapValue, siblings: Siblings) -> dict[str, Any]:
        return command(float(siblings("Hue") or 0), float(saturation))

    described = {"json": "color", "color_modes": [str(mode) for mode in modes]}
    return [
        char("Hue", part(0), write_hue, described),
        char("Saturation", part(1), write_saturation, described),
    ]


def _number(raw: Any) -> float:
    if isinstance(raw, bool):
        raise PayloadError("expected a number, not a boolean")
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise PayloadError(f"{str(raw)[:40]!r} is not a number") from None
    if not math.isfinite(number):
        raise PayloadError(f"{raw!r} is not a number")
    return number


def _default_light(entity: Entity) -> list[CharSpec]:
    on = _on_characteristic(entity, "state_topic", "state_value_template")
    if on.command_topic is None:
        raise Unmappable("light without command_topic")
    chars = [on]
    retain = bool(entity.get("retain", False))
    scale = _number_option(entity, "brightness_scale", 255)
    brightness_state = _topic(entity, "brightness_state_topic")
    brightness_command = _topic(entity, "brightness_command_topic")
    if brightness_state or brightness_command:
        template = _template(entity, "brightness_value_template")
        command = _template(entity, "brightness_command_template")
        chars.append(
            _controlled(
                "Brightness",
                (brightness_state, brightness_command),
                number_reader(template, lambda raw: raw * 100 / scale, clamp=(0, 100)),
                command_writer(command, lambda level: round(float(level) * scale / 100)),
                retain,
                optimistic=100,
                describe=_describe(
                    state_topic=brightness_state,
                    value_template=template.text if template else None,
                    command_topic=brightness_command,
                    brightness_scale=scale,
                ),
            )
        )
    temperature_state = _topic(entity, "color_temp_state_topic")
    temperature_command = _topic(entity, "color_temp_command_topic")
    if temperature_state or temperature_command:
        kelvin = bool(entity.config.get("color_temp_kelvin"))
        template = _template(entity, "color_temp_value_template")
        command = _template(entity, "color_temp_command_template")

        def to_mireds(raw: float) -> float:
            return kelvin_to_mired(raw) if kelvin else raw

        chars.append(
            _controlled(
                "ColorTemperature",
                (temperature_state, temperature_command),
                number_reader(template, to_mireds, clamp=(MIREDS_MIN, MIREDS_MAX)),
                command_writer(
                    command,
                    lambda mireds: round(kelvin_to_mired(float(mireds))) if kelvin else mireds,
                ),
                retain,
                optimistic=MIREDS_MIN,
                describe=_describe(
                    state_topic=temperature_state,
                    value_template=template.text if template else None,
                    command_topic=temperature_command,
                ),
            )
        )
    chars.extend(_default_colour(entity, retain))
    return chars


def _default_colour(entity: Entity, retain: bool) -> list[CharSpec]:
    """hs (`h,s`) or rgb (`r,g,b`) topics of a default-schema light as Hue and Saturation."""
    for kind in ("hs", "rgb"):
        state_topic = _topic(entity, f"{kind}_state_topic")
        command_topic = _topic(entity, f"{kind}_command_topic")
        if state_topic or command_topic:
            break
    else:
        return []
    template = _template(entity, f"{kind}_value_template")
    command = _template(entity, f"{kind}_command_template")
    read_text = text_reader(template)

    def hue_saturation(view: PayloadView) -> tuple[float, float] | Skip:
        text = read_text(view)
        if text is Skip.NOTHING:
            return text
        parts = [_number(part) for part in re.split(r"[,\s]+", text.strip()) if part]
        if kind == "hs" and len(parts) == 2:
            return parts[0], parts[1]
        if kind == "rgb" and len(parts) >= 3:
            return rgb_to_hs(parts[0], parts[1], parts[2])
        raise PayloadError(f"{text[:40]!r} is not {'h,s' if kind == 'hs' else 'r,g,b'}")

    def part(index: int) -> Reader:
        def read(view: PayloadView) -> Any:
            found = hue_saturation(view)
            return found if found is Skip.NOTHING else found[index]

        return read

    def command_for(hue: float, saturation: float) -> str:
        if kind == "hs":
            variables: dict[str, Any] = {"hue": hue, "sat": saturation}
            default = f"{hue:g},{saturation:g}"
        else:
            red, green, blue = hs_to_rgb(hue, saturation)
            variables = {"red": red, "green": green, "blue": blue}
            default = f"{red},{green},{blue}"
        return command.render(**variables, value=default) if command else default

    def write_hue(hue: HapValue, siblings: Siblings) -> str:
        return command_for(float(hue), float(siblings("Saturation") or 100))

    def write_saturation(saturation: HapValue, siblings: Siblings) -> str:
        return command_for(float(siblings("Hue") or 0), float(saturation))

    described = _describe(state_topic=state_topic, command_topic=command_topic, colour=kind)
    return [
        CharSpec(
            "Hue",
            state_topic,
            part(0) if state_topic else None,
            command_topic,
            write_hue if command_topic else None,
            retain,
            describe=described,
        ),
        CharSpec(
            "Saturation",
            state_topic,
            part(1) if state_topic else None,
            command_topic,
            write_saturation if command_topic else None,
            retain,
            describe=described,
        ),
    ]


#: Sensor device classes HomeKit shows: service, characteristic, clamp.
SENSOR_CLASSES: Mapping[str, tuple[str, str]] = {
    "temperature": ("TemperatureSensor", "CurrentTemperature"),
    "humidity": ("HumiditySensor", "CurrentRelativeHumidity"),
    "illuminance": ("LightSensor", "CurrentAmbientLightLevel"),
    "battery": ("BatteryService", "BatteryLevel"),
    "carbon_dioxide": ("CarbonDioxideSensor", "CarbonDioxideLevel"),
    "pm25": ("AirQualitySensor", "PM2.5Density"),
}
#: HomeKit's ranges for what sensors measure (a reading outside is shown at the edge).
SENSOR_RANGES: Mapping[str, tuple[float, float]] = {
    "CurrentTemperature": (-273.1, 1000.0),
    "CurrentRelativeHumidity": (0.0, 100.0),
    "CurrentAmbientLightLevel": (LUX_MIN, LUX_MAX),
    "BatteryLevel": (0.0, 100.0),
    "CarbonDioxideLevel": (0.0, 100000.0),
    "PM2.5Density": (0.0, 1000.0),
}
SKIPPED_SENSOR_REASONS: Mapping[str, str] = {
    "pressure": "HomeKit has no pressure characteristic",
    "atmospheric_pressure": "HomeKit has no pressure characteristic",
}


def _temperature_converter(entity: Entity) -> Callable[[float], float]:
    unit = str(entity.config.get("unit_of_measurement", "°C")).replace("º", "°")
    if unit in ("°F", "F"):
        return lambda value: (value - 32) * 5 / 9
    if unit == "K":
        return lambda value: value - 273.15
    return float


def _sensor(entity: Entity) -> list[ServiceSpec]:
    device_class = entity.config.get("device_class")
    if device_class is None:
        raise Unmappable("a sensor without a device_class has no HomeKit service")
    device_class = str(device_class)
    if device_class in SKIPPED_SENSOR_REASONS:
        raise Unmappable(SKIPPED_SENSOR_REASONS[device_class])
    if device_class not in SENSOR_CLASSES:
        raise Unmappable(f"HomeKit has no service for a sensor of device_class {device_class}")
    service, characteristic = SENSOR_CLASSES[device_class]
    state_topic = _topic(entity, "state_topic", required=True)
    template = _template(entity, "value_template")
    convert: Callable[[float], float] = (
        _temperature_converter(entity) if device_class == "temperature" else float
    )
    described = _describe(
        state_topic=state_topic,
        value_template=template.text if template else None,
        device_class=device_class,
        unit_of_measurement=entity.config.get("unit_of_measurement"),
    )
    value = CharSpec(
        characteristic,
        state_topic,
        number_reader(template, convert, clamp=SENSOR_RANGES[characteristic]),
        describe=described,
    )
    chars = [value]
    if device_class == "battery":
        chars.append(
            _derived(value, "StatusLowBattery", lambda level: int(level < LOW_BATTERY_PERCENT))
        )
        chars.append(CharSpec("ChargingState", initial=2, describe={"value": "not chargeable"}))
    elif device_class == "carbon_dioxide":
        chars.append(
            _derived(value, "CarbonDioxideDetected", lambda ppm: int(ppm >= CO2_ABNORMAL_PPM))
        )
    elif device_class == "pm25":
        chars.append(_derived(value, "AirQuality", _air_quality))
    return [ServiceSpec(service, _slot(entity), tuple(chars))]


def _air_quality(pm25: float) -> int:
    for quality, bound in enumerate(PM25_BANDS, start=1):
        if pm25 <= bound:
            return quality
    return len(PM25_BANDS) + 1


def _derived(
    source: CharSpec, characteristic: str, derive: Callable[[float], HapValue]
) -> CharSpec:
    """A characteristic computed from another's reading (low battery from the level)."""
    read = source.read
    assert read is not None

    def derived(view: PayloadView) -> Any:
        value = read(view)
        return value if value is Skip.NOTHING else derive(float(value))

    return CharSpec(
        characteristic,
        source.state_topic,
        derived,
        describe={"derived_from": source.characteristic},
    )


#: Binary sensor device classes HomeKit shows: service, characteristic, (on, off) values.
BINARY_CLASSES: Mapping[str, tuple[str, str, HapValue, HapValue]] = {
    "motion": ("MotionSensor", "MotionDetected", True, False),
    "occupancy": ("OccupancySensor", "OccupancyDetected", 1, 0),
    "presence": ("OccupancySensor", "OccupancyDetected", 1, 0),
    # Home Assistant: on means open; HomeKit: 1 means contact not detected (open).
    "door": ("ContactSensor", "ContactSensorState", 1, 0),
    "window": ("ContactSensor", "ContactSensorState", 1, 0),
    "opening": ("ContactSensor", "ContactSensorState", 1, 0),
    "garage_door": ("ContactSensor", "ContactSensorState", 1, 0),
    "moisture": ("LeakSensor", "LeakDetected", 1, 0),
    "smoke": ("SmokeSensor", "SmokeDetected", 1, 0),
    "carbon_monoxide": ("CarbonMonoxideSensor", "CarbonMonoxideDetected", 1, 0),
}


def _binary_sensor(entity: Entity) -> list[ServiceSpec]:
    device_class = entity.config.get("device_class")
    if device_class is None:
        raise Unmappable("a binary_sensor without a device_class has no HomeKit service")
    if str(device_class) not in BINARY_CLASSES:
        raise Unmappable(
            f"HomeKit has no service for a binary_sensor of device_class {device_class}"
        )
    service, characteristic, on_value, off_value = BINARY_CLASSES[str(device_class)]
    state_topic = _topic(entity, "state_topic", required=True)
    template = _template(entity, "value_template")
    payload_on = ha_text(entity.get("payload_on", ON))
    payload_off = ha_text(entity.get("payload_off", OFF))
    off_delay = _off_delay(entity)
    char = CharSpec(
        characteristic,
        state_topic,
        words_reader(template, {payload_on: on_value, payload_off: off_value}),
        describe=_describe(
            state_topic=state_topic,
            value_template=template.text if template else None,
            payload_on=payload_on,
            payload_off=payload_off,
            device_class=str(device_class),
            off_delay=off_delay,
        ),
        reset=ResetAfter(off_delay, off_value) if off_delay else None,
    )
    return [ServiceSpec(service, _slot(entity), (char,))]


def _off_delay(entity: Entity) -> float | None:
    """`off_delay`: seconds after an on state (with no message since) that it turns off."""
    if entity.config.get("off_delay") is None:
        return None
    seconds = _number_option(entity, "off_delay", 0)
    if seconds < 0:
        raise Unmappable(f"off_delay {seconds:g} is negative")
    return seconds


def _cover(entity: Entity) -> list[ServiceSpec]:
    command_topic = _topic(entity, "command_topic")
    retain = bool(entity.get("retain", False))
    position_topic = _topic(entity, "position_topic")
    set_position_topic = _topic(entity, "set_position_topic")
    position_open = _number_option(entity, "position_open", 100)
    position_closed = _number_option(entity, "position_closed", 0)
    span = position_open - position_closed
    if span == 0:
        raise Unmappable("position_open and position_closed are the same")

    def percent(raw: float) -> float:
        return (raw - position_closed) * 100 / span

    if position_topic is not None:
        template = _template(entity, "position_template")
        read: Reader = number_reader(template, percent, clamp=(0, 100))
        state_topic: str | None = position_topic
        described: dict[str, Any] = _describe(
            position_topic=position_topic, position_template=template.text if template else None
        )
    else:
        state_topic = _topic(entity, "state_topic")
        template = _template(entity, "value_template")
        words: dict[str, HapValue] = {
            ha_text(entity.get("state_open", "open")): 100,
            ha_text(entity.get("state_closed", "closed")): 0,
        }
        ignore = frozenset(
            {
                ha_text(entity.get("state_opening", "opening")),
                ha_text(entity.get("state_closing", "closing")),
                ha_text(entity.get("state_stopped", "stopped")),
            }
        )
        read = words_reader(template, words, ignore=ignore)
        described = _describe(state_topic=state_topic, state_words=list(words))
    write: Writer
    if set_position_topic is not None:
        set_template = _template(entity, "set_position_template")

        def write_position(target: HapValue, _: Siblings) -> str:
            position = round(position_closed + float(target) * span / 100)
            if set_template is None:
                return str(position)
            return set_template.render(position=position, value=position)

        write = write_position
        target_topic: str | None = set_position_topic
        described["set_position_topic"] = set_position_topic
    elif command_topic is not None:
        payload_open = ha_text(entity.get("payload_open", "OPEN"))
        payload_close = ha_text(entity.get("payload_close", "CLOSE"))
        command = _template(entity, "command_template")
        write = command_writer(
            command, lambda target: payload_open if float(target) >= 50 else payload_close
        )
        target_topic = command_topic
        described.update(
            command_topic=command_topic, payload_open=payload_open, payload_close=payload_close
        )
    else:
        raise Unmappable("cover without set_position_topic or command_topic")
    if state_topic is None:
        raise Unmappable("cover without position_topic or state_topic")
    chars = (
        CharSpec("CurrentPosition", state_topic, read, describe=described),
        CharSpec(
            "TargetPosition", state_topic, read, target_topic, write, retain, describe=described
        ),
        CharSpec("PositionState", initial=2, describe={"value": "stopped"}),
    )
    return [ServiceSpec("WindowCovering", _slot(entity), chars)]


def _lock(entity: Entity) -> list[ServiceSpec]:
    state_topic = _topic(entity, "state_topic", required=True)
    command_topic = _topic(entity, "command_topic", required=True)
    template = _template(entity, "value_template")
    command = _template(entity, "command_template")
    locked = ha_text(entity.get("state_locked", "LOCKED"))
    unlocked = ha_text(entity.get("state_unlocked", "UNLOCKED"))
    jammed = ha_text(entity.get("state_jammed", "JAMMED"))
    locking = ha_text(entity.get("state_locking", "LOCKING"))
    unlocking = ha_text(entity.get("state_unlocking", "UNLOCKING"))
    payload_lock = ha_text(entity.get("payload_lock", "LOCK"))
    payload_unlock = ha_text(entity.get("payload_unlock", "UNLOCK"))
    described = _describe(
        state_topic=state_topic,
        command_topic=command_topic,
        payload_lock=payload_lock,
        payload_unlock=payload_unlock,
    )
    current = words_reader(
        template, {locked: 1, unlocked: 0, jammed: 2}, ignore=frozenset({locking, unlocking})
    )
    target = words_reader(
        template, {locked: 1, locking: 1, unlocked: 0, unlocking: 0}, ignore=frozenset({jammed})
    )
    chars = (
        CharSpec("LockCurrentState", state_topic, current, describe=described),
        CharSpec(
            "LockTargetState",
            state_topic,
            target,
            command_topic,
            command_writer(command, lambda value: payload_lock if value else payload_unlock),
            bool(entity.get("retain", False)),
            describe=described,
        ),
    )
    return [ServiceSpec("LockMechanism", _slot(entity), chars)]


def _fan(entity: Entity) -> list[ServiceSpec]:
    chars = [_on_characteristic(entity, "state_topic", "state_value_template")]
    state_topic = _topic(entity, "percentage_state_topic")
    command_topic = _topic(entity, "percentage_command_topic")
    if state_topic or command_topic:
        low = _number_option(entity, "speed_range_min", 1)
        high = _number_option(entity, "speed_range_max", 100)
        if high <= low:
            raise Unmappable("speed_range_max is not above speed_range_min")
        template = _template(entity, "percentage_value_template")
        command = _template(entity, "percentage_command_template")

        def percent(raw: float) -> float:
            return 0.0 if raw <= 0 else (raw - low + 1) * 100 / (high - low + 1)

        def device_speed(value: HapValue) -> int:
            if float(value) <= 0:
                return 0
            return math.ceil(float(value) * (high - low + 1) / 100) + round(low) - 1

        chars.append(
            _controlled(
                "RotationSpeed",
                (state_topic, command_topic),
                number_reader(template, percent, clamp=(0, 100)),
                command_writer(command, device_speed),
                bool(entity.get("retain", False)),
                optimistic=100,
                describe=_describe(
                    state_topic=state_topic, command_topic=command_topic, speed_range=[low, high]
                ),
            )
        )
    return [ServiceSpec("Fan", _slot(entity), tuple(chars))]


#: Home Assistant HVAC modes <-> HomeKit TargetHeatingCoolingState.
HVAC_TARGET: Mapping[str, int] = {"off": 0, "heat": 1, "cool": 2, "auto": 3, "heat_cool": 3}
#: Home Assistant HVAC actions -> HomeKit CurrentHeatingCoolingState.
HVAC_CURRENT: Mapping[str, int] = {
    "off": 0,
    "idle": 0,
    "fan": 0,
    "drying": 0,
    "heating": 1,
    "preheating": 1,
    "cooling": 2,
}


def _climate(entity: Entity) -> list[ServiceSpec]:
    retain = bool(entity.get("retain", False))
    unit = str(entity.config.get("temperature_unit", "C")).upper().lstrip("°")
    to_celsius: Callable[[float], float] = (
        (lambda value: (value - 32) * 5 / 9) if unit == "F" else float
    )

    def from_celsius(value: HapValue) -> float:
        celsius = float(value)
        return round(celsius * 9 / 5 + 32, 1) if unit == "F" else celsius

    modes = [str(mode) for mode in entity.config.get("modes") or list(HVAC_TARGET)]
    auto_word = "auto" if "auto" in modes else "heat_cool"
    target_modes = tuple(sorted({HVAC_TARGET[mode] for mode in modes if mode in HVAC_TARGET}))
    chars: list[CharSpec] = [
        CharSpec("TemperatureDisplayUnits", initial=0, describe={"value": "celsius"})
    ]
    current_topic = _topic(entity, "current_temperature_topic")
    if current_topic:
        template = _template(entity, "current_temperature_template")
        chars.append(
            CharSpec(
                "CurrentTemperature",
                current_topic,
                number_reader(template, to_celsius, clamp=(-273.1, 1000)),
                describe=_describe(state_topic=current_topic),
            )
        )
    target_state = _topic(entity, "temperature_state_topic")
    target_command = _topic(entity, "temperature_command_topic")
    if target_state or target_command:
        template = _template(entity, "temperature_state_template")
        command = _template(entity, "temperature_command_template")
        chars.append(
            _controlled(
                "TargetTemperature",
                (target_state, target_command),
                number_reader(template, to_celsius, clamp=(10, 38)),
                command_writer(command, from_celsius),
                retain,
                optimistic=20.0,
                describe=_describe(state_topic=target_state, command_topic=target_command),
                narrowing=_target_range(entity, to_celsius, fahrenheit=unit == "F"),
            )
        )
    mode_state = _topic(entity, "mode_state_topic")
    mode_command = _topic(entity, "mode_command_topic")
    mode_template = _template(entity, "mode_state_template")
    if mode_state or mode_command:
        if not target_modes:
            raise Unmappable(f"none of its modes {modes} is off, heat, cool or auto")
        command = _template(entity, "mode_command_template")
        words = {mode: value for mode, value in HVAC_TARGET.items() if mode in modes}
        names = {0: "off", 1: "heat", 2: "cool", 3: auto_word}
        chars.append(
            _controlled(
                "TargetHeatingCoolingState",
                (mode_state, mode_command),
                words_reader(mode_template, words, ignore=frozenset(modes) - set(words)),
                command_writer(command, lambda value: names[int(value)]),
                retain,
                optimistic=target_modes[0],
                describe=_describe(state_topic=mode_state, command_topic=mode_command, modes=modes),
                # The Home app offers only these (a radiator valve: off and heat).
                narrowing=Narrowing(valid_values=target_modes),
            )
        )
    action_topic = _topic(entity, "action_topic")
    if action_topic:
        template = _template(entity, "action_template")
        chars.append(
            CharSpec(
                "CurrentHeatingCoolingState",
                action_topic,
                words_reader(template, dict(HVAC_CURRENT)),
                describe=_describe(state_topic=action_topic),
            )
        )
    elif mode_state:
        # Without an action topic, what the thermostat does is read from its mode.
        derived = {"off": 0, "heat": 1, "cool": 2, "auto": 0, "heat_cool": 0}
        chars.append(
            CharSpec(
                "CurrentHeatingCoolingState",
                mode_state,
                words_reader(mode_template, derived, ignore=frozenset(modes) - set(derived)),
                describe={"derived_from": "mode_state_topic"},
            )
        )
    else:
        chars.append(CharSpec("CurrentHeatingCoolingState", initial=0))
    if not (current_topic or target_state or target_command or mode_state or mode_command):
        raise Unmappable("climate without temperature or mode topics")
    return [ServiceSpec("Thermostat", _slot(entity), tuple(chars))]


def _target_range(
    entity: Entity, to_celsius: Callable[[float], float], *, fahrenheit: bool
) -> Narrowing | None:
    """`min_temp`, `max_temp` and `temp_step` (in the entity's unit), when it gives any."""
    given = [key for key in ("min_temp", "max_temp", "temp_step") if key in entity.config]
    if not given:
        return None
    low = _number_option(entity, "min_temp", 7) if "min_temp" in given else None
    high = _number_option(entity, "max_temp", 35) if "max_temp" in given else None
    step = _number_option(entity, "temp_step", 1) if "temp_step" in given else None
    if step is not None and step <= 0:
        raise Unmappable(f"temp_step {step:g} is not positive")
    return Narrowing(
        min_value=None if low is None else round(to_celsius(low), 1),
        max_value=None if high is None else round(to_celsius(high), 1),
        min_step=None if step is None else round(step * 5 / 9 if fahrenheit else step, 2),
    )


#: A trigger's press kind from the words of its type or subtype -> ProgrammableSwitchEvent.
PRESS_WORDS: Mapping[str, int] = {
    "single": 0,
    "short": 0,
    "click": 0,
    "press": 0,
    "double": 1,
    "long": 2,
    "hold": 2,
}
_PRESS = re.compile(r"(?:^|_)(single|short|click|double|long|hold|press)(?:_press|_click)?(?:$|_)")


def _press_kind(text: str) -> tuple[int, str] | None:
    """(ProgrammableSwitchEvent value, the rest naming the button) or None. A release is
    not a press of its own."""
    if "release" in text:
        return None
    match = _PRESS.search(text)
    if match is None:
        return None
    rest = (text[: match.start()] + "_" + text[match.end() :]).strip("_")
    return PRESS_WORDS[match.group(1)], rest


def _trigger(entity: Entity) -> list[ServiceSpec]:
    if str(entity.config.get("automation_type", "trigger")) != "trigger":
        raise Unmappable("a device_automation that is not a trigger")
    topic = _topic(entity, "topic", required=True)
    kind_type = str(entity.config.get("type", ""))
    subtype = str(entity.config.get("subtype", ""))
    found = _press_kind(kind_type)
    if found is not None:
        press, button = found[0], subtype or found[1]
    else:
        found = _press_kind(subtype)
        if found is None:
            raise Unmappable(f"trigger {kind_type}/{subtype} is not a single, double or long press")
        press, button = found[0], f"{kind_type}_{found[1]}".strip("_")
    template = _template(entity, "value_template")
    payload = entity.config.get("payload")
    read_text = text_reader(template)

    def read(view: PayloadView) -> Any:
        text = read_text(view)
        if text is Skip.NOTHING or (payload is not None and text != ha_text(payload)):
            return Skip.NOTHING
        return press

    char = CharSpec(
        "ProgrammableSwitchEvent",
        topic,
        read,
        initial=0,
        describe=_describe(
            topic=topic, payload=payload, press=press, type=kind_type, subtype=subtype
        ),
    )
    return [ServiceSpec("StatelessProgrammableSwitch", f"button:{button}", (char,))]


COMPONENTS: Mapping[str, Callable[[Entity], list[ServiceSpec]]] = {
    "switch": _switch,
    "light": _light,
    "sensor": _sensor,
    "binary_sensor": _binary_sensor,
    "cover": _cover,
    "lock": _lock,
    "fan": _fan,
    "climate": _climate,
    "device_automation": _trigger,
}


def plan_entity(entity: Entity) -> EntityPlan:
    """The HomeKit services of an entity; Unmappable says why there are none."""
    plan = COMPONENTS.get(entity.component)
    if plan is None:
        raise Unmappable(f"HomeKit has no service for the {entity.component!r} component")
    if entity.config.get("enabled_by_default") is False:
        raise Unmappable("disabled by default (a diagnostic entity)")
    services = plan(entity)
    bindings, mode = availability(entity)
    return EntityPlan(tuple(services), bindings, mode, _expire_after(entity))


def _expire_after(entity: Entity) -> float | None:
    if not entity.config.get("expire_after"):
        return None  # absent, or Home Assistant's 0: never
    seconds = _number_option(entity, "expire_after", 0)
    if seconds < 0:
        raise Unmappable(f"expire_after {seconds:g} is negative")
    return seconds
