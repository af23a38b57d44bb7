"""The accessory side: MQTT devices -> bridged accessories in Apple Home, and back.

Takes parsed device topics, keeps the registry, rebuilds a device's accessory when its
structure changes, paces value events, and publishes Home-app writes on MQTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any, cast

import pyqrcode
from zeroconf.asyncio import AsyncZeroconf

from .. import const
from ..api import BridgeApi
from ..config import COMMAND_TOPIC_SAME, Config
from ..errors import BridgeError, CatalogError, NotConnectedError, PayloadError
from ..homekit.catalog import Catalog, get_catalog
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
from ..store import JsonStore
from ..tasks import TaskSet
from .bridge import MqttAccessory, MqttBridge, build_accessory
from .hap_adapter import BridgeDriver
from .ids import IdStore
from .notify import EventPacer, Pace, pace_of
from .registry import Change, Device, Registry
from .setup_code import load_setup

_LOGGER = logging.getLogger(__name__)

#: Most services one device may show (a device must not flood the accessory database).
MAX_SERVICES_PER_DEVICE = 16
#: How often availability is checked against `expire_after`.
EXPIRY_CHECK_INTERVAL = 0.5
SETUP_QR_FILE = "setup-qr.png"


class ExposerSide:
    def __init__(
        self,
        *,
        config: Config,
        link: MqttLink,
        api: BridgeApi,
        zeroconf: AsyncZeroconf,
        version: str,
    ) -> None:
        self._config = config
        self._link = link
        self._api = api
        self._catalog: Catalog = get_catalog()
        data_dir = config.data_dir
        self._ids = IdStore(data_dir / "accessory-ids.json")
        self._devices_store = JsonStore(data_dir / "accessory-devices.json")
        self.registry = Registry.from_json(self._devices_store.load() or {})
        self.setup = load_setup(data_dir / "setup.json", config.homekit.setup_code)
        homekit = config.homekit
        listen_all = homekit.address in ("0.0.0.0", "::")  # noqa: S104
        self.driver = BridgeDriver(
            state_path=data_dir / "homekit-state.json",
            catalog=self._catalog,
            loop=asyncio.get_running_loop(),
            address=None if listen_all else homekit.address,
            listen_address=homekit.address,
            advertised_address=homekit.advertised_address,
            port=homekit.port,
            pincode=self.setup.code.encode("ascii"),
            zeroconf=zeroconf,
        )
        self.driver.state.setup_id = self.setup.setup_id
        self.bridge = MqttBridge(self.driver, homekit.name, self._show_setup_code)
        self.bridge.set_info_service(
            firmware_revision=version,
            manufacturer="mqtt-hk-bridge",
            model="MQTT Bridge",
            serial_number=self.driver.state.mac,
        )
        self.driver.add_accessory(self.bridge)
        self._pacer = EventPacer(self._send_event, config.timing.event_window)
        self._accessories: dict[str, MqttAccessory] = {}
        self._availability: dict[str, bool] = {}
        self._dirty = False
        self._started_at = time.time()
        self._config_pending: asyncio.TimerHandle | None = None
        self._loops = TaskSet(_LOGGER, "Accessory-side loop")
        self._is_foreign: Callable[[str], bool] = lambda _device_id: False
        for device in list(self.registry.devices.values()):
            self._expose(device)
        api.register("device/remove", self._request_remove)
        api.register("device/rename", self._request_rename)
        api.add_catalogue_source(self.catalogue)

    # -- life cycle ---------------------------------------------------------------------

    def set_foreign(self, is_foreign: Callable[[str], bool]) -> None:
        """Device ids that belong to the controller side: never exposed, never input."""
        self._is_foreign = is_foreign

    async def start(self) -> None:
        """Publish the bridge over HAP and mDNS, with every known accessory already in it."""
        await self.driver.async_start()
        self._started_at = time.time()
        self._loops.spawn(self._flush_loop(), name="flush-values")
        self._loops.spawn(self._expiry_loop(), name="expire-devices")

    async def stop(self) -> None:
        await self._loops.cancel()
        self._pacer.close()
        if self._config_pending is not None:
            self._config_pending.cancel()
            self.driver.refresh_config()
        self._flush()
        await self.driver.async_stop()

    @property
    def paired(self) -> bool:
        return bool(self.driver.state.paired)

    def _show_setup_code(self) -> None:
        """Unpaired: the setup code, its X-HM:// URI and a QR code, on the terminal and as PNG.

        Printed, not logged: the code must not end up in log collectors.
        """
        uri = self.bridge.xhm_uri()
        qr = pyqrcode.create(uri)
        png = self._config.data_dir / SETUP_QR_FILE
        try:
            qr.png(str(png), scale=8)
            png.chmod(0o600)
        except OSError as err:
            _LOGGER.warning("Could not write %s: %s", png, err)
        print(
            f"\nHomeKit setup code: {self.setup.code}\nSetup URI: {uri}\n"
            f"{qr.terminal(quiet_zone=2)}\nQR code also saved as {png}\n",
            flush=True,
        )

    # -- MQTT input -----------------------------------------------------------------------

    def handle(
        self, parsed: StateTopic | AvailabilityTopic | CommandTopic, message: IncomingMessage
    ) -> None:
        if self._is_foreign(parsed.device_id):
            return
        if isinstance(parsed, StateTopic):
            self._handle_state(parsed, message)
        elif isinstance(parsed, AvailabilityTopic):
            self._handle_availability(parsed, message)
        elif message.retain and message.payload:
            self._clear_retained_command(parsed, message)

    def _clear_retained_command(self, parsed: CommandTopic, message: IncomingMessage) -> None:
        """A retained command would act again on every restart; only a device set to
        `retain_commands` (it sleeps and picks commands up on waking) keeps its own."""
        if self._config.device_options(parsed.device_id).retain_commands:
            return
        self._api.event(
            "retained_command_cleared",
            f"{message.topic} was retained; a command must not act again on every restart, "
            "so the bridge cleared it",
            topic=message.topic,
        )
        with contextlib.suppress(NotConnectedError):
            self._link.publish(message.topic, b"", retain=True)

    def _handle_state(self, parsed: StateTopic, message: IncomingMessage) -> None:
        device_id = parsed.device_id
        try:
            key = self._canonical(parsed.key)
            if not message.payload:
                self._apply_change(device_id, self.registry.clear(device_id, key))
                return
            info = self._catalog.characteristics[key.characteristic]
            value = decode(message.payload, info)
            self._check_room(device_id, key)
        except (CatalogError, PayloadError, BridgeError) as err:
            self._api.event(
                "invalid_message",
                f"{message.topic}: {err}",
                topic=message.topic[:512],
                device=device_id,
            )
            return
        was_available = self._available(device_id)
        change = self.registry.set_value(device_id, key, value, time.time())
        if not message.retain:
            # A live message proves the device is up, whether or not it says `online` too;
            # a retained one may be older than its `offline`.
            self.registry.set_online(device_id, True, time.time())
        self._dirty = True
        pace = pace_of(key.characteristic)
        if change is Change.STRUCTURE:
            self._apply_change(device_id, change)
        elif pace is not Pace.IMMEDIATE:
            if change is Change.VALUE:
                self._value_changed(device_id, key, value, pace)
        elif not message.retain:
            # Every press is an event, the same button twice included; a retained press is
            # an old one the broker hands out again and must not press the button.
            self._value_changed(device_id, key, value, pace)
        if not was_available and self._available(device_id):
            self._availability_changed(device_id)

    def _canonical(self, key: CharKey) -> CharKey:
        service = self._catalog.service(key.service)
        if service.name == const.INFO_SERVICE and key.index != 1:
            raise CatalogError("a device has one AccessoryInformation service")
        char = self._catalog.characteristic(service, key.characteristic)
        return CharKey(ServiceKey(service.name, key.index), char.name)

    def _check_room(self, device_id: str, key: CharKey) -> None:
        device = self.registry.devices.get(device_id)
        services = device.services if device is not None else {}
        if key.service_key in services:
            return
        exposed = len(self._accessories)
        # Information alone does not make an accessory; its first real service does.
        if (
            key.service != const.INFO_SERVICE
            and device_id not in self._accessories
            and exposed >= const.MAX_BRIDGED_ACCESSORIES
        ):
            raise BridgeError(
                f"the bridge already shows {exposed} accessories, the most HomeKit "
                "allows on one bridge; device not added"
            )
        if len(services) >= MAX_SERVICES_PER_DEVICE:
            raise BridgeError(f"{device_id} already has {MAX_SERVICES_PER_DEVICE} services")

    def _handle_availability(self, parsed: AvailabilityTopic, message: IncomingMessage) -> None:
        try:
            word = payload_text(message.payload).lower()
        except PayloadError as err:
            self._api.event("invalid_message", f"{message.topic}: {err}", topic=message.topic)
            return
        if word not in (const.ONLINE, const.OFFLINE):
            if word:
                self._api.event(
                    "invalid_message",
                    f"{message.topic}: expected {const.ONLINE} or {const.OFFLINE}, "
                    f"got {word[:40]!r}",
                    topic=message.topic,
                )
            return
        if self.registry.set_online(parsed.device_id, word == const.ONLINE, time.time()):
            self._dirty = True
            self._availability_changed(parsed.device_id)

    # -- HAP side -------------------------------------------------------------------------

    def _apply_change(self, device_id: str, change: Change) -> None:
        if change is not Change.STRUCTURE:
            return
        self._dirty = True
        shown_before = device_id in self._accessories
        device = self.registry.devices.get(device_id)
        if device is None:
            self._unexpose(device_id)
        else:
            self._expose(device)
        accessory = self._accessories.get(device_id)
        if accessory is not None and device is not None:
            _LOGGER.info(
                "MQTT device %s %s the bridge as %r (aid %d): %s",
                device_id,
                "changed on" if shown_before else "added to",
                accessory.display_name,
                accessory.aid,
                ", ".join(str(key) for key in device.exposed_services),
            )
        elif shown_before:
            _LOGGER.info("MQTT device %s left the bridge", device_id)
        self._schedule_config_refresh()
        self._api.catalogue_changed()

    def _value_changed(self, device_id: str, key: CharKey, value: HapValue, pace: Pace) -> None:
        accessory = self._accessories.get(device_id)
        char = accessory.characteristics.get(key) if accessory else None
        if char is None:
            return  # an information-only device, not shown yet
        if char.value == value and pace is not Pace.IMMEDIATE:
            return
        # HAP-python keeps a button event's value null; the event itself carries it.
        char.set_value(value, should_notify=False)
        self._pacer.changed((device_id, key), value, pace)

    def _send_event(self, pacer_key: Hashable, value: Any) -> None:
        device_id, key = cast(tuple[str, CharKey], pacer_key)
        accessory = self._accessories.get(device_id)
        char = accessory.characteristics.get(key) if accessory else None
        if accessory is not None and char is not None:
            accessory.publish(value, char, immediate=True)

    def _display_name(self, device: Device) -> str:
        options = self._config.devices.get(device.device_id)
        configured = options.name if options else None
        return configured or device.name or str(device.info("Name") or device.device_id)

    def _expose(self, device: Device) -> None:
        device_id = device.device_id
        if not device.exposed_services:
            self._unexpose(device_id)
            return
        aid = self._ids.aid(device_id)
        accessory = build_accessory(
            self.driver,
            device,
            name=self._display_name(device),
            aid=aid,
            ids=self._ids,
            catalog=self._catalog,
            available=lambda: self._available(device_id),
            on_write=self._home_app_write,
        )
        self._ids.save()  # before any controller can see the new ids
        accessories = self.bridge.accessories
        accessories[aid] = accessory
        # Listed in aid order whatever the order of arrival, so the same devices always give
        # the same accessory database (and configuration number) after a restart.
        self.bridge.accessories = dict(sorted(accessories.items()))
        self._accessories[device_id] = accessory
        self._availability[device_id] = self._available(device_id)

    def _unexpose(self, device_id: str) -> None:
        accessory = self._accessories.pop(device_id, None)
        self._availability.pop(device_id, None)
        if accessory is None:
            return
        del self.bridge.accessories[accessory.aid]
        for key in accessory.characteristics:
            self._pacer.forget((device_id, key))

    def _schedule_config_refresh(self) -> None:
        """One configuration-number bump for a burst of structural changes."""
        if self._config_pending is not None:
            self._config_pending.cancel()
        self._config_pending = asyncio.get_running_loop().call_later(
            self._config.timing.config_debounce, self._refresh_config
        )

    def _refresh_config(self) -> None:
        self._config_pending = None
        self.driver.refresh_config()

    def _home_app_write(self, device_id: str, key: CharKey, value: HapValue) -> None:
        """A Home-app write -> the device's command topic. Runs inside the HAP request, so
        it must not wait; a NotConnectedError becomes -70402 for the Home app."""
        options = self._config.device_options(device_id)
        payload = encode(value)
        try:
            if options.command_topic == COMMAND_TOPIC_SAME:
                topic = state_topic(self._config.base_topic, device_id, key)
                self._link.publish(topic, payload, retain=True)
            else:
                topic = command_topic(self._config.base_topic, device_id, key)
                self._link.publish(topic, payload, retain=options.retain_commands)
        except NotConnectedError:
            # HAP-python has already taken the value; the device never got it.
            self._restore_value(device_id, key)
            raise
        # A device value still held back by the event window is older than this write.
        self._pacer.supersede((device_id, key))
        self.registry.set_value(device_id, key, value, self.registry.devices[device_id].last_seen)
        self._dirty = True

    def _restore_value(self, device_id: str, key: CharKey) -> None:
        accessory = self._accessories.get(device_id)
        char = accessory.characteristics.get(key) if accessory else None
        previous = self.registry.devices[device_id].value(key)
        if char is not None and previous is not None:
            char.set_value(previous, should_notify=False)

    # -- availability ---------------------------------------------------------------------

    def _available(self, device_id: str) -> bool:
        device = self.registry.devices.get(device_id)
        if device is None:
            return False
        return device.available(time.time(), self._config.device_options(device_id).expire_after)

    def _availability_changed(self, device_id: str) -> None:
        available = self._available(device_id)
        if self._availability.get(device_id) == available:
            return
        self._availability[device_id] = available
        _LOGGER.info(
            "%s is %s", device_id, "available" if available else "unavailable (No Response)"
        )
        self._api.catalogue_changed()

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_CHECK_INTERVAL)
            for device_id in list(self._availability):
                self._availability_changed(device_id)
            self._remove_silent_devices(time.time())

    def _remove_silent_devices(self, now: float) -> None:
        """`remove_after`: a device silent that long leaves the bridge (never by default)."""
        for device in list(self.registry.devices.values()):
            remove_after = self._config.device_options(device.device_id).remove_after
            # Silence while the bridge itself was down does not count against a device.
            silent_since = max(device.last_seen, self._started_at)
            if remove_after is None or now - silent_since <= remove_after:
                continue
            try:
                self._remove_device(device)
            except NotConnectedError:
                return  # its retained topics must go too; try again once connected
            self._api.event(
                "device_removed",
                f"{device.device_id} was silent for more than {remove_after:g} s "
                "(remove_after); removed from the bridge",
                device=device.device_id,
            )

    # -- persistence ----------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.timing.state_flush_interval)
            self._flush()

    def _flush(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        try:
            self._devices_store.save(self.registry.to_json())
        except OSError as err:
            self._dirty = True
            _LOGGER.error("Could not save %s: %s", self._devices_store.path, err)

    # -- bridge API -----------------------------------------------------------------------

    def catalogue(self) -> list[dict[str, Any]]:
        return [self._catalogue_entry(device) for device in self.registry.devices.values()]

    def _catalogue_entry(self, device: Device) -> dict[str, Any]:
        accessory = self._accessories.get(device.device_id)
        services = []
        for key, values in sorted(device.services.items()):
            characteristics = []
            for name in sorted(values):
                info = self._catalog.characteristics[name]
                characteristics.append(
                    {
                        "name": name,
                        "format": info.format,
                        "perms": list(info.perms),
                        # Its live value is retained there; a copy here would go stale.
                        "topic": state_topic(
                            self._config.base_topic, device.device_id, CharKey(key, name)
                        ),
                        **({"unit": info.unit} if info.unit else {}),
                    }
                )
            services.append(
                {"type": key.service, "index": key.index, "characteristics": characteristics}
            )
        return {
            "id": device.device_id,
            "origin": const.ORIGIN_MQTT,
            "name": self._display_name(device),
            "aid": accessory.aid if accessory else None,
            "available": self._available(device.device_id),
            "services": services,
        }

    async def _request_remove(self, body: dict[str, Any]) -> dict[str, Any]:
        device_id = str(body.get("id", ""))
        device = self.registry.devices.get(device_id)
        if device is None:
            raise BridgeError(f"no MQTT device {device_id!r}")
        return {"id": device_id, "cleared_topics": self._remove_device(device)}

    def _remove_device(self, device: Device) -> int:
        """Take a device off the bridge; returns how many retained topics were cleared.

        Raises NotConnectedError (nothing removed) while the broker is away.
        """
        device_id = device.device_id
        base = self._config.base_topic
        # Clear its retained topics too, or the broker would bring the device back.
        topics = [
            state_topic(base, device_id, CharKey(key, name))
            for key, values in device.services.items()
            for name in values
        ]
        topics.append(availability_topic(base, device_id))
        if not self._link.connected:
            raise NotConnectedError("not connected to the MQTT broker; nothing removed")
        for topic in topics:
            self._link.publish(topic, b"", retain=True)
        self.registry.remove(device_id)
        self._apply_change(device_id, Change.STRUCTURE)
        return len(topics)

    async def _request_rename(self, body: dict[str, Any]) -> dict[str, Any]:
        device_id = str(body.get("id", ""))
        name = str(body.get("name", "")).strip()
        device = self.registry.devices.get(device_id)
        if device is None:
            raise BridgeError(f"no MQTT device {device_id!r}")
        if not 1 <= len(name) <= 64:
            raise BridgeError("name must be 1-64 characters")
        device.name = name
        self._dirty = True
        self._expose(device)
        self._api.catalogue_changed()
        return {"id": device_id, "name": name}
