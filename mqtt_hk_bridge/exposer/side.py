"""The accessory side: MQTT devices -> bridged accessories in Apple Home, and back.

Its parts, each with one job: `HapBridges` (the HAP bridges, each a `HapBridge` with its
accessories and state files, and which device each shows), `DeviceStore` (what the devices
said, on disk), `ExposedDevices` (keeps the two in step), the sources
(`HomeKitTopicsSource`: our topic layout in and out; `MappedSource`: devices mapped in
bridge.yaml; `HomeAssistantDiscovery`: discovered devices; the last two run on
`BoundDevices`), `AvailabilityWatch` (expiry and removal of silent devices) and
`DeviceRequests` (the bridge API). This module builds them and runs them.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from zeroconf.asyncio import AsyncZeroconf

from .. import const
from ..api import BridgeApi
from ..config import Config
from ..homekit.catalog import get_catalog
from ..mqtt.link import MqttLink
from ..routing import Router
from ..tasks import TaskSet
from .availability import AvailabilityWatch
from .bound_devices import BoundDevices
from .device_options import OPTIONS_FILE, DeviceOptionsRequest, LiveDeviceOptions
from .device_store import DeviceStore
from .devices import ExposedDevices
from .hap_bridge import BridgeCommon
from .hap_bridges import HapBridges
from .mapped_source import bind_mapped_devices
from .requests import DeviceRequests
from .topics_input import HomeKitTopicsSource

if TYPE_CHECKING:
    from .discovery_source import HomeAssistantDiscovery

_LOGGER = logging.getLogger(__name__)


class ExposerSide:
    def __init__(
        self,
        *,
        config: Config,
        link: MqttLink,
        api: BridgeApi,
        router: Router,
        zeroconf: AsyncZeroconf,
        version: str,
    ) -> None:
        catalog = get_catalog()
        # Every part reads per-device options through config, with device/options merged in.
        self.options = LiveDeviceOptions(config, config.data_dir / OPTIONS_FILE)
        config = dataclasses.replace(config, devices=self.options)
        self._store = DeviceStore(config.data_dir, config.timing.state_flush_interval)
        common = BridgeCommon(
            homekit=config.homekit,
            data_dir=config.data_dir,
            zeroconf=zeroconf,
            catalog=catalog,
            version=version,
            event_window=config.timing.event_window,
            config_debounce=config.timing.config_debounce,
            on_write=lambda device_id, key, value: self.devices.home_app_write(
                device_id, key, value
            ),
        )
        self.bridges = HapBridges(
            common,
            pinned=lambda device_id: config.device_options(device_id).bridge,
            event=api.event,
        )
        self.devices = ExposedDevices(
            config=config,
            store=self._store,
            bridges=self.bridges,
            catalogue_changed=api.catalogue_changed,
            event=api.event,
        )
        self.devices.sets_expiry = self.options.sets_expiry
        if const.SOURCE_HOMEKIT_TOPICS in config.sources:
            source = HomeKitTopicsSource(
                config=config, link=link, api=api, catalog=catalog, devices=self.devices
            )
            self.devices.add_source(const.SOURCE_HOMEKIT_TOPICS, source)
            router.own_other_devices(source.handle)
        bound = BoundDevices(
            link=link, api=api, router=router, catalog=catalog, devices=self.devices
        )
        self.devices.add_source(const.SOURCE_MAPPED, bound)
        self._discovery: HomeAssistantDiscovery | None = None
        if const.SOURCE_HOMEASSISTANT_DISCOVERY in config.sources:
            # Imported only when on: its templates bring in jinja2 (2 MB of RSS).
            from .discovery_source import HomeAssistantDiscovery

            self.devices.add_source(const.SOURCE_HOMEASSISTANT_DISCOVERY, bound)
            self._discovery = HomeAssistantDiscovery(
                prefix=config.homeassistant.prefix,
                data_dir=config.data_dir,
                link=link,
                api=api,
                router=router,
                devices=self.devices,
                bound=bound,
            )
        self.devices.forget_devices_of_sources_off()
        bind_mapped_devices(
            config=config, api=api, catalog=catalog, devices=self.devices, bound=bound
        )
        self._availability = AvailabilityWatch(config=config, api=api, devices=self.devices)
        DeviceRequests(
            api=api,
            base_topic=config.base_topic,
            catalog=catalog,
            devices=self.devices,
            bound=bound,
        )
        DeviceOptionsRequest(api=api, config=config, options=self.options, devices=self.devices)
        self._loops = TaskSet(_LOGGER, "Accessory-side loop")
        self.devices.show_known()

    async def start(self) -> None:
        """Publish the bridges over HAP and mDNS, with every known accessory already in them."""
        await self.bridges.start()
        self._loops.spawn(self._store.run(), name="flush-values")
        self._loops.spawn(self._availability.run(), name="expire-devices")

    async def stop(self) -> None:
        if self._discovery is not None:
            self._discovery.close()
        await self._loops.cancel()
        self.devices.close()
        self._store.flush()
        await self.bridges.stop()
