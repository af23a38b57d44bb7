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
from .mqtt import topics
from .mqtt.link import MqttLink
from .routing import Router
from .store import ensure_private_dir

_LOGGER = logging.getLogger(__name__)


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        # Features register the topics they handle with the router before MQTT connects.
        self.router = Router(config.base_topic)
        self.link = MqttLink(
            config.mqtt,
            subscriptions=self.router.subscriptions,
            will_topic=topics.bridge_topic(config.base_topic, const.BRIDGE_STATE),
            on_message=self.router.dispatch,
            reconnect_max=config.timing.reconnect_max,
        )
        self.api = BridgeApi(self.link, config.base_topic)
        self.router.serve_api(self.api)
        self.exposer: ExposerSide | None = None
        self.controller: ControllerSide | None = None
        #: Set by a `restart` request: the caller starts the bridge afresh once run() ends.
        self.restart_requested = False

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then say goodbye on MQTT and stop in reverse order."""
        quiet_hap_protocol_logging()
        ensure_private_dir(self.config.data_dir)
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
            self.exposer = ExposerSide(
                config=self.config,
                link=self.link,
                api=self.api,
                router=self.router,
                zeroconf=zeroconf,
                version=__version__,
            )
            self.exposer.hap.on_pairing_changed(self.api.publish_info)
            self.api.set_info(self._info)
            BridgeRequests(
                api=self.api,
                info=self._info,
                health=self._health,
                restart=lambda: self._restart(stop),
            )
            self.link.add_connect_hook(self.api.republish)
            self.link.add_connect_hook(self.controller.republish)
            await self.exposer.start()
            await self.controller.start()
            link_task = asyncio.get_running_loop().create_task(self.link.run())
            health = HealthReporter(self.config.data_dir / HEALTH_FILE, self._health)
            health.start()
            try:
                await stop.wait()
            finally:
                await health.stop()
                await self.controller.stop()  # publishes the mirrors' `offline` first
                await self.link.close()
                link_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await link_task
                await self.exposer.stop()
        finally:
            await zeroconf.async_close()

    def _info(self) -> dict[str, Any]:
        exposer = self.exposer
        assert exposer is not None
        return {
            "version": __version__,
            "hap_device_id": exposer.hap.hap_device_id,
            "hap_port": self.config.homekit.port,
            "paired": exposer.hap.paired,
            "accessories": exposer.hap.bridged_count,
            "mqtt_protocol": self.link.protocol,
            "rejected_topics": self.router.rejected_topics,
        }

    def _health(self) -> Health:
        exposer = self.exposer
        return Health(
            mqtt_connected=self.link.connected,
            hap_listening=exposer is not None and exposer.hap.listening,
        )

    def _restart(self, stop: asyncio.Event) -> None:
        self.restart_requested = True
        asyncio.get_running_loop().call_soon(stop.set)
