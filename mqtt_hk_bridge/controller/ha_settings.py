"""The `homeassistant:` section of bridge.yaml: Home Assistant MQTT discovery for the
accessories the controller side mirrors (controller/ha_discovery.py). Off by default."""

from __future__ import annotations

from dataclasses import dataclass

import voluptuous as vol

#: Home Assistant's own default discovery prefix.
DEFAULT_PREFIX = "homeassistant"


def _prefix(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in "+#\x00") or text.startswith("/") or text.endswith("/"):
        raise vol.Invalid("must be a topic prefix without + # and without a leading or trailing /")
    return text


SCHEMA = vol.Schema(
    {
        vol.Optional("discovery", default=False): bool,
        vol.Optional("prefix", default=DEFAULT_PREFIX): _prefix,
    },
    extra=vol.PREVENT_EXTRA,
)


@dataclass(frozen=True)
class HomeAssistantSettings:
    discovery: bool = False
    prefix: str = DEFAULT_PREFIX
