"""An accessory database -> MQTT topics, values and catalogue entries; pure mapping plus
retained publishing. The session (sessions.py) does the talking to the accessory.

Topic shape (docs/topics.md): `<base>/<alias>[-<aid>]/<ServiceName>[/<n>]/<CharacteristicName>`.
Names are HAP-python's, looked up by UUID in our catalog; a UUID the catalog does not know
(vendor services such as Eve's) is its own name. `<n>` numbers services of one type from 2 up
in iid order, so the topics stay the same as long as the accessory's database does.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohomekit.model.characteristics.characteristic_types import CharacteristicsTypes
from aiohomekit.model.services.service_types import ServicesTypes

from .. import catalogue, const
from ..errors import NotConnectedError
from ..homekit.catalog import (
    APPLE_UUID_SUFFIX,
    DEFAULT_MAX_LEN,
    CharInfo,
    get_catalog,
    normalize_uuid,
)
from ..mqtt import payloads
from ..mqtt.link import MqttLink
from ..mqtt.topics import CharKey, ServiceKey, availability_topic, state_topic

_LOGGER = logging.getLogger(__name__)

#: Characteristics of AccessoryInformation that name a device in the catalogue.
_NAME_UUID = normalize_uuid("23")
_INFO_SERVICE_UUID = normalize_uuid("3E")

CharId = tuple[int, int]


def device_id_for(alias: str, aid: int) -> str:
    """The accessory itself (aid 1) is the alias; one bridged behind it is `<alias>-<aid>`."""
    return alias if aid == 1 else f"{alias}-{aid}"


def service_name(type_uuid: str) -> str:
    found = get_catalog().service_by_uuid(type_uuid)
    if found is not None:
        return found.name
    return _known_names()[0].get(normalize_uuid(type_uuid), normalize_uuid(type_uuid))


def characteristic_name(type_uuid: str) -> str:
    found = get_catalog().characteristic_by_uuid(type_uuid)
    if found is not None:
        return found.name
    return _known_names()[1].get(normalize_uuid(type_uuid), normalize_uuid(type_uuid))


@functools.cache
def _known_names() -> tuple[dict[str, str], dict[str, str]]:
    """Names for Apple types HAP-python's tables lack but aiohomekit knows (protocol
    information, ...): `PROTOCOL_INFORMATION` -> `ProtocolInformation`. Only Apple's own
    UUIDs: a vendor's UUID means what that vendor says on that device (Eve reuses its UUIDs
    across products), so it stays a UUID. A name HAP-python gives another type is not used."""
    catalog = get_catalog()
    taken = {*catalog.services, *catalog.characteristics}

    def table(types: type) -> dict[str, str]:
        names: dict[str, str] = {}
        for attribute, value in vars(types).items():
            if attribute.startswith("_") or not isinstance(value, str):
                continue
            type_uuid = normalize_uuid(value)
            name = "".join(part.capitalize() for part in attribute.split("_"))
            if type_uuid.endswith(APPLE_UUID_SUFFIX) and name not in taken:
                names.setdefault(type_uuid, name)
        return names

    return table(ServicesTypes), table(CharacteristicsTypes)


def char_info(name: str, raw: Mapping[str, Any]) -> CharInfo:
    """What the accessory says about a characteristic (it is the authority, not our tables)."""
    valid = raw.get("valid-values")
    return CharInfo(
        name=name,
        uuid=normalize_uuid(str(raw["type"])),
        format=str(raw.get("format", "string")),
        perms=tuple(str(perm) for perm in raw.get("perms", ())),
        min_value=raw.get("minValue"),
        max_value=raw.get("maxValue"),
        min_step=raw.get("minStep") or None,
        valid_values=tuple(sorted(int(v) for v in valid)) if valid else None,
        max_len=int(raw.get("maxLen", DEFAULT_MAX_LEN)),
        unit=raw.get("unit"),
    )


#: HAP's Pairing service (pair-setup, pair-verify, pairings), listed by Thread and Bluetooth
#: accessories: a protocol channel, not a state to read.
PAIRING_SERVICE = "Pairing"


@dataclass(frozen=True)
class MirroredChar:
    device_id: str
    aid: int
    iid: int
    service_iid: int
    key: CharKey
    info: CharInfo
    topic: str

    @property
    def char_id(self) -> CharId:
        return (self.aid, self.iid)


@dataclass(frozen=True)
class MirroredDevice:
    device_id: str
    aid: int
    name: str
    chars: tuple[MirroredChar, ...]


class RetainedTopics:
    """Every retained topic the controller side owns, so a reconnect can publish them all.

    Publishing never blocks and never fails: while the broker is away the value waits here.
    """

    def __init__(self, link: MqttLink) -> None:
        self._link = link
        self._values: dict[str, str] = {}

    def get(self, topic: str) -> str | None:
        return self._values.get(topic)

    def publish(self, topic: str, payload: str, *, only_if_changed: bool = False) -> None:
        if only_if_changed and self._values.get(topic) == payload:
            return
        self._values[topic] = payload
        self._send(topic, payload)

    def clear(self, topic: str) -> None:
        """Delete a retained topic (zero-length retained payload)."""
        self._values.pop(topic, None)
        self._send(topic, "")

    def republish(self, topics: Iterable[str] | None = None) -> None:
        for topic in list(self._values) if topics is None else topics:
            if topic in self._values:
                self._send(topic, self._values[topic])

    def topics(self) -> list[str]:
        return list(self._values)

    def _send(self, topic: str, payload: str) -> None:
        try:
            self._link.publish(topic, payload, retain=True)
        except NotConnectedError:
            _LOGGER.debug("Broker away; %s is published on the next connect", topic)


class AccessoryMirror:
    """The topics of one pairing (all accessories behind it)."""

    def __init__(self, alias: str, base_topic: str, retained: RetainedTopics) -> None:
        self.alias = alias
        self._base = base_topic
        self._retained = retained
        self.devices: dict[str, MirroredDevice] = {}
        self.by_id: dict[CharId, MirroredChar] = {}
        self.by_key: dict[tuple[str, CharKey], MirroredChar] = {}
        self.values: dict[CharId, Any] = {}
        self.available: bool | None = None  # None: not known yet (nothing published)
        self.loaded = False

    # ---- structure -------------------------------------------------------------------
    def load(self, accessories: list[dict[str, Any]]) -> bool:
        """Map a database (as GET /accessories returns it); publish its values.

        Topics that disappeared are cleared. True when the structure changed.
        """
        old_topics = {char.topic for char in self.by_id.values()}
        old_devices = set(self.devices)
        old_shape = {(char.char_id, char.topic, char.info) for char in self.by_id.values()}
        devices, values = build(self.alias, self._base, accessories)
        self.devices = devices
        self.by_id = {char.char_id: char for dev in devices.values() for char in dev.chars}
        self.by_key = {(char.device_id, char.key): char for char in self.by_id.values()}
        self.values = {}
        self.loaded = True
        for topic in old_topics - {char.topic for char in self.by_id.values()}:
            self._retained.clear(topic)
        for device_id in old_devices - set(devices):
            self._retained.clear(availability_topic(self._base, device_id))
        for char_id, value in values.items():
            self.set_value(char_id, value, only_if_changed=True)
        if self.available:  # new devices of a live pairing; otherwise the connect says it
            self._publish_availability()
        new_shape = {(char.char_id, char.topic, char.info) for char in self.by_id.values()}
        return new_shape != old_shape

    def unload(self) -> None:
        """Forget everything and clear every topic (after unpairing)."""
        for char in self.by_id.values():
            if self._retained.get(char.topic) is not None:
                self._retained.clear(char.topic)
        for device_id in {*self.devices, self.alias}:
            self._retained.clear(availability_topic(self._base, device_id))
        self.devices, self.by_id, self.by_key, self.values = {}, {}, {}, {}
        self.loaded = False

    # ---- values ----------------------------------------------------------------------
    def readable_ids(self) -> list[CharId]:
        """What a full read asks for: every readable value but the pairing procedures'
        (a Thread or Bluetooth accessory lists its Pairing service; reading Pairings
        outside a pairing request is refused, and aiohomekit logs a warning each time)."""
        return [
            char.char_id
            for char in self.by_id.values()
            if char.info.readable and char.key.service != PAIRING_SERVICE
        ]

    def event_ids(self) -> list[CharId]:
        return [char.char_id for char in self.by_id.values() if char.info.notifies]

    def set_value(self, char_id: CharId, value: Any, *, only_if_changed: bool = False) -> None:
        """A value read or received for (aid, iid): publish it on its state topic."""
        char = self.by_id.get(char_id)
        if char is None or not char.info.readable or value is None:
            return
        self.values[char_id] = value
        self._retained.publish(char.topic, payloads.encode(value), only_if_changed=only_if_changed)

    def set_available(self, available: bool) -> bool:
        """Record reachability; True when it changed."""
        changed = available != self.available
        self.available = available
        if changed or available:
            self._publish_availability()
        return changed

    def _publish_availability(self) -> None:
        word = const.ONLINE if self.available else const.OFFLINE
        for device_id in list(self.devices) or [self.alias]:
            self._retained.publish(
                availability_topic(self._base, device_id), word, only_if_changed=True
            )

    def lookup(self, device_id: str, key: CharKey) -> MirroredChar | None:
        return self.by_key.get((device_id, key))

    # ---- catalogue -------------------------------------------------------------------
    def catalogue(self, source: str) -> list[dict[str, Any]]:
        """Entries of `bridge/devices` (catalogue.py); `source` is the pairing's transport."""
        common: dict[str, Any] = {
            "origin": const.ORIGIN_HOMEKIT,
            "source": source,
            "available": bool(self.available),
            "alias": self.alias,
        }
        if not self.devices:  # not read yet: the pairing alone
            return [
                catalogue.device_entry(
                    device_id=self.alias, name=self.alias, aid=1, services=[], **common
                )
            ]
        entries: list[dict[str, Any]] = []
        for device in self.devices.values():
            services: dict[ServiceKey, tuple[int, list[dict[str, Any]]]] = {}
            for char in device.chars:
                _, characteristics = services.setdefault(
                    char.key.service_key, (char.service_iid, [])
                )
                characteristics.append(
                    catalogue.characteristic_entry(char.info, topic=char.topic, iid=char.iid)
                )
            entries.append(
                catalogue.device_entry(
                    device_id=device.device_id,
                    name=device.name,
                    aid=device.aid,
                    services=[
                        catalogue.service_entry(key.service, key.index, chars, iid=iid)
                        for key, (iid, chars) in services.items()
                    ],
                    **common,
                )
            )
        return entries


