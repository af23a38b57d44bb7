"""Payload bytes <-> typed HAP values, pure functions.

Loose about what we receive (`1`/`true`/`on`, numbers, strings, JSON scalars, `{"value": x}`),
strict about what we send (booleans `1`/`0`, plain decimals, raw UTF-8, base64 for tlv8/data;
a string that would not read back as itself, the empty one first, as a JSON string).
Everything a HAP-python characteristic would clamp silently (NaN, inf, out of range, invalid
enum) is refused here, before it reaches HAP-python.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from decimal import Decimal
from typing import Any

from .. import const
from ..display import quoted
from ..errors import PayloadError
from ..homekit.catalog import FORMAT_RANGES, INTEGER_FORMATS, NUMERIC_FORMATS, CharInfo

HapValue = bool | int | float | str

TRUE_WORDS = frozenset({"1", "true", "on", "yes"})
FALSE_WORDS = frozenset({"0", "false", "off", "no"})
BOM = "\ufeff"


def payload_text(payload: bytes) -> str:
    """The payload as trimmed text; refuses oversized, non-UTF-8 and NUL-bearing payloads."""
    if len(payload) > const.MAX_PAYLOAD_BYTES:
        raise PayloadError(
            f"payload of {len(payload)} bytes is over the {const.MAX_PAYLOAD_BYTES}-byte limit"
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PayloadError(f"payload is not UTF-8 ({err.reason} at byte {err.start})") from err
    if "\x00" in text:
        raise PayloadError("payload contains a NUL byte")
    return text.removeprefix(BOM).strip()


def _json_depth_ok(text: str) -> bool:
    """True when brackets nest no deeper than MAX_JSON_DEPTH (checked before parsing)."""
    depth = 0
    for char in text:
        if char in "[{":
            depth += 1
            if depth > const.MAX_JSON_DEPTH:
                return False
        elif char in "]}":
            depth -= 1
    return True


def json_document(text: str) -> Any:
    """A whole JSON payload (object, list or scalar), depth-checked before parsing."""
    if not _json_depth_ok(text):
        raise PayloadError(f"JSON nested deeper than {const.MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise PayloadError(f"payload is not JSON ({err.msg} at character {err.pos})") from err
    except ValueError as err:  # a number too long for int()
        raise PayloadError(f"payload is not usable JSON ({err})") from err


def _unwrap(text: str) -> Any:
    """A JSON scalar or `{"value": x}` as its Python value; anything else as the plain text."""
    if not text or (text[0] not in '[{"' and text not in ("true", "false", "null")):
        return text
    if not _json_depth_ok(text):
        raise PayloadError(f"JSON nested deeper than {const.MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict):
        if set(value) != {"value"}:
            raise PayloadError('a JSON object payload must be {"value": ...}')
        value = value["value"]
    if isinstance(value, list | dict) or value is None:
        raise PayloadError("payload must be a single value, not a JSON list, object or null")
    return value


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float) and raw in (0, 1):
        return bool(raw)
    word = str(raw).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise PayloadError(f"{quoted(str(raw))} is not a boolean (use 1/0, true/false or on/off)")


def _to_number(raw: Any, info: CharInfo) -> int | float:
    if isinstance(raw, bool):
        raise PayloadError(f"{info.name} takes a number, not a boolean")
    try:
        # float() also for ints: a 400-digit JSON integer must be refused, not raise
        # OverflowError out of math.isfinite.
        number: float = float(raw)
    except (ValueError, TypeError) as err:
        raise PayloadError(f"{quoted(str(raw))} is not a number") from err
    except OverflowError as err:
        raise PayloadError(f"{info.name} must be a finite number") from err
    if not math.isfinite(number):
        raise PayloadError(f"{info.name} must be a finite number, not {quoted(str(raw))}")
    if info.valid_values is not None:
        if number != int(number) or int(number) not in info.valid_values:
            raise PayloadError(
                f"{number:g} is not a valid {info.name} (valid: "
                f"{', '.join(str(v) for v in info.valid_values)})"
            )
        return int(number)
    low, high = info.min_value, info.max_value
    if info.format in INTEGER_FORMATS:
        format_low, format_high = FORMAT_RANGES[info.format]
        low = format_low if low is None else low
        high = format_high if high is None else high
    if (low is not None and number < low) or (high is not None and number > high):
        raise PayloadError(
            f"{number:g} is outside {info.name}'s range {low:g}..{high:g}"
            if low is not None and high is not None
            else f"{number:g} is out of range for {info.name}"
        )
    if info.min_step:
        base = low if low is not None else 0
        number = base + round((number - base) / info.min_step) * info.min_step
        number = round(number, 10)
    if info.format in INTEGER_FORMATS:
        return round(number)
    return float(number)


def decode(payload: bytes, info: CharInfo) -> HapValue:
    """The value a device published, checked against the characteristic's format and range."""
    text = payload_text(payload)
    if not text:
        raise PayloadError("empty payload")
    return coerce(_unwrap(text), info)


def coerce(raw: Any, info: CharInfo) -> HapValue:
    """`raw` (text or a JSON scalar) as a valid value of the characteristic, or PayloadError."""
    if info.format == "bool":
        return _to_bool(raw)
    if info.format in NUMERIC_FORMATS:
        return _to_number(raw, info)
    value = raw if isinstance(raw, str) else json.dumps(raw)
    if info.format == "string":
        if len(value) > info.max_len:
            raise PayloadError(f"{info.name} is at most {info.max_len} characters")
        return value
    if info.format in ("tlv8", "data"):
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as err:
            raise PayloadError(f"{info.name} ({info.format}) takes base64") from err
        return value
    raise PayloadError(f"{info.name} has format {info.format}, which MQTT cannot set")


def encode(value: Any) -> str:
    """A HAP value as we publish it."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        if not math.isfinite(value):
            return repr(value)
        # Plain decimal, never an exponent (`1e-05`): repr's shortest digits, positional.
        return format(Decimal(repr(value)), "f")
    if isinstance(value, int):
        return str(value)
    if value is None:
        return ""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, str):
        return value if decodes_as_itself(value) else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"))


def decodes_as_itself(text: str) -> bool:
    """Whether `text`, published raw, reads back as the same string. Not so for the empty
    string (an empty retained payload deletes the topic), text with surrounding white space
    or a byte-order mark (trimmed), and text a reader takes for JSON (`"..."`, `[`, `{`,
    `true`, `false`, `null`): those go out as JSON strings, `""` for the empty one."""
    if not text or text != text.strip() or text.startswith(BOM):
        return False
    return text[0] not in '[{"' and text not in ("true", "false", "null")
