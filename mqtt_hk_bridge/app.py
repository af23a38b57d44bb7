"""Builds the bridge and runs it on one asyncio loop: one MQTT connection, one zeroconf,
the accessory side (HAP-python) and the controller side (aiohomekit).

Start order: state is loaded and every known accessory built before HAP is published;
MQTT connects in the background (the HAP side works while the broker is away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Any

from zeroconf import InterfaceChoice
from zeroconf.asyncio import AsyncZeroconf

from . import __version__, const
from .api import BridgeApi
from .config import Config
from .controller.side import ControllerSide
from .errors import TopicError
from .exposer.hap_adapter import quiet_hap_protocol_logging
from .exposer.side import ExposerSide
from .instance_lock import DataDirLock
from .mqtt import topics
from .mqtt.link import IncomingMessage, MqttLink

_LOGGER = logging.getLogger(__name__)

#: A bad topic is reported at most once a minute, so a flood cannot flood the log.
REJECT_REPORT_INTERVAL = 60.0
REJECT_MEMORY = 1024


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.rejected_topics = 0
        self._reject_reported: OrderedDict[str, float] = OrderedDict()
        self.link = MqttLink(
            config.mqtt,
            subscriptions=topics.subscriptions(config.base_topic),
            will_topic=topics.bridge_topic(config.base_topic, const.BRIDGE_STATE),
            on_message=self._on_message,
            reconnect_max=config.timing.reconnect_max,
        )
        self.api = BridgeApi(self.link, config.base_topic)
        self.exposer: ExposerSide | None = None
        self.controller: ControllerSide | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then say goodbye on MQTT and stop in reverse order.

        Raises DataDirInUseError at once when another bridge runs on the same data_dir.
        """
        quiet_hap_protocol_logging()
        with DataDirLock(self.config.data_dir):
            await self._run(stop)
        _LOGGER.info("Stopped")

    async def _run(self, stop: asyncio.Event) -> None:
        interfaces = self.config.zeroconf_interfaces
        zeroconf = AsyncZeroconf(interfaces=list(interfaces) if interfaces else InterfaceChoice.All)
        try:
            self.exposer = ExposerSide(
                config=self.config,
                link=self.link,
                api=self.api,
                zeroconf=zeroconf,
                version=__version__,
            )
            self.controller = ControllerSide(
                config=self.config, link=self.link, api=self.api, zeroconf=zeroconf
            )
            self.exposer.set_foreign(self.controller.owns)
            self.exposer.driver.pairing_changed = self.api.publish_info
            self.api.set_info(self._info)
            self.link.add_connect_hook(self.api.republish)
            self.link.add_connect_hook(self.controller.republish)
            await self.exposer.start()
            await self.controller.start()
            link_task = asyncio.get_running_loop().create_task(self.link.run())
            _LOGGER.info("%s", self._ready_line())
            try:
                await stop.wait()
            finally:
                _LOGGER.info("Stopping")
                await self.controller.stop()  # publishes the mirrors' `offline` first
                await self.link.close()
                link_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await link_task
                await self.exposer.stop()
        finally:
            await zeroconf.async_close()

    def _ready_line(self) -> str:
        """One line saying what runs: where HAP listens, paired or not, what it shows."""
        exposer, controller = self.exposer, self.controller
        assert exposer is not None and controller is not None
        homekit, mqtt = self.config.homekit, self.config.mqtt
        pairing = "paired" if exposer.paired else "not paired yet (setup code on the terminal)"
        return (
            f"Ready: HomeKit bridge {homekit.name!r} on port {homekit.port} "
            f"(listening on {homekit.address}, announced as {exposer.driver.state.address}), "
            f"{pairing}; {len(exposer.bridge.accessories)} MQTT device(s) shown, "
            f"{len(controller.sessions)} HomeKit pairing(s); "
            f"MQTT broker {mqtt.host}:{mqtt.port}"
        )

    def _info(self) -> dict[str, Any]:
        exposer = self.exposer
        assert exposer is not None
        return {
            "version": __version__,
            "hap_device_id": exposer.driver.state.mac,
            "hap_port": self.config.homekit.port,
            "paired": exposer.paired,
            "accessories": len(exposer.bridge.accessories),
            "mqtt_protocol": self.link.protocol,
            "rejected_topics": self.rejected_topics,
        }

    def _on_message(self, message: IncomingMessage) -> None:
        try:
            parsed = topics.parse(message.topic, self.config.base_topic)
        except TopicError as err:
            self._reject(message.topic, err)
            return
        if isinstance(parsed, topics.BridgeTopic):
            path = parsed.path
            if len(path) >= 2 and path[0] == const.BRIDGE_REQUEST:
                self.api.handle_request("/".join(path[1:]), message.payload)
            return
        controller = self.controller
        if controller is not None and controller.owns(parsed.device_id):
            # Our own mirror: commands go to the accessory; its state is never device input.
            if isinstance(parsed, topics.CommandTopic):
                controller.handle_command(parsed, message.retain, message.payload)
            return
        if self.exposer is not None:
            self.exposer.handle(parsed, message)

    def _reject(self, topic: str, err: TopicError) -> None:
        self.rejected_topics += 1
        now = time.monotonic()
        last = self._reject_reported.get(topic)
        if last is not None and now - last < REJECT_REPORT_INTERVAL:
            return
        self._reject_reported[topic] = now
        self._reject_reported.move_to_end(topic)
        while len(self._reject_reported) > REJECT_MEMORY:
            self._reject_reported.popitem(last=False)
        self.api.event("invalid_topic", str(err), topic=topic[:512])
        self.api.publish_info()  # its count of refused topics
