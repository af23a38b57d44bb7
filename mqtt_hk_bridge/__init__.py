"""mqtt-hk-bridge: one process joining an MQTT broker and Apple HomeKit in both directions."""

# The one place the version is written: pyproject.toml reads it at build time, so the
# installed metadata agrees. Not read back through importlib.metadata at run time, which
# would load it, zipfile and email (0.6 MB) into a bridge that needs only this string.
__version__ = "0.1.0"
