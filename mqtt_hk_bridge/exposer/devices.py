"""MQTT devices and their accessories in the Home app, kept in step: every change a source
reports goes through here, so the registry and the Home app never disagree.

Sources (our own topic layout, and more) turn MQTT messages into values and availability
and send Home-app writes back out in the device's own form (`DeviceSource`). A device id
belongs to the source that reported it first; another source may not take it over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from .. import const
from ..config import Config
from ..errors import BridgeError
from ..mqtt.payloads import HapValue
from ..mqtt.topics import CharKey
from . import bridge_layout
from .bridge_assignments import NoRoom
from .device_filter import device_filter
from .device_store import DeviceStore
from .hap_bridges import HapBridges
from .narrowing import Narrowing
from .notify import Pace, pace_of
from .registry import Change, Device, Registry

_LOGGER = logging.getLogger(__name__)

#: Most services one device may show (a device must not flood the accessory database).
MAX_SERVICES_PER_DEVICE = 16


class DeviceSource(Protocol):
    """Where devices come from, and how a write or a removal goes back to them."""

    def send_command(self, device_id: str, key: CharKey, value: HapValue) -> None:
        """Publish a Home-app write; raises NotConnectedError while the broker is away."""

    def clear_retained(self, device: Device) -> int:
        """Clear the device's retained topics (it is being removed); how many were cleared.
        Raises NotConnectedError while the broker is away."""


#: Devices remembered without a service to show (only AccessoryInformation so far): the most
#: at once, and how long one is kept silent. Anyone who may publish can invent device ids.
MAX_WAITING_DEVICES = 256
WAITING_EXPIRY = 3600.0
#: The device limit is reported at most this often.
LIMIT_REPORT_INTERVAL = 60.0
#: A device that could not be shown is tried again after this long, doubling up to the max.
SHOW_RETRY_MIN = 1.0
SHOW_RETRY_MAX = 60.0


class WaitingLimitReached(BridgeError):
    """A new device was not remembered: too many wait for a first service (reported once a
    minute by ExposedDevices itself, not per message)."""


class ExposedDevices:
    def __init__(
        self,
        *,
        config: Config,
        store: DeviceStore,
        bridges: HapBridges,
        catalogue_changed: Callable[[], None],
        event: Callable[..., None],
    ) -> None:
        self._config = config
        self._store = store
        self.bridges = bridges
        #: Whether this process shows a device id at all (`device_filter`).
        self.takes = device_filter(config.device_filter)
        self._catalogue_changed = catalogue_changed
        self._event = event
        #: Devices the Home app cannot be shown yet: saving their ids failed (disk full, out
        #: of file descriptors). Tried again with backoff until it works.
        self._unshown: set[str] = set()
        #: Devices told they were not shown, to be told `device_shown` once they are served.
        self._to_announce: set[str] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._retry_delay = SHOW_RETRY_MIN
        #: Devices with services that no bridge may take now (told once each); tried again
        #: when a device leaves a bridge.
        self._no_room: set[str] = set()
        self._limit_reported = -LIMIT_REPORT_INTERVAL
        self._sources: dict[str, DeviceSource] = {}
        #: Device ids a source defines (a mapping, a discovery config): no other may report them.
        self._claims: dict[str, str] = {}
        #: Availability as last shown, to log and republish each change once.
        self._shown_availability: dict[str, bool] = {}
        #: How long each device may be silent by what its source says (a discovery config's
        #: `expire_after`), where the device's own options do not say.
        self._source_expiry: dict[str, float] = {}
        #: Whether the device's own options set `expire_after` (bridge.yaml's `devices.<id>`
        #: or a `device/options` request): set by the side that keeps them.
        self.sets_expiry: Callable[[str], bool] = lambda device_id: False
        bridges.served = self._served
        bridges.not_served = self._not_served

    @property
    def registry(self) -> Registry:
        return self._store.registry

    def add_source(self, name: str, source: DeviceSource) -> None:
        self._sources[name] = source

    def _source_of(self, device: Device) -> DeviceSource:
        source = self._sources.get(device.source)
        if source is None:
            raise BridgeError(f"{device.device_id} comes from {device.source}, which is off")
        return source

    def forget_devices_of_sources_off(self) -> None:
        """At start-up, once every source is added: remembered devices whose source is
        off, or that `device_filter` leaves out, leave the bridge (their aids stay
        reserved for when they come back)."""
        for device in list(self.registry.devices.values()):
            if device.source not in self._sources:
                why = f"came from {device.source}, which is off"
            elif not self.takes(device.device_id):
                why = "is left out by device_filter"
            else:
                continue
            _LOGGER.info("%s %s; not shown", device.device_id, why)
            self.registry.remove(device.device_id)
            self._store.changed()

    def claim(self, device_id: str, source: str) -> None:
        """`source` defines the device: from now on no other source may report it. A
        remembered device another defining source no longer claims moves over (a device
        moved from a mapping to discovery keeps its aid); one our topic layout reported
        stays its own. Raises BridgeError when the id is taken."""
        owner = self._claims.get(device_id)
        if owner is not None and owner != source:
            raise BridgeError(f"device id {device_id} is already defined by {owner}")
        device = self.registry.devices.get(device_id)
        if device is not None and device.source != source:
            if device.source == const.SOURCE_HOMEKIT_TOPICS:
                raise BridgeError(
                    f"device id {device_id} is already used by {device.source} (remove it "
                    "with bridge/request/device/remove first)"
                )
            _LOGGER.info("%s moves from %s to %s", device_id, device.source, source)
            self.forget(device_id)
        self._claims[device_id] = source

    def release(self, device_id: str, source: str) -> None:
        """The source no longer defines the device: it leaves the bridge."""
        if self._claims.get(device_id) == source:
            del self._claims[device_id]
            self.forget(device_id)

    def claimed(self, source: str) -> set[str]:
        return {device_id for device_id, owner in self._claims.items() if owner == source}

    def _report_waiting_limit(self, waiting: int, device_id: str) -> None:
        now = time.monotonic()
        if now - self._limit_reported < LIMIT_REPORT_INTERVAL:
            return  # once a minute: a flood of new ids must not flood the log
        self._limit_reported = now
        self._event(
            "device_limit",
            f"{waiting} devices already wait for a first service (they published only "
            f"AccessoryInformation); new ones such as {device_id} are not remembered until "
            "some show a service or fall silent for an hour",
            device=device_id,
        )

    def waiting_devices(self) -> list[Device]:
        """Devices remembered that show nothing in the Home app (no service yet)."""
        return [d for d in self.registry.devices.values() if not d.exposed_services]

    def forget(self, device_id: str) -> None:
        """Take a device off the bridge without touching its topics (its aid is kept)."""
        if self.registry.remove(device_id):
            self._store.changed()
            self._structure_changed(device_id)

    def show_known(self) -> None:
        """At start-up: every device remembered from the last run, before HAP is served.
        Those with a bridge go first, so a device new to the bridges cannot take the place
        of one that has it."""
        devices = sorted(
            self.registry.devices.values(),
            key=lambda device: self.bridges.assigned(device.device_id) is None,
        )
        for device in devices:
            self._show(device)

    # -- what sources report ------------------------------------------------------------

    def check_room(
        self, device_id: str, key: CharKey, source: str = const.SOURCE_HOMEKIT_TOPICS
    ) -> None:
        """Raise BridgeError when the value cannot be taken: the device id belongs to another
        source, or the value would need a service the bridge has no room for."""
        owner = self._claims.get(device_id)
        if owner is not None and owner != source:
            raise BridgeError(f"device id {device_id} is already defined by {owner}")
        device = self.registry.devices.get(device_id)
        if device is not None and device.source != source:
            raise BridgeError(f"device id {device_id} is already taken by {device.source}")
        services = device.services if device is not None else {}
        if key.service_key in services:
            return
        if device is None and key.service == const.INFO_SERVICE:
            waiting = len(self.registry.devices) - self.bridges.bridged_count
            if waiting >= MAX_WAITING_DEVICES:
                # Anyone may publish: what the bridge remembers for them must be bounded.
                self._report_waiting_limit(waiting, device_id)
                raise WaitingLimitReached(device_id)
        # Information alone does not make an accessory; its first real service does.
        if key.service != const.INFO_SERVICE and not self.bridges.shows(device_id):
            problem = self.bridges.room_problem(device_id)
            if problem is not None:
                raise BridgeError(problem)
        if len(services) >= MAX_SERVICES_PER_DEVICE:
            raise BridgeError(f"{device_id} already has {MAX_SERVICES_PER_DEVICE} services")

    def set_value(
        self,
        device_id: str,
        key: CharKey,
        value: HapValue,
        *,
        live: bool,
        source: str = const.SOURCE_HOMEKIT_TOPICS,
    ) -> None:
        """A value from the device, checked with `check_room` first. `live` is False for a
        retained message, which may be older than the device's `offline` and never presses a
        button again."""
        self.set_values(device_id, [(key, value)], live=live, source=source)

    def set_values(
        self,
        device_id: str,
        values: list[tuple[CharKey, HapValue]],
        *,
        live: bool,
        source: str = const.SOURCE_HOMEKIT_TOPICS,
        narrowed: dict[CharKey, Narrowing] | None = None,
    ) -> None:
        """Several values from one message, each checked with `check_room` first: the
        accessory is rebuilt at most once, and the events go out together (HAP-python
        sends the events of one loop turn in one frame). `narrowed`: what the device can
        do, from its source, for a device this message makes (a known one has it already:
        `set_narrowing`)."""
        new = device_id not in self.registry.devices
        was_available = self.available(device_id)
        now = time.time()
        events: list[tuple[CharKey, HapValue, Pace]] = []
        structure = False
        for key, value in values:
            change = self.registry.set_value(device_id, key, value, now, source)
            pace = pace_of(key.characteristic)
            if change is Change.STRUCTURE:
                structure = True
            elif pace is not Pace.IMMEDIATE:
                if change is Change.VALUE:
                    events.append((key, value, pace))
            elif live:
                # Every press is an event, the same button twice included.
                events.append((key, value, pace))
        if new and narrowed:
            self.registry.set_narrowing(device_id, narrowed)
        if live:
            # A live message proves the device is up, whether or not it says `online` too.
            self.registry.set_online(device_id, True, now)
        self._store.changed()
        if structure:
            self._structure_changed(device_id)
        else:
            for key, value, pace in events:
                self.bridges.set_value(device_id, key, value, pace)
        if not was_available and self.available(device_id):
            self.availability_changed(device_id)

    def set_narrowing(self, device_id: str, narrowed: dict[CharKey, Narrowing]) -> None:
        """What the device can do of its characteristics, from its source: the accessory
        is built again when that changed."""
        if self.registry.set_narrowing(device_id, narrowed):
            self._store.changed()
            self._structure_changed(device_id)

    def clear_value(self, device_id: str, key: CharKey) -> None:
        """The device's retained value was cleared: the characteristic goes."""
        if self.registry.clear(device_id, key) is Change.STRUCTURE:
            self._store.changed()
            self._structure_changed(device_id)

    def set_online(self, device_id: str, online: bool) -> None:
        if self.registry.set_online(device_id, online, time.time()):
            self._store.changed()
            self.availability_changed(device_id)

    def _structure_changed(self, device_id: str) -> None:
        shown_before = self.bridges.shows(device_id)
        device = self.registry.devices.get(device_id)
        if device is None:
            self._hide(device_id)
        else:
            self._show(device)
        aid = self.bridges.aid(device_id)
        number = self.bridges.bridge_of(device_id)
        if aid is not None and device is not None:
            _LOGGER.info(
                "MQTT device %s %s %s as %r (aid %d): %s",
                device_id,
                "changed on" if shown_before else "added to",
                "the bridge" if number == bridge_layout.FIRST else f"bridge {number}",
                self.display_name(device),
                aid,
                ", ".join(str(key) for key in device.exposed_services),
            )
        elif shown_before:
            _LOGGER.info("MQTT device %s left the bridge", device_id)
        self._catalogue_changed()

    # -- the Home app -------------------------------------------------------------------

    def display_name(self, device: Device) -> str:
        options = self._config.devices.get(device.device_id)
        configured = options.name if options else None
        return configured or device.name or str(device.info("Name") or device.device_id)

    def _show(self, device: Device) -> None:
        device_id = device.device_id
        if not device.exposed_services:
            self._hide(device_id)
            return
        try:
            left = self.bridges.show(
                device,
                name=self.display_name(device),
                available=lambda: self.available(device_id),
            )
        except NoRoom as err:
            self._hide(device_id)
            self._wait_for_room(device_id, err)
            return
        except OSError as err:
            self._show_failed(device_id, err)
            return
        waited = device_id in self._no_room
        self._no_room.discard(device_id)
        number = self.bridges.bridge_of(device_id)
        if left is not None:
            _LOGGER.info(
                "MQTT device %s moved from bridge %d to bridge %d (aid %s there): the Home app "
                "shows it as a new accessory of bridge %d",
                device_id,
                left,
                number,
                self.bridges.aid(device_id),
                number,
            )
        pinned = self._config.device_options(device_id).bridge
        if pinned is not None and pinned != number:
            self._event(
                "device_not_moved",
                f"{device_id} stays on bridge {number}: bridge {pinned}, which its `bridge` "
                f"option names, has no room",
                device=device_id,
            )
        self._shown_availability[device_id] = self.available(device_id)
        if device_id in self._unshown or waited:
            self._to_announce.add(device_id)
        if self.bridges.serves(device_id):
            self._served([device_id])

    def _served(self, device_ids: list[str]) -> None:
        """New accessories the Home app sees now: each one told it was not shown hears
        that it is."""
        for device_id in device_ids:
            if device_id in self._to_announce:
                self._to_announce.discard(device_id)
                self._unshown.discard(device_id)
                self._event(
                    "device_shown", f"{device_id} is shown in the Home app now", device=device_id
                )
        if not self._unshown:
            self._retry_delay = SHOW_RETRY_MIN

    def _not_served(self, device_id: str, err: Exception) -> None:
        """A new accessory could not be served (its ids could not be saved): it waits."""
        self._shown_availability.pop(device_id, None)
        self._show_failed(device_id, err)
        self._catalogue_changed()

    def _wait_for_room(self, device_id: str, err: NoRoom) -> None:
        """No bridge may take the device now: say so once; it is tried again when another
        device leaves a bridge."""
        if device_id not in self._no_room:
            self._no_room.add(device_id)
            self._event(
                "device_not_shown",
                f"{device_id} cannot be shown in the Home app yet: {err}",
                device=device_id,
            )

    def _room_freed(self) -> None:
        for device_id in sorted(self._no_room):
            device = self.registry.devices.get(device_id)
            if device is None:
                self._no_room.discard(device_id)
            elif not self.bridges.shows(device_id):
                self._structure_changed(device_id)

    def _show_failed(self, device_id: str, err: Exception) -> None:
        """The registry holds the device but the Home app does not show it: say so once and
        try again, until the save works (the two must not disagree for good)."""
        if device_id not in self._unshown:
            self._unshown.add(device_id)
            self._event(
                "device_not_shown",
                f"{device_id} cannot be shown in the Home app yet: saving its accessory ids "
                f"failed ({err}); trying again",
                device=device_id,
            )
        if self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(
                self._retry_delay, self._show_unshown
            )
            self._retry_delay = min(self._retry_delay * 2, SHOW_RETRY_MAX)

    def _show_unshown(self) -> None:
        self._retry = None
        for device_id in sorted(self._unshown):
            if device_id in self.registry.devices:
                self._structure_changed(device_id)
            else:
                self._unshown.discard(device_id)  # gone meanwhile
        if not self._unshown:
            self._retry_delay = SHOW_RETRY_MIN

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()

    def _hide(self, device_id: str) -> None:
        if self.bridges.shows(device_id):
            self.bridges.hide(device_id)
            if self._no_room:
                asyncio.get_running_loop().call_soon(self._room_freed)
        self._shown_availability.pop(device_id, None)
        self._to_announce.discard(device_id)

    def home_app_write(self, device_id: str, key: CharKey, value: HapValue) -> None:
        """A Home-app write -> the device. Runs inside the HAP request, so it must not wait;
        a BridgeError (not connected, no command form) becomes -70402 for the Home app."""
        try:
            self._source_of(self.registry.devices[device_id]).send_command(device_id, key, value)
        except BridgeError:
            # HAP-python has already taken the value; the device never got it.
            previous = self.registry.devices[device_id].value(key)
            if previous is not None:
                self.bridges.restore_value(device_id, key, previous)
            raise
        # A device value still held back by the event window is older than this write.
        self.bridges.supersede(device_id, key)
        self.registry.set_value(device_id, key, value, self.registry.devices[device_id].last_seen)
        self._store.changed()

    # -- availability -------------------------------------------------------------------

    def available(self, device_id: str) -> bool:
        device = self.registry.devices.get(device_id)
        if device is None:
            return False
        return device.available(time.time(), self._expire_after(device_id))

    def set_source_expiry(self, device_id: str, seconds: float | None) -> None:
        """How long the device may be silent, by what its source says (None: not said)."""
        if seconds is None:
            self._source_expiry.pop(device_id, None)
        else:
            self._source_expiry[device_id] = seconds
        if device_id in self.registry.devices:
            self.availability_changed(device_id)

    def _expire_after(self, device_id: str) -> float | None:
        source = self._source_expiry.get(device_id)
        if source is None or self.sets_expiry(device_id):
            return self._config.device_options(device_id).expire_after
        return source

    def availability_changed(self, device_id: str) -> None:
        """Log and republish the device's availability if it differs from what was shown."""
        available = self.available(device_id)
        if self._shown_availability.get(device_id, available) == available:
            return
        self._shown_availability[device_id] = available
        _LOGGER.info(
            "%s is %s", device_id, "available" if available else "unavailable (No Response)"
        )
        self._catalogue_changed()

    def shown_devices(self) -> list[str]:
        return list(self._shown_availability)

    # -- requests -----------------------------------------------------------------------

    def remove(self, device: Device) -> int:
        """Take a device off the bridge and clear its retained topics (or the broker would
        bring it back); returns how many were cleared. Raises NotConnectedError (nothing
        removed) while the broker is away."""
        cleared = self._source_of(device).clear_retained(device)
        self.registry.remove(device.device_id)
        self._store.changed()
        self._structure_changed(device.device_id)
        return cleared

    def check_move(self, device_id: str, number: int) -> None:
        """Raise BridgeError when the device could not go to bridge `number` now."""
        self.bridges.check_move(device_id, number)

    def place_again(self, device_id: str) -> None:
        """Its `bridge` option changed: show it where the option now says (a move)."""
        device = self.registry.devices.get(device_id)
        if device is not None:
            self._structure_changed(device_id)

    def rename(self, device: Device, name: str) -> None:
        device.name = name
        self._store.changed()
        self._show(device)
        self._catalogue_changed()
