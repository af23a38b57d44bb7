"""The body of every `bridge/request/<action>`: one voluptuous schema per action.

A request is checked against its action's schema before its handler runs, so a missing,
unknown or wrong-typed field is refused with its name and nothing changes. docs/api.md is
the prose of this module; a test holds the two together. `transaction` may be in any body
(any JSON value, echoed in the response) and is not part of these schemas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import voluptuous as vol

from . import const
from .config import COMMAND_TOPIC_SAME, COMMAND_TOPIC_SET

#: The field every request may carry, echoed in its response.
TRANSACTION: Final = "transaction"
#: Longest `timeout` a request may ask for: an answer later than this is no answer.
MAX_REQUEST_WAIT = 60.0
#: Per-device options a `device/options` request may set (and `reset`).
DEVICE_OPTION_KEYS: Final = ("expire_after", "command_topic", "retain_commands", "bridge")
MAX_SHOWN_FIELD = 64


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid("must be a non-empty string")
    return value.strip()


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise vol.Invalid("must be true or false")
    return value


def _seconds(value: Any) -> float:
    # bool is an int in Python, but `true` seconds is a mistake in a request.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise vol.Invalid("must be a number of seconds")
    if not 0 <= value <= 10**9:
        raise vol.Invalid("must be between 0 and 1000000000 seconds")
    return float(value)


def _wait(value: Any) -> float:
    seconds = _seconds(value)
    if seconds > MAX_REQUEST_WAIT:
        raise vol.Invalid(f"must be at most {MAX_REQUEST_WAIT:g} seconds")
    return seconds


def _name(value: Any) -> str:
    text = _text(value)
    if len(text) > 64:
        raise vol.Invalid("must be at most 64 characters")
    return text


def _expire_after(value: Any) -> float | None:
    return None if value is None else _seconds(value)


def _command_topic(value: Any) -> str:
    if value not in (COMMAND_TOPIC_SET, COMMAND_TOPIC_SAME):
        raise vol.Invalid(f"must be {COMMAND_TOPIC_SET!r} or {COMMAND_TOPIC_SAME!r}")
    return str(value)


def _bridge_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise vol.Invalid("must be a bridge number (1, 2, ...)")
    if not 1 <= value <= const.MAX_HAP_BRIDGES:
        raise vol.Invalid(f"must be between 1 and {const.MAX_HAP_BRIDGES}")
    return value


def _option_names(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(item in DEVICE_OPTION_KEYS for item in value):
        raise vol.Invalid(f"must be a list of option names ({', '.join(DEVICE_OPTION_KEYS)})")
    return list(dict.fromkeys(value))


def _body(fields: Mapping[Any, Any]) -> vol.Schema:
    return vol.Schema(dict(fields), extra=vol.PREVENT_EXTRA)


_EMPTY = _body({})

SCHEMAS: Final[Mapping[str, vol.Schema]] = {
    # The controller side: HomeKit accessories the bridge pairs with (docs/controller.md).
    "discover": _body({vol.Optional("timeout"): _wait}),
    "pair": _body(
        {
            vol.Required("device_id"): _text,
            vol.Required("setup_code"): _text,
            vol.Required("alias"): _text,
            vol.Optional("timeout"): _wait,
        }
    ),
    "unpair": _body({vol.Required("alias"): _text, vol.Optional("force"): _flag}),
    "list-pairings": _EMPTY,
    # The accessory side: MQTT devices shown in the Home app.
    "device/remove": _body({vol.Required("id"): _text}),
    "device/rename": _body({vol.Required("id"): _text, vol.Required("name"): _name}),
    "device/options": _body(
        {
            vol.Required("id"): _text,
            vol.Optional("expire_after"): _expire_after,
            vol.Optional("command_topic"): _command_topic,
            vol.Optional("retain_commands"): _flag,
            vol.Optional("bridge"): _bridge_number,
            vol.Optional("reset"): _option_names,
        }
    ),
    # The bridge itself.
    "health_check": _EMPTY,
    "info": _EMPTY,
    "restart": _EMPTY,
}


class RequestInvalid(ValueError):
    """A request body its schema refuses; `field` names the first field at fault."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


def validate(action: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body as its handler gets it (without `transaction`), or RequestInvalid."""
    fields = {key: value for key, value in body.items() if key != TRANSACTION}
    try:
        return dict(SCHEMAS[action](fields))
    except vol.MultipleInvalid as err:
        first = sorted(err.errors, key=lambda error: [str(part) for part in error.path])[0]
        raise _invalid(first) from None
    except vol.Invalid as err:
        raise _invalid(err) from None


def _invalid(error: vol.Invalid) -> RequestInvalid:
    # A field name is user input: quote at most so much of it.
    field = ".".join(str(part) for part in error.path)[:MAX_SHOWN_FIELD] or None
    if error.msg == "extra keys not allowed":
        message = "unknown field"
    elif error.msg == "required key not provided":
        message = "missing"
    else:
        message = error.msg
    if field is None:
        return RequestInvalid(message, None)
    return RequestInvalid(f"field {field!r}: {message}", field)
