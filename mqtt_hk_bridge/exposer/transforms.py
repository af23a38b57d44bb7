"""How a mapped characteristic reads a device's payload and writes its commands: a JSON
path, a value map, scale and offset, a command template. Pure functions, no I/O.

Reading: payload -> (JSON path) -> (value map) -> (scale, offset) -> the HAP value, checked
by `payloads.coerce`. Writing runs the same steps backwards: HAP value -> (value map) ->
(scale, offset undone) -> text -> (command template) -> payload.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import PayloadError
from ..mqtt.payloads import HapValue, encode, json_document, payload_text

#: What a command template's `{value}` is replaced with.
VALUE_PLACEHOLDER = "{value}"
#: Decimals a scaled float keeps on its way to the device (a device never needs more).
COMMAND_DECIMALS = 3
#: Longest JSON path we accept: a path is typed by a person, not generated.
MAX_PATH_LENGTH = 256

_STEP = re.compile(
    r"""\.(?P<name>[^.\[\]]+)          # .name
      | \[(?P<index>\d{1,6})\]          # [0]
      | \['(?P<single>[^']*)'\]         # ['name with . or spaces']
      | \["(?P<double>[^"]*)"\]         # ["name"]
    """,
    re.VERBOSE,
)


class PayloadView:
    """One MQTT payload, decoded at most once as text and once as JSON, however many
    characteristics read it (several may share one state topic)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self._text: str | None = None
        self._document: Any = None
        self._parsed = False

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = payload_text(self.payload)
        return self._text

    @property
    def document(self) -> Any:
        if not self._parsed:
            self._document = json_document(self.text)
            self._parsed = True
        return self._document


@dataclass(frozen=True)
class JsonPath:
    """A small JSONPath subset: `$`, `.name`, `[0]`, `['name']`; no wildcards or filters."""

    text: str
    steps: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: str) -> JsonPath:
        """Raises ValueError saying what is wrong."""
        if len(text) > MAX_PATH_LENGTH:
            raise ValueError(f"a JSON path is at most {MAX_PATH_LENGTH} characters")
        if not text.startswith("$"):
            raise ValueError(
                f"a JSON path starts with $ (like $.state or $.AM2301.Temperature), "
                f"not {text[:20]!r}"
            )
        steps: list[str | int] = []
        position = 1
        while position < len(text):
            match = _STEP.match(text, position)
            if match is None:
                raise ValueError(
                    f"cannot read {text!r} at character {position + 1}: use .name, [0] or ['name']"
                )
            if match["index"] is not None:
                steps.append(int(match["index"]))
            else:
                steps.append(match["name"] or match["single"] or match["double"] or "")
            position = match.end()
        return cls(text, tuple(steps))

    def read(self, document: Any) -> Any:
        """The value at the path; PayloadError when the document has nothing there."""
        value = document
        for step in self.steps:
            if isinstance(step, int):
                found = isinstance(value, list) and step < len(value)
            else:
                found = isinstance(value, dict) and step in value
            if not found:
                raise PayloadError(f"the payload has no {self.text}")
            value = value[step]
        return value

    def __str__(self) -> str:
        return self.text


def device_word(raw: Any) -> str:
    """A device value as the text a value map is keyed by (JSON `true` -> `true`)."""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if raw is None:
        return "null"
    if isinstance(raw, str):
        return raw
    return encode(raw)


class ValueMap:
    """Device words <-> HAP values: `ON` -> true, `open` -> 1 (ContactSensorState).

    Reading looks a word up exactly, then ignoring case. Writing uses `to_device` when
    given, otherwise the first word that reads as the value.
    """

    def __init__(
        self, to_hap: Mapping[str, HapValue], to_device: Mapping[HapValue, str] | None = None
    ) -> None:
        self.to_hap = dict(to_hap)
        reverse: dict[HapValue, str] = {}
        for word, value in self.to_hap.items():
            reverse.setdefault(value, word)
        self.to_device = dict(to_device) if to_device else reverse
        self._folded = {word.casefold(): value for word, value in self.to_hap.items()}

    def read(self, raw: Any) -> HapValue:
        word = device_word(raw)
        found = self.to_hap.get(word)
        if found is None:
            found = self._folded.get(word.casefold())
        if found is None:
            known = ", ".join(repr(key) for key in self.to_hap)
            raise PayloadError(f"{word[:40]!r} is not in the value map ({known})")
        return found

    def write(self, value: HapValue) -> str:
        if value in self.to_device:
            return self.to_device[value]
        raise PayloadError(f"the value map has no device word for {value!r}")


@dataclass(frozen=True)
class Linear:
    """HAP value = device value * scale + offset (brightness 0-254 -> 0-100: scale 100/254)."""

    scale: float = 1.0
    offset: float = 0.0

    def read(self, raw: Any) -> float:
        if isinstance(raw, bool):
            raise PayloadError("scale and offset take a number, not a boolean")
        try:
            number = float(raw)
        except (TypeError, ValueError, OverflowError) as err:
            raise PayloadError(f"{str(raw)[:40]!r} is not a number") from err
        if not math.isfinite(number):
            raise PayloadError(f"{raw!r} is not a finite number")
        return number * self.scale + self.offset

    def write(self, value: HapValue, integral: bool) -> int | float:
        """The device value for a HAP value; whole numbers for an integer characteristic."""
        number = (float(value) - self.offset) / self.scale
        if integral:
            return round(number)
        rounded = round(number, COMMAND_DECIMALS)
        return int(rounded) if rounded.is_integer() else rounded


def render_command(template: str | None, value: Any) -> str:
    """The command payload: the value's text, put into the template at `{value}`."""
    text = device_word(value)
    return text if template is None else template.replace(VALUE_PLACEHOLDER, text)
