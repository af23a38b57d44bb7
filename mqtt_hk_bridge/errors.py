"""One exception family with messages a user can act on."""

from __future__ import annotations


class BridgeError(Exception):
    """Anything the bridge reports to a user instead of crashing."""


class ConfigError(BridgeError):
    """bridge.yaml (or an environment variable) is not usable; names the key and the file."""


class StateFileError(BridgeError):
    """A state file is unreadable or corrupt; start-up stops rather than lose identity."""


class TopicError(BridgeError):
    """A topic does not follow the grammar in docs/topics.md."""


class PayloadError(BridgeError):
    """A payload is not a valid value for the characteristic it was sent to."""


class CatalogError(BridgeError):
    """An unknown HAP service or characteristic name, or one that does not fit its service."""


class NotConnectedError(BridgeError):
    """The broker is not reachable right now; the message was not sent."""
