"""HomeKit accessories -> MQTT (aiohomekit)."""

import os

# aiohomekit turns its Bluetooth transport on only when this is set (or bleak was imported)
# before its own first import; the package is imported before any module that uses it.
os.environ.setdefault("AIOHOMEKIT_TRANSPORT_BLE", "1")
