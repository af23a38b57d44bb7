"""mqtt-hk-bridge: one process joining an MQTT broker and Apple HomeKit in both directions."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mqtt-hk-bridge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
