"""Builds the bridge and runs it on one asyncio loop: one MQTT connection, one zeroconf,
the accessory side (HAP-python) and the controller side (aiohomekit).

Start order: state is loaded and every known accessory built before HAP is published;
MQTT connects in the background (the HAP side works while the broker is away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from zeroconf import InterfaceChoice
from zeroconf.asyncio import AsyncZeroconf

from . import __version__, const
from .api import BridgeApi
from .bridge_requests import BridgeRequests
from .config import Config
from .controller.side import ControllerSide
from .exposer.hap_adapter import quiet_hap_protocol_logging
from .exposer.side import ExposerSide
from .health import HEALTH_FILE, Health, HealthReporter
from .instance_lock import DataDirLock
from .mqtt import topics
from .mqtt.failures import EVENT_CONNECT_FAILED, Outage
from .mqtt.link import MqttLink
from .mqtt.protocol_memory import MQTT_PROTOCOL_FILE
from .resources import log_exhaustion_once, raise_fd_limit
from .routing import Router
from .store import take_restorations

_LOGGER = logging.getLogger(__name__)


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        # Features register the topics they handle with the router before MQTT connects.
        self.router = Router(config.base_topic, config.bridge_levels)
        self.link = MqttLink(
            config.mqtt,
            subscriptions=self.router.subscriptions,
            will_topic=topics.bridge_topic(
                config.base_topic, *config.bridge_levels, const.BRIDGE_STATE
            ),
            on_message=self.router.dispatch,
            reconnect_max=config.timing.reconnect_max,
            on_recovered=self._mqtt_recovered,
            protocol_file=config.data_dir / MQTT_PROTOCOL_FILE,
        )
        self.router.on_filter_added = self.link.subscribe
        self.api = BridgeApi(self.link, config.base_topic, config.bridge_levels)
        self.router.serve_api(self.api)
        self.exposer: ExposerSide | None = None
        self.controller: ControllerSide | None = None
        #: Set by a `restart` request: the caller starts the bridge afresh once run() ends.
        self.restart_requested = False

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then say goodbye on MQTT and stop in reverse order.

        Raises DataDirInUseError at once when another bridge runs on the same data_dir.
        """
        quiet_hap_protocol_logging()
        fd_limit = raise_fd_limit()
        _LOGGER.debug("Open-file limit: %d", fd_limit)
        log_exhaustion_once(asyncio.get_running_loop())
        with DataDirLock(self.config.data_dir):
            await self._run(stop)
        _LOGGER.info("Stopped")

    async def _run(self, stop: asyncio.Event) -> None:
        interfaces = self.config.zeroconf_interfaces
        zeroconf = AsyncZeroconf(interfaces=list(interfaces) if interfaces else InterfaceChoice.All)
        try:
            # The controller side first: the device ids it owns are never the exposer's.
            self.controller = ControllerSide(
                config=self.config,
                link=self.link,
                api=self.api,
                router=self.router,
                zeroconf=zeroconf,
            )
            exposer = self.exposer = ExposerSide(
                config=self.config,
                link=self.link,
                api=self.api,
                router=self.router,
                zeroconf=zeroconf,
                version=__version__,
            )
            self.controller.mqtt_devices = lambda: exposer.devices.registry.devices
            self.exposer.bridges.changed = self.api.publish_info
            self.api.set_info(self._info)
            BridgeRequests(
                api=self.api,
                info=self._info,
                health=self._health,
                restart=lambda: self._restart(stop),
            )
            self.link.add_connect_hook(self.api.republish)
            self.link.add_connect_hook(self.controller.republish)
            self.link.add_connect_hook(self._report_restored_state)
            await self.exposer.start()
            await self.controller.start()
            link_task = asyncio.get_running_loop().create_task(self.link.run())
            health = HealthReporter(self.config.data_dir / HEALTH_FILE, self._health)
            health.start()
            _LOGGER.info("%s", self._ready_line())
            try:
                await stop.wait()
            finally:
                _LOGGER.info("Stopping")
                await health.stop()
                await self.controller.stop()  # publishes the mirrors' `offline` first
                await self.link.close()
                link_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await link_task
                await self.exposer.stop()
        finally:
            await zeroconf.async_close()

    async def _report_restored_state(self) -> None:
        """State files that start-up (or later) had to take from their .bak, once each."""
        for message in take_restorations():
            self.api.event("state_file_restored", message)

    def _ready_line(self) -> str:
        """One line saying what runs: where HAP listens, paired or not, what it shows."""
        exposer, controller = self.exposer, self.controller
        assert exposer is not None and controller is not None
        homekit, mqtt = self.config.homekit, self.config.mqtt
        first, *others = exposer.bridges.opened
        bridges = "".join(
            f"HomeKit bridge {bridge.name!r} on port {bridge.port}, {_pairing(bridge.paired)}; "
            for bridge in others
        )
        return (
            f"Ready: HomeKit bridge {first.name!r} on port {first.port} "
            f"(listening on {homekit.address}, announced as {first.announced_address}), "
            f"{_pairing(first.paired)}; {bridges}"
            f"{exposer.bridges.bridged_count} MQTT device(s) shown, "
            f"{len(controller.sessions)} HomeKit pairing(s); "
            f"MQTT broker {mqtt.host}:{mqtt.port}"
        )

    def _info(self) -> dict[str, Any]:
        exposer = self.exposer
        assert exposer is not None
        first = exposer.bridges.first
        return {
            "version": __version__,
            # These three are bridge 1's (what they were before there were several).
            "hap_device_id": first.hap_device_id,
            "hap_port": first.port,
            "paired": first.paired,
            "accessories": exposer.bridges.bridged_count,
            "bridges": exposer.bridges.describe(),
            "mqtt_protocol": self.link.protocol,
            "rejected_topics": self.router.rejected_topics,
        }

    def _health(self) -> Health:
        exposer = self.exposer
        return Health(
            mqtt_connected=self.link.connected,
            hap_listening=exposer is not None and exposer.bridges.listening,
        )

    def _mqtt_recovered(self, outage: Outage) -> None:
        """Tell MQTT why the bridge was away, now that it can (the log said so at once)."""
        self.api.event(EVENT_CONNECT_FAILED, outage.message, **outage.details())

    def _restart(self, stop: asyncio.Event) -> None:
        self.restart_requested = True
        asyncio.get_running_loop().call_soon(stop.set)


def _pairing(paired: bool) -> str:
    return "paired" if paired else "not paired yet (setup code on the terminal)"
