"""The accessory side on the bridge API: its entries in `bridge/devices`, and the
`device/remove` and `device/rename` requests."""

from __future__ import annotations

from typing import Any

from .. import catalogue, const
from ..api import BridgeApi
from ..errors import BridgeError
from ..homekit.catalog import Catalog
from .devices import ExposedDevices
from .registry import Device


class DeviceRequests:
    def __init__(self, *, api: BridgeApi, catalog: Catalog, devices: ExposedDevices) -> None:
        self._catalog = catalog
        self._devices = devices
        api.register("device/remove", self._remove)
        api.register("device/rename", self._rename)
        api.add_catalogue_source(self.catalogue)

    def catalogue(self) -> list[dict[str, Any]]:
        return [self._entry(device) for device in self._devices.registry.devices.values()]

    def _entry(self, device: Device) -> dict[str, Any]:
        services = [
            catalogue.service_entry(
                key.service,
                key.index,
                [
                    catalogue.characteristic_entry(
                        self._catalog.characteristics[name], value=values[name], has_value=True
                    )
                    for name in sorted(values)
                ],
            )
            for key, values in sorted(device.services.items())
        ]
        return catalogue.device_entry(
            device_id=device.device_id,
            origin=const.ORIGIN_MQTT,
            source=device.source,
            name=self._devices.display_name(device),
            aid=self._devices.hap.aid(device.device_id),
            available=self._devices.available(device.device_id),
            services=services,
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
