"""The documentation a newcomer reads matches the code: every bridge.yaml key is a row of the
one table in docs/configuration.md (a stray blank line ends a Markdown table, and the rows
after it render as plain text)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import voluptuous as vol

from mqtt_hk_bridge.config import SCHEMA, mapping_in

REPO = Path(__file__).resolve().parents[2]


def schema_keys(schema: Any, prefix: str = "") -> set[str]:
    """Every leaf key of the voluptuous schema as a dotted path (`devices.<id>.name`); a
    section that may also be given whole (`mqtt.tls: {}`) is a key of its own too."""
    mapping = mapping_in(schema)
    if mapping is None:
        return {prefix}
    keys: set[str] = {prefix} if isinstance(schema, vol.Any) else set()
    for marker, value in mapping.items():
        name = marker.schema if isinstance(marker, vol.Marker) else "<id>"
        keys |= schema_keys(value, f"{prefix}.{name}" if prefix else str(name))
    return keys


def documented_keys(markdown: str) -> set[str]:
    """The keys in the first column of the table that starts with `| Key |`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Key |"))
    keys: set[str] = set()
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break  # the table ends here, whatever follows
        previous = ""
        for token in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if token.startswith("."):
                token = previous.rsplit(".", 1)[0] + token
            keys.add(token)
            previous = token
    return keys


def test_every_key_is_a_row_of_the_configuration_table() -> None:
    documented = documented_keys((REPO / "docs/configuration.md").read_text(encoding="utf-8"))
    assert schema_keys(SCHEMA) - documented == set()
    assert documented - schema_keys(SCHEMA) == set()
