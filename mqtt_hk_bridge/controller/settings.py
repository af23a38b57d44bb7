"""The `controller:` section of bridge.yaml: timings of the controller side (aiohomekit).

Kept apart from config.py so the controller side's knobs live with it; config.py embeds
`SCHEMA` and builds `ControllerSettings` from the validated section. Tests shorten them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import voluptuous as vol

from ..durations import duration

_POSITIVE = duration(0.01)

#: File under data_dir holding controller pairings (alias -> keys); 0600, atomic.
DEFAULT_PAIRING_FILE = "controller-pairings.json"
#: `bluetooth: auto`: on when the machine lists a Bluetooth adapter (bluetooth.py).
BLUETOOTH_AUTO: Literal["auto"] = "auto"

SCHEMA = vol.Schema(
    {
        # First retry after a lost connection; doubled per failure with full jitter.
        vol.Optional("reconnect_min", default=1.0): _POSITIVE,
        # Cap of the retry interval: an unplugged accessory costs at most one try per cap.
        vol.Optional("reconnect_max", default=60.0): _POSITIVE,
        # One connection attempt (TCP + pair-verify) may take this long.
        vol.Optional("connect_timeout", default=10.0): _POSITIVE,
        # A read or write that takes longer marks the accessory unreachable.
        vol.Optional("request_timeout", default=10.0): _POSITIVE,
        # Slow full read, for accessories that miss events; 0 turns it off.
        vol.Optional("poll_interval", default=300.0): duration(1.0, off=True),
        # How long `discover` listens and `pair` looks for the device id.
        vol.Optional("discover_timeout", default=5.0): _POSITIVE,
        vol.Optional("pairing_file", default=DEFAULT_PAIRING_FILE): vol.All(str, vol.Length(min=1)),
        # aiohomekit's Bluetooth transport: `auto` loads it only where an adapter is listed.
        vol.Optional("bluetooth", default=BLUETOOTH_AUTO): vol.Any(
            bool, BLUETOOTH_AUTO, msg="expected true, false or auto"
        ),
    },
    extra=vol.PREVENT_EXTRA,
)


@dataclass(frozen=True)
class ControllerSettings:
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    connect_timeout: float = 10.0
    request_timeout: float = 10.0
    poll_interval: float = 300.0
    discover_timeout: float = 5.0
    pairing_file: str = DEFAULT_PAIRING_FILE
    bluetooth: bool | Literal["auto"] = BLUETOOTH_AUTO
