"""One HAP bridge as the Home app sees it: its driver, its bridged accessories, their ids,
its setup code and its state files. It knows nothing of MQTT: it shows the devices it is
given and hands Home-app writes to `on_write`. A process may run several (`HapBridges`);
bridge n's port, name and folder follow `bridge_layout`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pyqrcode
from zeroconf.asyncio import AsyncZeroconf

from .. import const
from ..config import HomeKitConfig
from ..homekit.catalog import Catalog
from ..mqtt.payloads import HapValue
from ..mqtt.topics import CharKey
from ..store import ensure_private_dir
from . import bridge_layout
from .bridge import MqttAccessory, MqttBridge, WriteHandler, build_accessory, show_value
from .hap_adapter import BridgeDriver
from .ids import IdStore
from .notify import EventPacer, Pace
from .registry import Device
from .setup_code import load_setup

_LOGGER = logging.getLogger(__name__)

SETUP_QR_FILE = "setup-qr.png"
#: How long a new accessory waits before it is built and served: the new accessories of a
#: burst (a start-up flood of retained topics) are built once each and their ids saved
#: together, instead of a build and an fsynced save per message. The Home app learns of a
#: new accessory only with the configuration number, after `config_debounce` (1 s) anyway.
NEW_ACCESSORY_DELAY = 0.1


@dataclass
class _NewAccessory:
    """A device to show that the Home app has not seen yet, as it was last given."""

    device: Device
    name: str
    available: Callable[[], bool]


NotServed = Callable[[list[str], Exception], None]


@dataclass(frozen=True)
class BridgeCommon:
    """What every HAP bridge of the process is made with."""

    homekit: HomeKitConfig
    data_dir: Path
    zeroconf: AsyncZeroconf
    catalog: Catalog
    version: str
    event_window: float
    config_debounce: float
    on_write: WriteHandler


class HapBridge:
    def __init__(self, common: BridgeCommon, number: int = bridge_layout.FIRST) -> None:
        homekit, catalog, self._common = common.homekit, common.catalog, common
        self.number = number
        self.name = bridge_layout.name(homekit.name, number)
        self.port = bridge_layout.port(homekit.port, number)
        self._state_dir = bridge_layout.state_dir(common.data_dir, number)
        ensure_private_dir(self._state_dir)
        self._ids = IdStore(self._state_dir / "accessory-ids.json")
        self.setup = load_setup(self._state_dir / "setup.json", homekit.setup_code)
        listen_all = homekit.address in ("0.0.0.0", "::")  # noqa: S104
        self.driver = BridgeDriver(
            state_path=self._state_dir / const.HAP_STATE_FILE,
            catalog=catalog,
            loop=asyncio.get_running_loop(),
            address=None if listen_all else homekit.address,
            listen_address=homekit.address,
            advertised_address=homekit.advertised_address,
            port=self.port,
            pincode=self.setup.code.encode("ascii"),
            zeroconf=common.zeroconf,
        )
        self.driver.state.setup_id = self.setup.setup_id
        self.bridge = MqttBridge(self.driver, self.name, self._show_setup_code)
        self.bridge.set_info_service(
            firmware_revision=common.version,
            manufacturer="mqtt-hk-bridge",
            model="MQTT Bridge",
            serial_number=self.driver.state.mac,
        )
        self.driver.add_accessory(self.bridge)
        self._pacer = EventPacer(self._send_event, common.event_window)
        #: The accessories served, by device id.
        self._accessories: dict[str, MqttAccessory] = {}
        #: Devices whose accessory is new, built and served with the next batch.
        self._new: dict[str, _NewAccessory] = {}
        self._new_pending: asyncio.TimerHandle | None = None
        #: Told which new accessories were served, and which were not (their ids could not
        #: be saved): set by `HapBridges`.
        self.on_served: Callable[[list[str]], None] = lambda device_ids: None
        self.on_not_served: NotServed = lambda device_ids, err: None
        self._config_pending: asyncio.TimerHandle | None = None
        self._serving = False

    # -- life cycle ---------------------------------------------------------------------

    def on_pairing_changed(self, callback: Callable[[], None]) -> None:
        self.driver.pairing_changed = callback

    async def start(self) -> None:
        """Serve HAP and advertise it, with every accessory shown so far already in it."""
        if self._new_pending is not None:
            self._new_pending.cancel()
            self._serve_new()
        await self.driver.async_start()
        self._serving = True

    async def stop(self) -> None:
        self._pacer.close()
        if self._new_pending is not None:
            self._new_pending.cancel()  # never served: nothing of them to keep
        if self._config_pending is not None:
            self._config_pending.cancel()
            self.driver.refresh_config()
        if self._serving:  # a bridge opened just before stopping may never have served
            self._serving = False
            await self.driver.async_stop()

    @property
    def paired(self) -> bool:
        return bool(self.driver.state.paired)

    @property
    def listening(self) -> bool:
        """The HAP server accepts connections (what a container health check asks)."""
        server = self.driver.http_server.server
        return server is not None and server.is_serving()

    @property
    def announced_address(self) -> str:
        """The address mDNS announces (what the Home app connects to)."""
        return str(self.driver.state.address)

    @property
    def hap_device_id(self) -> str:
        return str(self.driver.state.mac)

    @property
    def bridged_count(self) -> int:
        """The accessories it shows, those about to be served included."""
        return len(self._accessories) + len(self._new)

    @property
    def setup_uri(self) -> str:
        """The X-HM:// URI the Home app scans: it holds the setup code, so it is shown only
        where the code may be (never logged)."""
        return str(self.bridge.xhm_uri())

    def _show_setup_code(self) -> None:
        """Unpaired: the setup code, its X-HM:// URI and a QR code, on the terminal and as PNG.

        Printed, not logged: the code must not end up in log collectors.
        """
        uri = self.setup_uri
        qr = pyqrcode.create(uri)
        png = self._state_dir / SETUP_QR_FILE
        try:
            qr.png(str(png), scale=8)
            png.chmod(0o600)
        except OSError as err:
            _LOGGER.warning("Could not write %s: %s", png, err)
        print(
            f"\nHomeKit bridge {self.name!r} on port {self.port}\n"
            f"HomeKit setup code: {self.setup.code}\nSetup URI: {uri}\n"
            f"{qr.terminal(quiet_zone=2)}\nQR code also saved as {png}\n",
            flush=True,
        )

    # -- which devices it shows ---------------------------------------------------------

    def shows(self, device_id: str) -> bool:
        return device_id in self._accessories or device_id in self._new

    def serves(self, device_id: str) -> bool:
        """Whether controllers see the device's accessory (a new one waits for its batch)."""
        return device_id in self._accessories

    def aid(self, device_id: str) -> int | None:
        accessory = self._accessories.get(device_id)
        if accessory is not None:
            return accessory.aid
        return self._ids.known_aid(device_id) if device_id in self._new else None

    def knows(self, device_id: str) -> bool:
        """Whether the device has an aid on this bridge (shown now or before)."""
        return self._ids.known_aid(device_id) is not None

    def show(self, device: Device, *, name: str, available: Callable[[], bool]) -> None:
        """Build (or rebuild) the device's accessory. The ids it takes are saved before any
        controller can see them; an OSError from that save leaves the bridge unchanged.

        A device new to the bridge is built at once when it comes alone; the new devices
        that follow it within `NEW_ACCESSORY_DELAY` (a flood) are built, saved and served
        together, a batch at a time (`on_served`, or `on_not_served` when the save fails)."""
        device_id = device.device_id
        new = not self.knows(device_id)
        if device_id in self._new or (new and self._new_pending is not None):
            self._ids.aid(device_id)  # its aid from now on (the log and bridge/devices say it)
            self._new[device_id] = _NewAccessory(device, name, available)
            return
        if new:
            self._open_batch()  # for the new devices that follow, whether or not this works
        accessory = self._build(device, name, available)
        self._ids.save()
        self._serve({device_id: accessory})

    def _build(self, device: Device, name: str, available: Callable[[], bool]) -> MqttAccessory:
        return build_accessory(
            self.driver,
            device,
            name=name,
            aid=self._ids.aid(device.device_id),
            ids=self._ids,
            catalog=self._common.catalog,
            available=available,
            on_write=self._common.on_write,
        )

    def _open_batch(self) -> None:
        self._new_pending = asyncio.get_running_loop().call_later(
            NEW_ACCESSORY_DELAY, self._serve_new
        )

    def _serve_new(self) -> None:
        """Build the new accessories, save their ids in one go, then serve them; batches
        go on while new devices keep coming."""
        self._new_pending = None
        if not self._new:
            return
        self._open_batch()
        new, self._new = self._new, {}
        built: dict[str, MqttAccessory] = {}
        for device_id, wanted in new.items():
            try:
                built[device_id] = self._build(wanted.device, wanted.name, wanted.available)
            except Exception as err:  # one device's fault must not keep the others away
                _LOGGER.exception("Could not build the accessory of %s", device_id)
                self.on_not_served([device_id], err)
        try:
            self._ids.save()
        except OSError as err:
            self.on_not_served(list(built), err)
            return
        self._serve(built)
        self.on_served(list(built))

    def _serve(self, built: dict[str, MqttAccessory]) -> None:
        accessories = self.bridge.accessories
        for device_id, accessory in built.items():
            accessories[accessory.aid] = accessory
            self._accessories[device_id] = accessory
        # Listed in aid order whatever the order of arrival, so the same devices always give
        # the same accessory database (and configuration number) after a restart.
        self.bridge.accessories = dict(sorted(accessories.items()))
        self._structure_changed()

    def hide(self, device_id: str) -> None:
        self._new.pop(device_id, None)
        accessory = self._accessories.pop(device_id, None)
        if accessory is None:
            return
        del self.bridge.accessories[accessory.aid]
        for key in accessory.characteristics:
            self._pacer.forget((device_id, key))
        self._structure_changed()

    # -- values -------------------------------------------------------------------------

    def _characteristic(self, device_id: str, key: CharKey) -> Any:
        accessory = self._accessories.get(device_id)
        return accessory.characteristics.get(key) if accessory is not None else None

    def set_value(self, device_id: str, key: CharKey, value: HapValue, pace: Pace) -> None:
        """A device's new value, sent to the Home app when its pace says so."""
        char = self._characteristic(device_id, key)
        if char is None:
            return  # an information-only device, not shown
        if char.value == value and pace is not Pace.IMMEDIATE:
            return
        # HAP-python keeps a button event's value null; the event itself carries it.
        show_value(char, value)
        self._pacer.changed((device_id, key), value, pace)

    def restore_value(self, device_id: str, key: CharKey, value: HapValue) -> None:
        """Undo a Home-app write that never reached the device (HAP-python took it already)."""
        char = self._characteristic(device_id, key)
        if char is not None:
            show_value(char, value)

    def supersede(self, device_id: str, key: CharKey) -> None:
        """A Home-app write is newer than any device value still held back for the key."""
        self._pacer.supersede((device_id, key))

    def _send_event(self, pacer_key: Hashable, value: Any) -> None:
        device_id, key = cast(tuple[str, CharKey], pacer_key)
        accessory = self._accessories.get(device_id)
        char = self._characteristic(device_id, key)
        if accessory is not None and char is not None:
            accessory.publish(value, char, immediate=True)

    # -- the configuration number -------------------------------------------------------

    def _structure_changed(self) -> None:
        """One configuration-number bump for a burst of structural changes."""
        if self._config_pending is not None:
            self._config_pending.cancel()
        self._config_pending = asyncio.get_running_loop().call_later(
            self._common.config_debounce, self._refresh_config
        )

    def _refresh_config(self) -> None:
        self._config_pending = None
        self.driver.refresh_config()
