"""Whether the controller side loads aiohomekit's Bluetooth transport (`controller.bluetooth`).

That transport brings bleak and dbus-fast (about 6 MB of memory) and looks for BlueZ on
D-Bus at every start. Most machines a bridge runs on have no Bluetooth adapter (a server, a
container, a NAS): with `auto` it is loaded only where Linux lists an adapter. `true` loads
it anyway (another OS, an adapter that appears later), `false` never.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .settings import BLUETOOTH_AUTO

#: Where Linux lists its Bluetooth adapters (hci0, ...).
ADAPTERS = Path("/sys/class/bluetooth")


def wanted(setting: bool | Literal["auto"], adapters: Path = ADAPTERS) -> bool:
    if setting != BLUETOOTH_AUTO:
        return bool(setting)
    try:
        return any(adapters.iterdir())
    except OSError:  # no such directory: not Linux, or no Bluetooth support at all
        return False
