"""Per-device options set over MQTT (`device/options`): kept in `data_dir/device-options.json`
and merged with bridge.yaml's, so they hold across restarts.

Which wins (docs/api.md): a key set for the device in bridge.yaml (`devices.<id>.<key>`) is
the owner's word and a request may not change it (it is refused, naming the key); a request's
value wins over `defaults.<key>`; `reset` drops a request's value again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

import voluptuous as vol

from ..api import BridgeApi
from ..config import Config, DeviceOptions
from ..errors import BridgeError
from ..request_schemas import DEVICE_OPTION_KEYS, SCHEMAS, RequestInvalid
from ..store import JsonStore
from .devices import ExposedDevices

_LOGGER = logging.getLogger(__name__)

OPTIONS_FILE = "device-options.json"
FORMAT_VERSION = 1

#: A stored device's options: the request schema's own checks, minus `id` and `reset`.
_STORED = vol.Schema(
    {
        key: validator
        for key, validator in SCHEMAS["device/options"].schema.items()
        if str(key) in DEVICE_OPTION_KEYS
    }
)


def _validate(data: Any) -> None:
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        raise ValueError(f"expected an object with version {FORMAT_VERSION}")
    devices = data.get("devices")
    if not isinstance(devices, dict):
        raise ValueError("'devices' must be an object of device id -> options")
    for device_id, options in devices.items():
        try:
            _STORED(options)
        except vol.Invalid as err:
            raise ValueError(f"options of {device_id!r}: {err}") from None


T = TypeVar("T")


class LiveDeviceOptions(Mapping[str, DeviceOptions]):
    """What `Config.devices` holds on the accessory side: bridge.yaml's per-device options
    with the stored ones merged in, current after every `device/options` request."""

    def __init__(self, config: Config, path: Path) -> None:
        self.configured: Mapping[str, DeviceOptions] = config.devices
        self._defaults = config.defaults
        self._store = JsonStore(path, _validate)
        data = self._store.load()
        self._stored: dict[str, dict[str, Any]] = dict(data["devices"]) if data else {}
        self._merged: dict[str, DeviceOptions] = {}
        self._merge_all()

    def __getitem__(self, device_id: str) -> DeviceOptions:
        return self._merged[device_id]

    @overload
    def get(self, device_id: str, /) -> DeviceOptions | None: ...

    @overload
    def get(self, device_id: str, /, default: DeviceOptions | T) -> DeviceOptions | T: ...

    def get(self, device_id: str, /, default: object = None) -> object:
        # Asked on every message; Mapping.get raises and catches a KeyError for each device
        # without options of its own.
        return self._merged.get(device_id, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._merged)

    def __len__(self) -> int:
        return len(self._merged)

    def stored(self, device_id: str) -> dict[str, Any]:
        return dict(self._stored.get(device_id, {}))

    def sets_expiry(self, device_id: str) -> bool:
        """Whether bridge.yaml's `devices.<id>` or a request set the device's expire_after."""
        return "expire_after" in self.configured_keys(device_id) or "expire_after" in (
            self._stored.get(device_id, {})
        )

    def configured_keys(self, device_id: str) -> frozenset[str]:
        options = self.configured.get(device_id)
        return options.configured if options is not None else frozenset()

    def update(self, device_id: str, changes: Mapping[str, Any], reset: list[str]) -> None:
        """Store new values and drop reset ones; saved before they take effect."""
        options = {**self._stored.get(device_id, {}), **changes}
        for key in reset:
            options.pop(key, None)
        stored = {**self._stored, device_id: options}
        if not options:
            del stored[device_id]
        try:
            self._store.save({"version": FORMAT_VERSION, "devices": stored})
        except OSError as err:
            raise BridgeError(f"could not save {self._store.path}: {err}; nothing changed") from err
        self._stored = stored
        self._merge_all()

    def _merge_all(self) -> None:
        merged = dict(self.configured)
        for device_id, options in self._stored.items():
            base = self.configured.get(device_id, self._defaults)
            wanted = {key: value for key, value in options.items() if key not in base.configured}
            merged[device_id] = dataclasses.replace(base, **wanted)
        self._merged = merged


class DeviceOptionsRequest:
    """`device/options`: read (only `id`), set, or reset a device's options."""

    def __init__(
        self, *, api: BridgeApi, config: Config, options: LiveDeviceOptions, devices: ExposedDevices
    ) -> None:
        self._config = config
        self._options = options
        self._devices = devices
        api.register("device/options", self._request)

    async def _request(self, body: dict[str, Any]) -> dict[str, Any]:
        device_id = body["id"]
        if device_id not in self._devices.registry.devices:
            raise BridgeError(f"no MQTT device {device_id!r}")
        changes: dict[str, Any] = {key: body[key] for key in DEVICE_OPTION_KEYS if key in body}
        reset = body.get("reset", [])
        configured = self._options.configured_keys(device_id)
        for key in [*changes, *reset]:
            if key in configured:
                raise RequestInvalid(
                    f"field {key!r}: bridge.yaml sets devices.{device_id}.{key}, which a "
                    "request may not change; change it there",
                    key,
                )
        for key in reset:
            if key in changes:
                raise RequestInvalid(f"field {key!r}: both set and reset", key)
        bridge = changes.get("bridge")
        if bridge is not None:
            try:
                self._devices.check_move(device_id, bridge)
            except BridgeError as err:
                raise RequestInvalid(f"field 'bridge': {err}; nothing changed", "bridge") from None
        if changes or reset:
            self._options.update(device_id, changes, reset)
            _LOGGER.info("Options of %s: %s set, %s reset", device_id, changes, reset)
            self._devices.availability_changed(device_id)  # expire_after holds from now
            if bridge is not None:
                self._devices.place_again(device_id)  # a move; a reset moves nobody
        effective = self._config.device_options(device_id)
        return {
            "id": device_id,
            "options": {key: getattr(effective, key) for key in DEVICE_OPTION_KEYS},
            "set_by_request": self._options.stored(device_id),
            "set_in_config": sorted(key for key in DEVICE_OPTION_KEYS if key in configured),
        }
