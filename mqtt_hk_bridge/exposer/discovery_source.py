"""Home Assistant MQTT discovery as a device source: every retained
`<prefix>/<component>/[<node_id>/]<object_id>/config` that Zigbee2MQTT, Tasmota, ESPHome
(or anything else) publishes becomes part of a bridged accessory, without configuration.

Entities of one discovery `device` (same first identifier) make one accessory with several
services. An entity with no HomeKit form, or one we cannot use (a template that does not
compile), is skipped and reported on `bridge/event`; `bridge/devices` lists why. An empty
retained config removes the entity. docs/mapping.md describes the rules.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import const
from ..api import BridgeApi
from ..errors import BridgeError, PayloadError
from ..mqtt.link import IncomingMessage, MqttLink
from ..mqtt.payloads import HapValue
from ..mqtt.topics import ServiceKey
from ..routing import Router
from .bindings import AvailabilityBinding, CharBinding, CharSpec, DeviceBinding
from .bound_devices import BoundDevices
from .devices import ExposedDevices
from .ha_discovery import Entity, parse_config, parse_topic
from .ha_entities import EntityPlan, Unmappable, plan_entity
from .service_slots import ServiceSlots

_LOGGER = logging.getLogger(__name__)

SOURCE = const.SOURCE_HOMEASSISTANT_DISCOVERY
#: After the first connect, this long for the retained configs to arrive; a remembered
#: discovered device none of them announced then leaves (its config was removed while
#: the bridge was down).
SETTLE_SECONDS = 30.0
#: Information characteristics a discovery `device` fills, and their HAP length limit.
INFO_FIELDS = (("Name", "name"), ("Manufacturer", "manufacturer"), ("Model", "model"))
MAX_INFO_LENGTH = 64


@dataclass(frozen=True)
class _Announced:
    """One entity as announced: its plan, or why it has none."""

    entity: Entity
    plan: EntityPlan | None
    reason: str | None


class HomeAssistantDiscovery:
    def __init__(
        self,
        *,
        prefix: str,
        data_dir: Path,
        link: MqttLink,
        api: BridgeApi,
        router: Router,
        devices: ExposedDevices,
        bound: BoundDevices,
    ) -> None:
        self._prefix = prefix
        self._api = api
        self._devices = devices
        self._bound = bound
        self._slots = ServiceSlots(data_dir)
        #: Entities by where they were announced (`topic`, or `topic#component` for a
        #: device message); a digest of the config payload last read per topic.
        self._announced: dict[str, _Announced] = {}
        self._payloads: dict[str, bytes] = {}
        self._settle: asyncio.TimerHandle | None = None
        #: Until the retained configs have had time to arrive, a device's remembered
        #: services stay while its entities are announced one by one.
        self._settled = False
        router.add_filter(f"{prefix}/#", self._on_message)
        link.add_connect_hook(self._connected)

    async def _connected(self) -> None:
        if self._settle is None:
            loop = asyncio.get_running_loop()
            self._settle = loop.call_later(SETTLE_SECONDS, self._forget_unannounced)

    def _forget_unannounced(self) -> None:
        self._settled = True
        announced = self._devices.claimed(SOURCE)
        for device in list(self._devices.registry.devices.values()):
            if device.source != SOURCE:
                continue
            if device.device_id in announced:
                self._bound.prune(device.device_id)
            else:
                _LOGGER.info("%s was not announced again; it leaves the bridge", device.device_id)
                self._devices.forget(device.device_id)

    def close(self) -> None:
        if self._settle is not None:
            self._settle.cancel()

    # -- discovery messages -------------------------------------------------------------

    def _on_message(self, message: IncomingMessage) -> None:
        parsed = parse_topic(message.topic, self._prefix)
        if parsed is None:
            return  # a state topic under the prefix, or anything else: not ours
        topic = message.topic
        digest = hashlib.sha256(message.payload).digest()
        if self._payloads.get(topic) == digest:
            return  # announced again unchanged (every firmware restart does it)
        previous = [key for key in self._announced if key == topic or key.startswith(f"{topic}#")]
        affected = {self._announced[key].entity.device_id for key in previous}
        if not message.payload:
            self._payloads.pop(topic, None)
            for key in previous:
                del self._announced[key]
            _LOGGER.info("%s removed", topic)
            self._rebuild(affected)
            return
        try:
            entities = parse_config(parsed, message.payload)
        except PayloadError as err:
            self._api.event(
                "invalid_discovery",
                f"{topic}: {err}; the entity keeps its last good config",
                topic=topic[:512],
            )
            return
        self._payloads[topic] = digest
        for key in previous:
            del self._announced[key]
        for entity in entities:
            if _published_by_us(entity) or not self._devices.takes(entity.device_id):
                continue  # ours, or another bridge process shows it (device_filter)
            self._announced[entity.key] = self._announce(entity)
            affected.add(entity.device_id)
        self._rebuild(affected)

    def _announce(self, entity: Entity) -> _Announced:
        try:
            return _Announced(entity, plan_entity(entity), None)
        except Unmappable as err:
            reason = str(err)
        self._api.event(
            "discovery_skipped",
            f"{entity.key}: {entity.component} entity skipped: {reason}",
            topic=entity.key[:512],
            device=entity.device_id,
        )
        return _Announced(entity, None, reason)

    # -- devices ------------------------------------------------------------------------

    def _rebuild(self, device_ids: set[str]) -> None:
        for device_id in sorted(device_ids):
            announced = sorted(
                (item for item in self._announced.values() if item.entity.device_id == device_id),
                key=lambda item: item.entity.key,
            )
            self._bind(device_id, announced)

    def _bind(self, device_id: str, announced: list[_Announced]) -> None:
        skipped = [
            {
                "config_topic": item.entity.key,
                "component": item.entity.component,
                "reason": item.reason,
            }
            for item in announced
            if item.reason is not None
        ]
        planned: list[tuple[_Announced, EntityPlan]] = [
            (item, item.plan) for item in announced if item.plan is not None
        ]
        if not planned:
            self._bound.unbind(device_id)
            if skipped:
                self._bound.refuse(
                    device_id,
                    SOURCE,
                    "none of its entities has a HomeKit form",
                    {"skipped": skipped},
                )
            else:
                self._bound.forget_refusal(device_id)
            return
        characteristics = list(self._info(device_id, [item for item, _ in planned]))
        # The device is silent too long only when each of its entities says how long that
        # is: the longest of them.
        expiries = [plan.expire_after for _, plan in planned]
        expire_after = None if None in expiries else max(e for e in expiries if e is not None)
        entities: list[dict[str, Any]] = []
        availability: dict[str, AvailabilityBinding] = {}
        for item, plan in planned:
            try:
                keys = self._service_keys(device_id, plan)
            except BridgeError as err:
                skipped.append(
                    {
                        "config_topic": item.entity.key,
                        "component": item.entity.component,
                        "reason": str(err),
                    }
                )
                continue
            for service, key in zip(plan.services, keys, strict=True):
                characteristics.extend(spec.bound(key) for spec in service.characteristics)
            for avail in plan.availability:
                availability.setdefault(avail.topic, avail)
            entities.append(
                {
                    "config_topic": item.entity.key,
                    "component": item.entity.component,
                    "unique_id": item.entity.unique_id,
                    "services": sorted({str(key) for key in keys}),
                }
            )
        describe: dict[str, Any] = {"entities": entities}
        if skipped:
            describe["skipped"] = skipped
        if expire_after is not None:
            describe["expire_after"] = expire_after
        binding = DeviceBinding(
            device_id=device_id,
            source=SOURCE,
            characteristics=tuple(characteristics),
            availability=tuple(availability.values()),
            availability_mode=planned[0][1].availability_mode,
            describe=describe,
            expire_after=expire_after,
        )
        try:
            self._bound.bind(binding, prune=self._settled)
        except BridgeError as err:
            self._bound.refuse(device_id, SOURCE, str(err), {"entities": entities})
            self._api.event("device_not_mapped", f"{device_id}: {err}", device=device_id)

    def _service_keys(self, device_id: str, plan: EntityPlan) -> list[ServiceKey]:
        return [
            self._slots.key(device_id, service.slot, service.service) for service in plan.services
        ]

    @staticmethod
    def _info(device_id: str, announced: list[_Announced]) -> list[CharBinding]:
        """Name, manufacturer and model, each from the first entity (in topic order, so the
        choice does not depend on arrival) whose device says it."""
        values: dict[str, HapValue] = {}
        for characteristic, attribute in INFO_FIELDS:
            for item in announced:
                text = getattr(item.entity.device, attribute, None)
                if text:
                    values[characteristic] = str(text)[:MAX_INFO_LENGTH]
                    break
        if "Name" not in values:
            name = announced[0].entity.config.get("name")
            values["Name"] = str(name)[:MAX_INFO_LENGTH] if name else device_id
        return [
            CharSpec(characteristic, initial=value, describe={"value": value}).bound(
                ServiceKey(const.INFO_SERVICE)
            )
            for characteristic, value in values.items()
        ]


def _published_by_us(entity: Entity) -> bool:
    """A config this bridge published for an accessory it controls (homeassistant.discovery):
    shown again as an MQTT device, it would mirror itself."""
    origin = entity.get("origin")
    return isinstance(origin, dict) and origin.get("name") == const.DISCOVERY_ORIGIN
