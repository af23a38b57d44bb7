"""Our own topic layout as a device source: `<base>/<device>/<Service>[/<n>]/<Characteristic>`
with plain values, `<base>/<device>/availability`, and Home-app writes on `.../set` (or on
the state topic itself for `command_topic: same`). docs/topics.md is its contract.
"""

from __future__ import annotations

import contextlib
import functools

from .. import const
from ..api import BridgeApi
from ..config import COMMAND_TOPIC_SAME, Config
from ..display import clipped, quoted
from ..errors import BridgeError, CatalogError, NotConnectedError, PayloadError
from ..homekit.catalog import Catalog, CharInfo
from ..mqtt.link import IncomingMessage, MqttLink
from ..mqtt.payloads import HapValue, decode, encode, payload_text
from ..mqtt.topics import (
    AvailabilityTopic,
    CharKey,
    CommandTopic,
    ServiceKey,
    StateTopic,
    availability_topic,
    command_topic,
    state_topic,
)
from .devices import ExposedDevices, WaitingLimitReached
from .registry import Device

#: Characteristic keys whose catalog lookup is kept (names are matched without case, so
#: the spellings a publisher may use are not few: the memory is bounded).
RESOLVED_MEMORY = 1024


class HomeKitTopicsSource:
    def __init__(
        self,
        *,
        config: Config,
        link: MqttLink,
        api: BridgeApi,
        catalog: Catalog,
        devices: ExposedDevices,
    ) -> None:
        self._config = config
        self._base = config.base_topic
        self._link = link
        self._api = api
        self._catalog = catalog
        self._devices = devices
        self._resolve = functools.lru_cache(maxsize=RESOLVED_MEMORY)(self._canonical)

    def handle(
        self, parsed: StateTopic | AvailabilityTopic | CommandTopic, message: IncomingMessage
    ) -> None:
        if not self._devices.takes(parsed.device_id):
            return  # another bridge process shows it (device_filter)
        if isinstance(parsed, StateTopic):
            self._state(parsed, message)
        elif isinstance(parsed, AvailabilityTopic):
            self._availability(parsed, message)
        elif message.retain and message.payload:
            self._clear_retained_command(parsed, message)

    def _state(self, parsed: StateTopic, message: IncomingMessage) -> None:
        device_id = parsed.device_id
        try:
            key, info = self._resolve(parsed.key)
            if not message.payload:
                self._devices.clear_value(device_id, key)
                return
            value = decode(message.payload, info)
            self._devices.check_room(device_id, key)
        except WaitingLimitReached:
            return
        except (CatalogError, PayloadError, BridgeError) as err:
            self._api.event(
                "invalid_message",
                f"{clipped(message.topic)}: {err}",
                topic=clipped(message.topic),
                device=device_id,
            )
            return
        self._devices.set_value(device_id, key, value, live=not message.retain)

    def _canonical(self, key: CharKey) -> tuple[CharKey, CharInfo]:
        """The key as the catalog spells it, and its characteristic; CatalogError if none."""
        service = self._catalog.service(key.service)
        if service.name == const.INFO_SERVICE and key.index != 1:
            raise CatalogError("a device has one AccessoryInformation service")
        char = self._catalog.characteristic(service, key.characteristic)
        return CharKey(ServiceKey(service.name, key.index), char.name), char

    def _availability(self, parsed: AvailabilityTopic, message: IncomingMessage) -> None:
        try:
            word = payload_text(message.payload).lower()
        except PayloadError as err:
            self._api.event(
                "invalid_message",
                f"{clipped(message.topic)}: {err}",
                topic=clipped(message.topic),
            )
            return
        if word not in (const.ONLINE, const.OFFLINE):
            if word:
                self._api.event(
                    "invalid_message",
                    f"{clipped(message.topic)}: expected {const.ONLINE} or {const.OFFLINE}, "
                    f"got {quoted(word)}",
                    topic=clipped(message.topic),
                )
            return
        self._devices.set_online(parsed.device_id, word == const.ONLINE)

    def _clear_retained_command(self, parsed: CommandTopic, message: IncomingMessage) -> None:
        """A retained command would act again on every restart; only a device set to
        `retain_commands` (it sleeps and picks commands up on waking) keeps its own."""
        if self._config.device_options(parsed.device_id).retain_commands:
            return
        self._api.event(
            "retained_command_cleared",
            f"{clipped(message.topic)} was retained; a command must not act again on every "
            "restart, so the bridge cleared it",
            topic=clipped(message.topic),
        )
        with contextlib.suppress(NotConnectedError):
            self._link.publish(message.topic, b"", retain=True)

    # -- back to the device (DeviceSource) ----------------------------------------------

    def send_command(self, device_id: str, key: CharKey, value: HapValue) -> None:
        options = self._config.device_options(device_id)
        payload = encode(value)
        if options.command_topic == COMMAND_TOPIC_SAME:
            self._link.publish(state_topic(self._base, device_id, key), payload, retain=True)
        else:
            topic = command_topic(self._base, device_id, key)
            self._link.publish(topic, payload, retain=options.retain_commands)

    def clear_retained(self, device: Device) -> int:
        topics = [
            state_topic(self._base, device.device_id, CharKey(key, name))
            for key, values in device.services.items()
            for name in values
        ]
        topics.append(availability_topic(self._base, device.device_id))
        if not self._link.connected:
            raise NotConnectedError("not connected to the MQTT broker; nothing removed")
        for topic in topics:
            self._link.publish(topic, b"", retain=True)
        return len(topics)