def build(
    alias: str, base_topic: str, accessories: list[dict[str, Any]]
) -> tuple[dict[str, MirroredDevice], dict[CharId, Any]]:
    """Devices and initial values of a database; deterministic for the same database."""
    devices: dict[str, MirroredDevice] = {}
    values: dict[CharId, Any] = {}
    for accessory in sorted(accessories, key=lambda acc: int(acc["aid"])):
        aid = int(accessory["aid"])
        device_id = device_id_for(alias, aid)
        name = device_id
        seen: Counter[str] = Counter()
        chars: list[MirroredChar] = []
        for service in sorted(accessory.get("services", ()), key=lambda svc: int(svc["iid"])):
            s_name = service_name(str(service["type"]))
            seen[s_name] += 1
            service_key = ServiceKey(s_name, seen[s_name])
            used: set[str] = set()
            for raw in sorted(service.get("characteristics", ()), key=lambda ch: int(ch["iid"])):
                c_name = characteristic_name(str(raw["type"]))
                if c_name in used:
                    _LOGGER.warning(
                        "%s: aid %s service %s lists %s twice; iid %s is not mirrored",
                        alias,
                        aid,
                        service_key,
                        c_name,
                        raw["iid"],
                    )
                    continue
                used.add(c_name)
                key = CharKey(service_key, c_name)
                char = MirroredChar(
                    device_id=device_id,
                    aid=aid,
                    iid=int(raw["iid"]),
                    service_iid=int(service["iid"]),
                    key=key,
                    info=char_info(c_name, raw),
                    topic=state_topic(base_topic, device_id, key),
                )
                chars.append(char)
                if "value" in raw and raw["value"] is not None:
                    values[char.char_id] = raw["value"]
                if (
                    normalize_uuid(str(service["type"])) == _INFO_SERVICE_UUID
                    and char.info.uuid == _NAME_UUID
                    and raw.get("value")
                ):
                    name = str(raw["value"])
        devices[device_id] = MirroredDevice(device_id, aid, name, tuple(chars))
    return devices, values


def topics_of(alias: str, base_topic: str, accessories: list[dict[str, Any]]) -> list[str]:
    """Every state topic a database maps to (for `accessories --compact` and golden tests)."""
    devices, _ = build(alias, base_topic, accessories)
    return sorted(char.topic for device in devices.values() for char in device.chars)
