"""Home Assistant's `value_template` and `command_template`, evaluated in jinja2's sandbox.

Discovery configs come from anyone who may publish on the broker, so templates run in
jinja2's immutable sandbox, with a bounded length, a bounded `range`, bounded `*` and `**`,
and no nested loops. The filters Home
Assistant adds that device firmwares use are provided (`float`, `int`, `bool`, `iif`,
`from_json`/`to_json`, `is_number`, `regex_findall`...), with its semantics: `float` and
`int` without a default raise on a value that is not a number, and the template is
refused rather than read as 0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from jinja2 import ChainableUndefined, TemplateError, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import PayloadError
from .transforms import PayloadView

#: Longest template we compile; Zigbee2MQTT's longest (its action event) is about 1.5 kB.
MAX_TEMPLATE_LENGTH = 4096
#: Longest `range()` a template may loop over (jinja2's own cap is 100 000).
MAX_RANGE = 256
#: Longest rendered result kept: every value we read fits, a runaway render does not.
MAX_RESULT_LENGTH = 4096
#: Largest exponent of `**` (a power of ten has this many digits at most).
MAX_EXPONENT = 64
#: Longest template quoted in an error message.
MAX_SHOWN_TEMPLATE = 60

_NO_DEFAULT: Any = object()


def _number(kind: type[float] | type[int], value: Any, default: Any, base: int = 10) -> Any:
    try:
        if kind is int and isinstance(value, str) and base != 10:
            return int(value, base)
        return kind(float(value)) if kind is int and isinstance(value, str) else kind(value)
    except (TypeError, ValueError, OverflowError):
        if default is _NO_DEFAULT:
            raise ValueError(f"{str(value)[:40]!r} is not a number") from None
        return default


def _float(value: Any, default: Any = _NO_DEFAULT) -> Any:
    return _number(float, value, default)


def _int(value: Any, default: Any = _NO_DEFAULT, base: int = 10) -> Any:
    return _number(int, value, default, base)


def _bool(value: Any, default: Any = _NO_DEFAULT) -> Any:
    word = str(value).strip().lower()
    if isinstance(value, bool):
        return value
    if word in ("1", "true", "on", "yes", "enable"):
        return True
    if word in ("0", "false", "off", "no", "disable"):
        return False
    if default is _NO_DEFAULT:
        raise ValueError(f"{str(value)[:40]!r} is not a boolean")
    return default


def _iif(value: Any, if_true: Any = True, if_false: Any = False, if_none: Any = _NO_DEFAULT) -> Any:
    if value is None and if_none is not _NO_DEFAULT:
        return if_none
    return if_true if value else if_false


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return not isinstance(value, bool)


def _regex_findall(value: Any, pattern: str, ignorecase: bool = False) -> list[Any]:
    return re.findall(pattern, str(value), re.IGNORECASE if ignorecase else 0)


def _bounded_range(*args: int) -> Iterator[int]:
    values = range(*args)
    if len(values) > MAX_RANGE:
        raise ValueError(f"range() of more than {MAX_RANGE} items")
    return iter(values)


class _Sandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox, with `*` and `**` bounded: `'x' * 10**9` or `9 ** 9 ** 9`
    in a published config must not take the bridge's memory or its event loop."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _is_big_power(left, right):
            raise SecurityError("a power too large for a template")
        if operator == "*" and _repeats_too_much(left, right):
            raise SecurityError(f"a repetition longer than {MAX_RESULT_LENGTH} items")
        return super().call_binop(context, operator, left, right)


def _is_big_power(base: Any, exponent: Any) -> bool:
    numbers = isinstance(base, int | float) and isinstance(exponent, int | float)
    return numbers and abs(exponent) > MAX_EXPONENT and abs(base) > 1


def _repeats_too_much(left: Any, right: Any) -> bool:
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(count, int):
            return len(sequence) * count > MAX_RESULT_LENGTH
    return False


def _nested_loop(template: nodes.Template) -> bool:
    return any(
        inner is not outer
        for outer in template.find_all(nodes.For)
        for inner in outer.find_all(nodes.For)
    )


def _environment() -> ImmutableSandboxedEnvironment:
    env = _Sandbox(undefined=ChainableUndefined, autoescape=False)
    helpers = {
        "float": _float,
        "int": _int,
        "bool": _bool,
        "iif": _iif,
        "is_number": _is_number,
        "from_json": json.loads,
        "to_json": lambda value: json.dumps(value, separators=(",", ":")),
        "regex_findall": _regex_findall,
    }
    env.filters.update(helpers)
    env.globals.update({**helpers, "range": _bounded_range})
    env.tests["is_number"] = _is_number
    return env


_ENV = _environment()


def _shown(text: str) -> str:
    return text if len(text) <= MAX_SHOWN_TEMPLATE else f"{text[:MAX_SHOWN_TEMPLATE]}..."


class Template:
    """One compiled template; raises ValueError at compile time when it cannot be used."""

    def __init__(self, text: str) -> None:
        if len(text) > MAX_TEMPLATE_LENGTH:
            raise ValueError(f"template longer than {MAX_TEMPLATE_LENGTH} characters")
        self.text = text
        try:
            parsed = _ENV.parse(text)
            self._template = _ENV.from_string(parsed)
        except TemplateError as err:
            raise ValueError(f"template {_shown(text)!r} cannot be read: {err}") from err
        if _nested_loop(parsed):
            raise ValueError(f"template {_shown(text)!r} nests loops, which we do not run")

    def render(self, **variables: Any) -> str:
        """The rendered text, stripped; PayloadError (naming the template) when it fails."""
        try:
            result = self._template.render(**variables)
        except Exception as err:
            raise PayloadError(f"template {_shown(self.text)!r} failed: {err}") from err
        if len(result) > MAX_RESULT_LENGTH:
            raise PayloadError(f"template {_shown(self.text)!r} rendered too much text")
        return result.strip()

    def render_payload(self, view: PayloadView) -> str:
        """A value template: `value` is the payload's text, `value_json` its JSON if any."""
        try:
            document = view.document
        except PayloadError:
            return self.render(value=view.text)
        return self.render(value=view.text, value_json=document)

    def __repr__(self) -> str:
        return f"Template({_shown(self.text)!r})"
