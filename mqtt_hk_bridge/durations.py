"""Durations in bridge.yaml: seconds as a number (`300`, `0.5`) or with units (`"5m"`,
`"1h30m"`, `"90s"`, `"250ms"`), the way people write them. Every message says what is allowed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import voluptuous as vol

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")


def parse_duration(value: Any) -> float:
    """Seconds from `300`, `"300"`, `"5m"`, `"1h30m"`...; ValueError when it is none of them."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            if not _WHOLE.match(text):
                raise ValueError(f"{value!r} is not a duration") from None
            seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration")
    return seconds


def _example(minimum: float) -> str:
    return '300 or "5m"' if minimum >= 1 else '0.5 or "500ms"'


def duration(
    minimum: float, *, off: bool = False, never: bool = False
) -> Callable[[Any], float | None]:
    """A voluptuous validator: a duration of at least `minimum` seconds. With `off`, 0 is
    allowed too (the setting is then turned off); with `never`, null (no limit)."""
    allowed = f"a duration >= {minimum:g} s, e.g. {_example(minimum)}"
    if off:
        allowed += ", or 0 to turn it off"
    if never:
        allowed += ", or null for never"

    def validate(value: Any) -> float | None:
        if value is None and never:
            return None
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise vol.Invalid(f"expected {allowed}; got {value!r}") from None
        if seconds < minimum and not (off and seconds == 0):
            raise vol.Invalid(f"expected {allowed}; got {value!r}")
        return seconds

    return validate
