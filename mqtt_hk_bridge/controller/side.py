"""The controller side: HomeKit accessories the bridge has paired with, mirrored on MQTT.

app.py builds one `ControllerSide` on the shared MqttLink, BridgeApi, Router and
AsyncZeroconf; it takes the topics of the device ids it `owns()` from the router (acting on
`/set` and `/get`), and app.py calls `republish()` after every MQTT (re)connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiohomekit.controller import Controller
from aiohomekit.exceptions import HomeKitException
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

from .. import const
from ..api import BridgeApi
from ..config import Config
from ..errors import BridgeError, NotConnectedError, StateFileError
from ..mqtt.link import IncomingMessage, MqttLink
from ..mqtt.topics import CommandTopic, command_topic
from ..routing import DeviceTopic, Router
from ..tasks import TaskSet
from .aiohomekit_adapter import (
    bluetooth_available,
    forget_pairing,
    loaded_pairing,
    start_controller,
    stop_controller,
)
from .bluetooth import wanted as wanted_bluetooth
from .characteristic_cache import CACHE_FILE, StoredCharacteristicCache
from .ha_discovery import DiscoveryPublisher
from .mirror import AccessoryMirror, RetainedTopics
from .pairings import (
    PairingError,
    PairingStore,
    discoveries,
    own_hap_device_id,
    pair_accessory,
    unpair_accessory,
)
from .sessions import PairingSession
from .settings import ControllerSettings

_LOGGER = logging.getLogger(__name__)

#: What a bridged accessory adds to its bridge's alias: `<alias>-<aid>`.
_BRIDGED_SUFFIX = re.compile(r"-\d+$")
#: How often the pairing file is checked for pairings made by the CLI next to the daemon.
PAIRING_FILE_CHECK_INTERVAL = 1.0


def _signature(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is replaced or rewritten (our store always replaces it)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class ControllerSide:
    def __init__(
        self,
        *,
        config: Config,
        link: MqttLink,
        api: BridgeApi,
        router: Router,
        zeroconf: AsyncZeroconf,
        settings: ControllerSettings | None = None,
    ) -> None:
        self._config = config
        # `settings` overrides config's `controller:` section (tests shorten timings).
        self.settings: ControllerSettings = settings or config.controller
        self._base = config.base_topic
        self._link = link
        self._api = api
        self._zeroconf = zeroconf
        self.store = PairingStore(config.data_dir / self.settings.pairing_file)
        self._cache = StoredCharacteristicCache(config.data_dir / CACHE_FILE)
        self._retained = RetainedTopics(link)
        self.controller: Controller | None = None
        #: The ids of the devices the accessory side knows (set by the app): a new pairing's
        #: alias may not take over their topics.
        self.mqtt_devices: Callable[[], Iterable[str]] = lambda: ()
        self._bluetooth = False
        self._browsers: list[AsyncServiceBrowser] = []
        self.sessions: dict[str, PairingSession] = {}
        self._pair_lock = asyncio.Lock()
        self._commands = TaskSet(_LOGGER, "Controller command")
        self._watch = TaskSet(_LOGGER, "Following the pairing file")
        self._pairing_file: tuple[int, int, int] | None = None
        self._discovery = (
            DiscoveryPublisher(config.homeassistant, self._base, link, router)
            if config.homeassistant.discovery
            else None
        )
        router.own_devices(self.owns, self.handle)

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Load pairings (a corrupt file raises StateFileError before any network I/O),
        start aiohomekit and connect every pairing."""
        pairings = self.store.load()
        self._bluetooth = bluetooth = wanted_bluetooth(self.settings.bluetooth)
        self.controller, self._browsers = await start_controller(
            self._zeroconf, self._cache, bluetooth=bluetooth
        )
        if not bluetooth:
            _LOGGER.info(
                "Bluetooth is off (%s): Bluetooth accessories cannot be found or reached; "
                "IP and Thread ones work as usual",
                "controller.bluetooth: false"
                if self.settings.bluetooth is False
                else "no adapter here; controller.bluetooth: true turns it on",
            )
        elif not bluetooth_available(self.controller):
            _LOGGER.info(
                "Bluetooth is not available here (no adapter, or no BlueZ): Bluetooth "
                "accessories cannot be found or reached; IP and Thread ones work as usual"
            )
        for alias, data in pairings.items():
            self._load(alias, data)
        self._pairing_file = _signature(self.store.path)
        self._watch.spawn(self._follow_pairing_file(), name="follow-pairing-file")
        self._api.register("discover", self._discover)
        self._api.register("pair", self._pair)
        self._api.register("unpair", self._unpair)
        self._api.register("list-pairings", self._list_pairings)
        self._api.add_catalogue_source(self.catalogue)
        self._catalogue_changed()
        _LOGGER.info("Controller side started with %d pairing(s)", len(self.sessions))

    async def stop(self) -> None:
        await self._watch.cancel()
        await self._commands.cancel()
        for session in list(self.sessions.values()):
            await session.stop()
            session.mirror.set_available(False)  # offline as a clean goodbye
        self.sessions.clear()
        if self.controller is not None:
            await stop_controller(self.controller, self._browsers)
            self._cache.flush()
            self.controller = None
            self._browsers = []

    def _start_session(self, alias: str, pairing: Any) -> PairingSession:
        session = PairingSession(
            alias,
            pairing,
            AccessoryMirror(alias, self._base, self._retained),
            self.settings,
            store=self.store,
            event=self._api.event,
            catalogue_changed=self._catalogue_changed,
        )
        self.sessions[alias] = session
        session.start()
        return session

    async def _follow_pairing_file(self) -> None:
        """Take up pairings that `mqtt-hk-bridge pair` / `unpair` made next to the daemon."""
        while True:
            await asyncio.sleep(PAIRING_FILE_CHECK_INTERVAL)
            signature = _signature(self.store.path)
            if signature == self._pairing_file:
                continue
            self._pairing_file = signature
            async with self._pair_lock:
                await self._sync_sessions()

    def _load(self, alias: str, data: dict[str, Any]) -> bool:
        """Start the session of a stored pairing; a pairing aiohomekit cannot load is
        skipped, with an event saying why."""
        controller = self._require_controller()
        try:
            pairing = controller.load_pairing(alias, data)
        except HomeKitException as err:
            reason = str(err)
            if data.get("Connection") == "BLE" and not self._bluetooth:
                reason = "a Bluetooth pairing, and Bluetooth is off here (controller.bluetooth)"
            self._api.event("pairing_skipped", f"{alias}: {reason}", device=alias)
            return False
        self._start_session(alias, pairing)
        return True

    async def _sync_sessions(self) -> None:
        controller = self._require_controller()
        try:
            pairings = self.store.load()
        except StateFileError as err:
            self._api.event("pairing_file_unreadable", str(err))
            return
        for alias in sorted(set(self.sessions) - set(pairings)):
            session = self.sessions.pop(alias)
            await session.stop()
            session.mirror.unload()
            forget_pairing(controller, alias)
            _LOGGER.info("Pairing %s was removed from the pairing file", alias)
        for alias in sorted(set(pairings) - set(self.sessions)):
            if self._load(alias, pairings[alias]):
                _LOGGER.info("Pairing %s was added to the pairing file", alias)
        self._catalogue_changed()

    # ---- routing ---------------------------------------------------------------------
    def _alias_of(self, device_id: str) -> str | None:
        """`<alias>` or `<alias>-<aid>` -> alias (an alias never ends in `-<digits>`)."""
        alias = _BRIDGED_SUFFIX.sub("", device_id)
        return alias if alias in self.store else None

    def owns(self, device_id: str) -> bool:
        """True for every device id a pairing gives (`<alias>`, `<alias>-<aid>`), connected
        or not: the accessory side never exposes these, nor takes their topics as input."""
        return self._alias_of(device_id) is not None

    def handle(self, parsed: DeviceTopic, message: IncomingMessage) -> None:
        """A topic of one of our devices: `/set` and `/get` act; our own mirror's state and
        availability topics are never device input."""
        if isinstance(parsed, CommandTopic):
            self.handle_command(parsed, message.retain, message.payload)

    def handle_command(self, topic: CommandTopic, retain: bool, payload: bytes) -> None:
        """`/set` and `/get` for an owned device; never blocks."""
        if retain:
            if payload:
                self._api.event(
                    "retained_command_ignored",
                    f"retained {topic.action} for {topic.device_id}/{topic.key} ignored and "
                    "cleared (commands must not be retained)",
                    device=topic.device_id,
                )
                with contextlib.suppress(NotConnectedError):
                    self._link.publish(
                        command_topic(self._base, topic.device_id, topic.key, topic.action),
                        b"",
                        retain=True,
                    )
            return
        if topic.action == const.SET_SUFFIX and not payload:
            return  # the zero-length payload that clears a retained command
        alias = self._alias_of(topic.device_id)
        session = self.sessions.get(alias) if alias is not None else None
        if session is None:
            self._api.event(
                "unknown_device",
                f"{topic.device_id} is not a paired accessory",
                device=topic.device_id,
            )
            return
        self._commands.spawn(session.command(topic, payload))

    async def republish(self) -> None:
        """After an MQTT (re)connect: every retained topic of every paired accessory, and
        their Home Assistant discovery."""
        self._retained.republish()
        if self._discovery is not None:
            self._discovery.republish()

    def _catalogue_changed(self) -> None:
        """An accessory was paired, unpaired, read anew or changed availability."""
        self._api.catalogue_changed()
        if self._discovery is not None:
            pairings = self.store.all()
            self._discovery.update(
                (session.mirror, str(pairings[alias]["AccessoryPairingID"]))
                for alias, session in self.sessions.items()
                if alias in pairings
            )

    def catalogue(self) -> list[dict[str, Any]]:
        return [
            entry
            for session in self.sessions.values()
            for entry in session.mirror.catalogue(session.link.transport)
        ]

    # ---- bridge/request handlers -----------------------------------------------------
    def _require_controller(self) -> Controller:
        if self.controller is None:
            raise BridgeError("the controller side is not running")
        return self.controller

    async def _discover(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        controller = self._require_controller()
        wait = float(body.get("timeout", 0))
        if wait > 0:
            await asyncio.sleep(wait)  # let zeroconf answers come in
        return discoveries(controller, self.store, own_hap_device_id(self._config.data_dir))

    async def _pair(self, body: dict[str, Any]) -> dict[str, Any]:
        controller = self._require_controller()
        device_id, setup_code, alias = body["device_id"], body["setup_code"], body["alias"]
        async with self._pair_lock:
            try:
                pairing = await pair_accessory(
                    controller,
                    self.store,
                    device_id=device_id,
                    setup_code=setup_code,
                    alias=alias,
                    find_timeout=body.get("timeout", self.settings.discover_timeout),
                    own_device_id=own_hap_device_id(self._config.data_dir),
                    mqtt_devices=self.mqtt_devices(),
                )
            except HomeKitException as err:
                raise PairingError(
                    f"pairing {device_id} failed: {err or type(err).__name__}"
                ) from err
            self._start_session(alias, pairing)
        self._catalogue_changed()
        return {"alias": alias, "device_id": device_id.lower()}

    async def _unpair(self, body: dict[str, Any]) -> dict[str, Any]:
        controller = self._require_controller()
        alias = body["alias"]
        if alias not in self.store:
            raise PairingError(f"no pairing called {alias!r}")
        async with self._pair_lock:
            session = self.sessions.pop(alias, None)
            if session is not None:
                await session.stop(shutdown=False)
            try:
                confirmed = await unpair_accessory(
                    controller, self.store, alias, force=body.get("force", False)
                )
            except PairingError:
                kept = loaded_pairing(controller, alias)
                if session is not None and kept is not None:  # kept: connect it again
                    self._start_session(alias, kept)
                raise
            if session is not None:
                session.mirror.unload()
        self._catalogue_changed()
        return {"alias": alias, "confirmed": confirmed}

    async def _list_pairings(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        result = []
        for alias, data in self.store.all().items():
            session = self.sessions.get(alias)
            result.append(
                {
                    "alias": alias,
                    "device_id": str(data.get("AccessoryPairingID", "")).lower(),
                    "connection": data.get("Connection", "IP"),
                    "address": data.get("AccessoryIP"),
                    "port": data.get("AccessoryPort"),
                    "connected": bool(session and session.connected),
                    "available": bool(session and session.mirror.available),
                    "devices": sorted(session.mirror.devices) if session else [],
                }
            )
        return result
