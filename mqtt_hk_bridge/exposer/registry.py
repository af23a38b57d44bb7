"""What MQTT devices have said: their services, last values and availability. No I/O.

A device is made of services (`ServiceKey`), each holding the characteristic values that
were published for it. The registry says whether a change is structural (the accessory
database changes: new device, service or characteristic) or only a value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .. import const
from ..mqtt.payloads import HapValue
from ..mqtt.topics import CharKey, ServiceKey
from .narrowing import Narrowing

#: Availability remembered for devices not seen yet (bounded: any topic could name one).
MAX_EARLY_AVAILABILITY = 1024


class Change(enum.Enum):
    NONE = "none"
    VALUE = "value"
    STRUCTURE = "structure"


@dataclass
class Device:
    device_id: str
    services: dict[ServiceKey, dict[str, HapValue]] = field(default_factory=dict)
    #: What the availability topic said last; None when the device never used it.
    online: bool | None = None
    #: Wall-clock time of the last message from the device (survives restarts).
    last_seen: float = 0.0
    #: A name given by a `device/rename` request.
    name: str | None = None
    #: The source that reports the device and takes its Home-app writes.
    source: str = const.SOURCE_HOMEKIT_TOPICS
    #: What the device can do of a characteristic, where that is less than HomeKit's range
    #: (its source says so: a heating-only thermostat's modes).
    narrowed: dict[CharKey, Narrowing] = field(default_factory=dict)

    @property
    def exposed_services(self) -> list[ServiceKey]:
        """The services an accessory shows: all but the information service, in key order."""
        return sorted(key for key in self.services if key.service != const.INFO_SERVICE)

    def info(self, characteristic: str) -> HapValue | None:
        return self.services.get(ServiceKey(const.INFO_SERVICE), {}).get(characteristic)

    def value(self, key: CharKey) -> HapValue | None:
        return self.services.get(key.service_key, {}).get(key.characteristic)

    def available(self, now: float, expire_after: float | None) -> bool:
        if self.online is False:
            return False
        return expire_after is None or now - self.last_seen <= expire_after


class Registry:
    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}
        self._early_availability: dict[str, bool] = {}

    def set_value(
        self,
        device_id: str,
        key: CharKey,
        value: HapValue,
        now: float,
        source: str = const.SOURCE_HOMEKIT_TOPICS,
    ) -> Change:
        device = self.devices.get(device_id)
        change = Change.NONE
        if device is None:
            online = self._early_availability.pop(device_id, None)
            device = self.devices[device_id] = Device(device_id, online=online, source=source)
            change = Change.STRUCTURE
        device.last_seen = now
        values = device.services.get(key.service_key)
        if values is None:
            values = device.services[key.service_key] = {}
            change = Change.STRUCTURE
        if key.characteristic not in values:
            change = Change.STRUCTURE
        elif values[key.characteristic] != value and change is Change.NONE:
            change = Change.VALUE
        values[key.characteristic] = value
        return change

    def clear(self, device_id: str, key: CharKey) -> Change:
        """Forget a characteristic (its retained topic was cleared); empty services and
        devices go with it."""
        device = self.devices.get(device_id)
        if device is None:
            return Change.NONE
        values = device.services.get(key.service_key)
        if values is None or key.characteristic not in values:
            return Change.NONE
        del values[key.characteristic]
        # Structural even when the service stays: the accessory shows only the optional
        # characteristics that have values, as set_value's new-characteristic case says.
        if values:
            return Change.STRUCTURE
        del device.services[key.service_key]
        if not device.services:
            del self.devices[device_id]
        return Change.STRUCTURE

    def set_online(self, device_id: str, online: bool, now: float) -> bool:
        """Record the availability topic; True when the device's availability changed.

        A device's retained `offline` may arrive before its first state topic: it is kept
        and applied when the device appears.
        """
        device = self.devices.get(device_id)
        if device is None:
            self._early_availability[device_id] = online
            while len(self._early_availability) > MAX_EARLY_AVAILABILITY:
                del self._early_availability[next(iter(self._early_availability))]
            return False
        if online:
            device.last_seen = now
        changed = device.online is not online
        device.online = online
        return changed

    def set_narrowing(self, device_id: str, narrowed: dict[CharKey, Narrowing]) -> bool:
        """True when the device's narrowing changed (its accessory must be built again);
        a device not seen yet takes it from its source once it is."""
        device = self.devices.get(device_id)
        if device is None or device.narrowed == narrowed:
            return False
        device.narrowed = dict(narrowed)
        return True

    def remove(self, device_id: str) -> bool:
        return self.devices.pop(device_id, None) is not None

    def to_json(self) -> dict[str, Any]:
        return {
            device_id: {
                "online": device.online,
                "last_seen": device.last_seen,
                "name": device.name,
                "source": device.source,
                "services": [
                    _service_json(device, key, values)
                    for key, values in sorted(device.services.items())
                ],
            }
            for device_id, device in self.devices.items()
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Registry:
        registry = cls()
        for device_id, raw in data.items():
            device = Device(
                device_id,
                online=raw["online"],
                last_seen=float(raw["last_seen"]),
                name=raw.get("name"),
                source=raw.get("source", const.SOURCE_HOMEKIT_TOPICS),
            )
            for service in raw["services"]:
                key = ServiceKey(str(service["service"]), int(service["index"]))
                device.services[key] = dict(service["values"])
                for name, narrowing in service.get("narrowed", {}).items():
                    device.narrowed[CharKey(key, name)] = Narrowing.from_json(narrowing)
            registry.devices[device_id] = device
        return registry


def _service_json(device: Device, key: ServiceKey, values: dict[str, HapValue]) -> dict[str, Any]:
    entry: dict[str, Any] = {"service": key.service, "index": key.index, "values": values}
    narrowed = {
        char.characteristic: narrowing.to_json()
        for char, narrowing in sorted(device.narrowed.items(), key=lambda item: str(item[0]))
        if char.service_key == key
    }
    if narrowed:
        entry["narrowed"] = narrowed
    return entry
