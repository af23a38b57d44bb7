"""What a device can do of a characteristic, where that is less than HomeKit's range: the
modes of a heating-only thermostat (off and heat, no cool or auto), a radiator valve's
15-30 °C in 0.5 steps. The Home app then offers only what the device takes; a value the
device reports outside it is refused (a mode) or brought into it (a number).

Always within the catalog's own range: HomeKit's is never widened (a controller may refuse
a value its specification does not allow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import PayloadError
from ..homekit.catalog import INTEGER_FORMATS, CharInfo
from ..mqtt.payloads import HapValue


@dataclass(frozen=True)
class Narrowing:
    valid_values: tuple[int, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None
    min_step: float | None = None

    def within(self, info: CharInfo) -> Narrowing:
        """This narrowing inside the characteristic's own range and values."""
        valid = self.valid_values
        if valid is not None and info.valid_values is not None:
            valid = tuple(value for value in valid if value in info.valid_values)
        low = _bounded(self.min_value, info.min_value, info.max_value)
        high = _bounded(self.max_value, info.min_value, info.max_value)
        step = self.min_step
        if step is not None and info.min_step is not None:
            step = max(step, info.min_step)
        return Narrowing(valid or None, low, high, step)

    def check(self, value: HapValue) -> HapValue:
        """A value the device reported: a number brought into the range, a value that is
        not one of the valid values refused (PayloadError)."""
        if self.valid_values is not None and value not in self.valid_values:
            allowed = ", ".join(str(valid) for valid in self.valid_values)
            raise PayloadError(f"{value!r} is not one the device takes ({allowed})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value
        if self.min_value is not None and value < self.min_value:
            return type(value)(self.min_value)
        if self.max_value is not None and value > self.max_value:
            return type(value)(self.max_value)
        return value

    def allows(self, value: HapValue) -> bool:
        try:
            return self.check(value) == value
        except PayloadError:
            return False

    def neutral(self, info: CharInfo) -> HapValue | None:
        """The value to start from when HomeKit's own (off, the lowest) is not allowed."""
        if self.valid_values:
            return self.valid_values[0]
        if self.min_value is not None:
            integral = info.format in INTEGER_FORMATS
            return int(self.min_value) if integral else float(self.min_value)
        return None

    def hap_properties(self) -> tuple[dict[str, float], dict[str, int]]:
        """HAP-python's property overrides (minValue, maxValue, minStep) and valid values."""
        properties = {
            name: value
            for name, value in (
                ("minValue", self.min_value),
                ("maxValue", self.max_value),
                ("minStep", self.min_step),
            )
            if value is not None
        }
        valid = {str(value): value for value in self.valid_values or ()}
        return properties, valid

    def to_json(self) -> dict[str, Any]:
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in vars(self).items()
            if value is not None
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Narrowing:
        valid = data.get("valid_values")
        return cls(
            valid_values=tuple(int(value) for value in valid) if valid is not None else None,
            min_value=_number(data.get("min_value")),
            max_value=_number(data.get("max_value")),
            min_step=_number(data.get("min_step")),
        )


def _bounded(value: float | None, low: float | None, high: float | None) -> float | None:
    if value is None:
        return None
    if low is not None:
        value = max(value, low)
    if high is not None:
        value = min(value, high)
    return value


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
