"""The accessory side on the bridge API: its entries in `bridge/devices` (with each
device's source, its mapping, and why a device could not be mapped), and the
`device/remove` and `device/rename` requests."""

from __future__ import annotations

from typing import Any

from .. import catalogue, const
from ..api import BridgeApi
from ..errors import BridgeError
from ..homekit.catalog import Catalog
from ..mqtt.topics import CharKey, state_topic
from .bound_devices import BoundDevices
from .devices import ExposedDevices
from .registry import Device


class DeviceRequests:
    def __init__(
        self,
        *,
        api: BridgeApi,
        base_topic: str,
        catalog: Catalog,
        devices: ExposedDevices,
        bound: BoundDevices,
    ) -> None:
        self._base = base_topic
        self._catalog = catalog
        self._devices = devices
        self._bound = bound
        api.register("device/remove", self._remove)
        api.register("device/rename", self._rename)
        api.add_catalogue_source(self.catalogue)

    def catalogue(self) -> list[dict[str, Any]]:
        entries = {
            device.device_id: self._entry(device)
            for device in self._devices.registry.devices.values()
        }
        for extra in self._bound.unlisted():
            shown = entries.get(extra["id"])
            if shown is None:
                entries[extra["id"]] = {
                    "origin": const.ORIGIN_MQTT,
                    "name": extra["id"],
                    "aid": None,
                    "bridge": None,
                    **extra,
                }
            elif "unmapped" in extra:
                # Another source holds the id; say why this one could not take it.
                shown["not_mapped"] = {"source": extra["source"], "reason": extra["unmapped"]}
        return list(entries.values())

    def _entry(self, device: Device) -> dict[str, Any]:
        services = [
            catalogue.service_entry(
                key.service,
                key.index,
                [
                    catalogue.characteristic_entry(
                        self._catalog.characteristics[name],
                        # A mapped or discovered device's own topics are in its `mapping`.
                        topic=state_topic(self._base, device.device_id, CharKey(key, name))
                        if device.source == const.SOURCE_HOMEKIT_TOPICS
                        else None,
                    )
                    for name in sorted(values)
                ],
            )
            for key, values in sorted(device.services.items())
        ]
        mapping = self._bound.mapping(device.device_id)
        return catalogue.device_entry(
            device_id=device.device_id,
            origin=const.ORIGIN_MQTT,
            source=device.source,
            name=self._devices.display_name(device),
            aid=self._devices.bridges.aid(device.device_id),
            available=self._devices.available(device.device_id),
            services=services,
            bridge=self._devices.bridges.bridge_of(device.device_id),
            **({"mapping": mapping} if mapping is not None else {}),
        )

    def _device(self, body: dict[str, Any]) -> Device:
        device_id = str(body.get("id", ""))
        device = self._devices.registry.devices.get(device_id)
        if device is None:
            raise BridgeError(f"no MQTT device {device_id!r}")
        return device

    async def _remove(self, body: dict[str, Any]) -> dict[str, Any]:
        device = self._device(body)
        return {"id": device.device_id, "cleared_topics": self._devices.remove(device)}

    async def _rename(self, body: dict[str, Any]) -> dict[str, Any]:
        device = self._device(body)
        name = str(body.get("name", "")).strip()
        if not 1 <= len(name) <= 64:
            raise BridgeError("name must be 1-64 characters")
        self._devices.rename(device, name)
        return {"id": device.device_id, "name": name}
