"""Devices bound to topics of their own (`DeviceBinding`): mapped devices and discovered
ones. Subscribes their state and availability topics, reads each message once for every
characteristic it feeds (one Zigbee2MQTT message -> one batch of values), and sends
Home-app writes out in the device's own command form.

A message that cannot be read is reported on `bridge/event` (at most once a minute per
device and characteristic, so a chatty device cannot flood it) and the last good value
stays.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from ..api import BridgeApi
from ..errors import BridgeError, PayloadError
from ..homekit.catalog import Catalog
from ..mqtt.link import IncomingMessage, MqttLink
from ..mqtt.payloads import HapValue, coerce
from ..mqtt.topics import CharKey
from ..routing import Router
from .bindings import AvailabilityMode, CharBinding, DeviceBinding, Skip, neutral_value
from .devices import ExposedDevices
from .narrowing import Narrowing
from .registry import Device
from .resets import ResetTimers
from .transforms import PayloadView

_LOGGER = logging.getLogger(__name__)

#: The same problem with the same device is reported at most once a minute.
EVENT_INTERVAL = 60.0
EVENT_MEMORY = 1024
#: Longest topic or payload quoted in an event.
MAX_SHOWN = 200


class _EventLimiter:
    def __init__(self) -> None:
        self._last: OrderedDict[tuple[str, ...], float] = OrderedDict()

    def allow(self, *key: str) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < EVENT_INTERVAL:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > EVENT_MEMORY:
            self._last.popitem(last=False)
        return True


class BoundDevices:
    """Runs every bound device; a `DeviceSource` for each source that binds devices."""

    def __init__(
        self,
        *,
        link: MqttLink,
        api: BridgeApi,
        router: Router,
        catalog: Catalog,
        devices: ExposedDevices,
    ) -> None:
        self._link = link
        self._api = api
        self._router = router
        self._catalog = catalog
        self._devices = devices
        self._bindings: dict[str, DeviceBinding] = {}
        #: State or availability topic -> the bound devices reading it.
        self._readers: dict[str, dict[str, None]] = {}
        #: Topics the router gives us (subscribed for the rest of the run).
        self._routed: set[str] = set()
        #: Last payload per topic, so a device bound to a topic that already spoke (a second
        #: entity on a Zigbee2MQTT device's state topic) gets its value at once.
        self._last_payload: dict[str, tuple[bytes, bool]] = {}
        #: Per device: what each availability topic said last, and which spoke last.
        self._availability: dict[str, dict[str, bool]] = {}
        self._limiter = _EventLimiter()
        #: Devices a source could not bind, and why (shown in `bridge/devices`).
        self._refused: dict[str, tuple[str, str, dict[str, Any]]] = {}
        self._resets = ResetTimers(self._reset_due)
        #: Per device: what it can do of its characteristics, within the catalog's ranges.
        self._narrowed: dict[str, dict[CharKey, Narrowing]] = {}

    # -- binding ------------------------------------------------------------------------

    def binding(self, device_id: str) -> DeviceBinding | None:
        return self._bindings.get(device_id)

    def bind(self, binding: DeviceBinding, *, prune: bool = True) -> None:
        """Start (or update) a device. Raises BridgeError, binding nothing, when its id is
        another source's or one of its topics is the bridge's own tree. Characteristics an
        update drops leave the accessory; with `prune`, so do remembered ones the binding
        does not have (a source still hearing its definitions in pieces waits, see `prune`)."""
        device_id = binding.device_id
        for topic in sorted(binding.state_topics()):
            if topic not in self._routed:
                try:
                    self._router.add_filter(topic, self._on_message)
                except ValueError as err:
                    raise BridgeError(f"{device_id}: state topic {err}") from err
                self._routed.add(topic)
        self._devices.claim(device_id, binding.source)
        self._refused.pop(device_id, None)
        previous = self._bindings.get(device_id)
        self._bindings[device_id] = binding
        self._narrowed[device_id] = narrowed = {
            char.key: char.narrowing.within(self._catalog.characteristics[char.key.characteristic])
            for char in binding.characteristics
            if char.narrowing is not None
        }
        self._devices.set_narrowing(device_id, narrowed)
        self._devices.set_source_expiry(device_id, binding.expire_after)
        if previous is not None:
            self._drop_readers(previous, forget_payloads=False)
            bound = {char.key for char in binding.characteristics}
            for char in previous.characteristics:
                if char.key not in bound:
                    self._devices.clear_value(device_id, char.key)
        if prune:
            self.prune(device_id)
        for topic in binding.state_topics():
            self._readers.setdefault(topic, {})[device_id] = None
        if previous is not None:
            for topic in previous.state_topics() - binding.state_topics():
                if topic not in self._readers:
                    self._last_payload.pop(topic, None)
        availability_topics = {avail.topic for avail in binding.availability}
        known = self._availability.setdefault(device_id, {})
        for topic in list(known):
            if topic not in availability_topics:
                del known[topic]
        self._set_initial_values(binding)
        for topic in sorted(binding.state_topics()):
            last = self._last_payload.get(topic)
            if last is not None:
                self._read(binding, topic, PayloadView(last[0]), live=False)
        self._resume_resets(binding)

    def refuse(
        self, device_id: str, source: str, reason: str, details: dict[str, Any] | None = None
    ) -> None:
        """Remember why a source could not bind a device, for `bridge/devices`."""
        if device_id not in self._bindings:
            self._refused[device_id] = (source, reason, details or {})

    def forget_refusal(self, device_id: str) -> None:
        self._refused.pop(device_id, None)

    def unbind(self, device_id: str) -> None:
        """The device's definition is gone: it leaves the bridge (its aid is kept for when
        it comes back)."""
        binding = self._bindings.pop(device_id, None)
        if binding is None:
            return
        self._drop_readers(binding)
        self._availability.pop(device_id, None)
        self._narrowed.pop(device_id, None)
        self._devices.set_source_expiry(device_id, None)
        self._resets.cancel(device_id)
        self._devices.release(device_id, binding.source)

    def _drop_readers(self, binding: DeviceBinding, *, forget_payloads: bool = True) -> None:
        """Stop reading the binding's topics. A topic nobody reads forgets its last payload,
        unless the device is being bound again (its new binding replays it)."""
        for topic in binding.state_topics():
            readers = self._readers.get(topic)
            if readers is not None:
                readers.pop(binding.device_id, None)
                if not readers:
                    del self._readers[topic]
                    if forget_payloads:
                        self._last_payload.pop(topic, None)

    def prune(self, device_id: str) -> None:
        """Remembered characteristics the device's binding does not have (its definition
        changed while the bridge was down) leave the accessory."""
        binding = self._bindings.get(device_id)
        device = self._devices.registry.devices.get(device_id)
        if binding is None or device is None:
            return
        bound = {char.key for char in binding.characteristics}
        stale = [
            CharKey(service, name)
            for service, values in device.services.items()
            for name in values
            if CharKey(service, name) not in bound
        ]
        for key in stale:
            self._devices.clear_value(device_id, key)

    def _set_initial_values(self, binding: DeviceBinding) -> None:
        """Constants always; a first value for what can be controlled (and buttons) only
        until the device or the Home app gives another."""
        device = self._devices.registry.devices.get(binding.device_id)
        narrowed = self._narrowed.get(binding.device_id, {})
        values: dict[CharKey, HapValue] = {}
        for char in binding.characteristics:
            info = self._catalog.characteristics[char.key.characteristic]
            initial = char.initial
            if initial is None and char.command_topic is not None:
                initial = neutral_value(info)
            narrowing = narrowed.get(char.key)
            if initial is not None and narrowing is not None and not narrowing.allows(initial):
                initial = narrowing.neutral(info)
            if initial is None or char.key in values:
                continue
            current = device.value(char.key) if device is not None else None
            constant = char.state_topic is None and char.command_topic is None
            if current is None or (constant and current != initial):
                values[char.key] = initial
        self._store(binding, list(values.items()), live=False, topic=None)

    # -- messages -----------------------------------------------------------------------

    def _on_message(self, message: IncomingMessage) -> None:
        topic = message.topic
        readers = self._readers.get(topic)
        if not readers:
            return
        view = PayloadView(message.payload)
        if message.payload:
            self._last_payload[topic] = (message.payload, message.retain)
        else:
            self._last_payload.pop(topic, None)
        for device_id in list(readers):
            binding = self._bindings.get(device_id)
            if binding is not None:
                self._read(binding, topic, view, live=not message.retain)

    def _read(self, binding: DeviceBinding, topic: str, view: PayloadView, *, live: bool) -> None:
        if not view.payload:
            return  # a cleared retained topic: the device said nothing new
        values: dict[CharKey, HapValue] = {}
        narrowed = self._narrowed.get(binding.device_id, {})
        resetting: list[CharBinding] = []
        for char in binding.characteristics:
            if char.state_topic != topic or char.read is None:
                continue
            try:
                raw = char.read(view)
                if raw is Skip.NOTHING:
                    continue
                value = coerce(raw, self._catalog.characteristics[char.key.characteristic])
                narrowing = narrowed.get(char.key)
                values[char.key] = value if narrowing is None else narrowing.check(value)
                if char.reset is not None:
                    resetting.append(char)
            except PayloadError as err:
                self._report(binding.device_id, str(char.key), topic, err, view)
        if values:
            self._store(binding, list(values.items()), live=live, topic=topic)
            for char in resetting:
                reset = self._reset_to(char)
                self._resets.shown(binding.device_id, char.key, values[char.key], reset)
        for avail in binding.availability:
            if avail.topic == topic:
                self._availability_message(binding, topic, avail.read, view)

    def _store(
        self,
        binding: DeviceBinding,
        values: list[tuple[CharKey, HapValue]],
        *,
        live: bool,
        topic: str | None,
    ) -> None:
        if not values:
            return
        device_id = binding.device_id
        try:
            for key, _ in values:
                self._devices.check_room(device_id, key, binding.source)
        except BridgeError as err:
            if self._limiter.allow(device_id, "room"):
                self._api.event("device_not_added", f"{device_id}: {err}", device=device_id)
            return
        self._devices.set_values(
            device_id,
            values,
            live=live,
            source=binding.source,
            narrowed=self._narrowed.get(device_id),
        )

    def _reset_to(self, char: CharBinding) -> tuple[float, HapValue]:
        assert char.reset is not None
        info = self._catalog.characteristics[char.key.characteristic]
        return char.reset.seconds, coerce(char.reset.value, info)

    def _resume_resets(self, binding: DeviceBinding) -> None:
        """A value remembered from the last run (or read before this binding) returns too."""
        device = self._devices.registry.devices.get(binding.device_id)
        for char in binding.characteristics:
            current = device.value(char.key) if device is not None else None
            if char.reset is not None and current is not None:
                reset = self._reset_to(char)
                self._resets.shown(binding.device_id, char.key, current, reset, restart=False)

    def _reset_due(self, device_id: str, key: CharKey, value: HapValue) -> None:
        binding = self._bindings.get(device_id)
        if binding is not None and any(
            char.key == key and char.reset is not None for char in binding.characteristics
        ):
            self._store(binding, [(key, value)], live=True, topic=None)

    def _availability_message(
        self, binding: DeviceBinding, topic: str, read: Any, view: PayloadView
    ) -> None:
        try:
            said = read(view)
        except PayloadError as err:
            self._report(binding.device_id, "availability", topic, err, view)
            return
        if said is Skip.NOTHING:
            return
        known = self._availability.setdefault(binding.device_id, {})
        known[topic] = bool(said)
        online = self._combined(binding, known, bool(said))
        if online is not None:
            self._devices.set_online(binding.device_id, online)

    @staticmethod
    def _combined(binding: DeviceBinding, known: dict[str, bool], latest: bool) -> bool | None:
        """None while the topics have not said enough to decide."""
        mode = binding.availability_mode
        if mode is AvailabilityMode.LATEST:
            return latest
        said = [known.get(avail.topic) for avail in binding.availability]
        if mode is AvailabilityMode.ALL:
            if False in said:
                return False
            return True if None not in said else None
        if True in said:
            return True
        return False if None not in said else None

    def _report(
        self, device_id: str, what: str, topic: str, err: PayloadError, view: PayloadView
    ) -> None:
        if not self._limiter.allow(device_id, what, type(err).__name__):
            return
        shown = view.payload[:MAX_SHOWN].decode("utf-8", "replace")
        self._api.event(
            "invalid_message",
            f"{device_id} {what}: {err}; the last good value stays",
            device=device_id,
            topic=topic[:MAX_SHOWN],
            payload=shown,
        )

    # -- back to the device (DeviceSource) ----------------------------------------------

    def send_command(self, device_id: str, key: CharKey, value: HapValue) -> None:
        binding = self._bindings.get(device_id)
        char = self._command_binding(binding, key)
        if char is None or char.write is None or char.command_topic is None:
            self._api.event(
                "command_not_sent", f"{device_id} {key} has no command topic", device=device_id
            )
            raise BridgeError(f"{device_id}: {key} has no command topic; the write is ignored")
        device = self._devices.registry.devices.get(device_id)

        def sibling(name: str) -> HapValue | None:
            return None if device is None else device.value(CharKey(key.service_key, name))

        try:
            payload = char.write(value, sibling)
        except PayloadError as err:
            self._api.event("command_not_sent", f"{device_id} {key}: {err}", device=device_id)
            raise
        self._link.publish(char.command_topic, payload, retain=char.retain_command)

    @staticmethod
    def _command_binding(binding: DeviceBinding | None, key: CharKey) -> CharBinding | None:
        if binding is None:
            return None
        for char in binding.characteristics:
            if char.key == key and char.command_topic is not None:
                return char
        return None

    def clear_retained(self, device: Device) -> int:
        """Nothing: the topics are the device's own (and other systems read them). The
        device comes back with its next message."""
        return 0

    # -- bridge/devices -----------------------------------------------------------------

    def unlisted(self) -> list[dict[str, Any]]:
        """Entries for devices the registry does not hold: bound and waiting for their first
        state, or refused (with the reason)."""
        entries: list[dict[str, Any]] = []
        for device_id, binding in self._bindings.items():
            if device_id not in self._devices.registry.devices:
                entries.append(
                    {
                        "id": device_id,
                        "source": binding.source,
                        "available": False,
                        "services": [],
                        "waiting": "no state received yet",
                        "mapping": self.mapping(device_id),
                    }
                )
        for device_id, (source, reason, details) in self._refused.items():
            entries.append(
                {
                    "id": device_id,
                    "source": source,
                    "available": False,
                    "services": [],
                    "unmapped": reason,
                    **details,
                }
            )
        return entries

    def mapping(self, device_id: str) -> dict[str, Any] | None:
        """How the device is bound, for `bridge/devices`."""
        binding = self._bindings.get(device_id)
        if binding is None:
            return None
        characteristics = [
            {"characteristic": str(char.key), **char.describe} for char in binding.characteristics
        ]
        result: dict[str, Any] = {**binding.describe, "characteristics": characteristics}
        if binding.availability:
            result["availability"] = [dict(avail.describe) for avail in binding.availability]
            result["availability_mode"] = binding.availability_mode.value
        return result
