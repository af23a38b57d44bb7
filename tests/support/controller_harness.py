"""The controller side in-process on a real broker, wired the way app.py wires it.

    async with ControllerHarness(tmp_path, mosquitto, settings=FAST) as harness:
        await harness.side ...

Owns its AsyncZeroconf (bound to 127.0.0.1), Router, MqttLink, BridgeApi and ControllerSide.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, Self

from zeroconf.asyncio import AsyncZeroconf

from mqtt_hk_bridge.api import BridgeApi
from mqtt_hk_bridge.config import Config, MqttConfig
from mqtt_hk_bridge.controller.settings import ControllerSettings
from mqtt_hk_bridge.controller.side import ControllerSide
from mqtt_hk_bridge.mqtt import topics
from mqtt_hk_bridge.mqtt.link import MqttLink
from mqtt_hk_bridge.routing import Router
from tests.support.mosquitto import Mosquitto
from tests.support.wait import wait_for

BASE = "HomeKit"

#: Short timings so fault tests finish in seconds.
FAST = ControllerSettings(
    reconnect_min=0.2,
    reconnect_max=1.0,
    connect_timeout=3.0,
    request_timeout=3.0,
    poll_interval=0.0,
    discover_timeout=5.0,
)


class ControllerHarness:
    def __init__(
        self,
        data_dir: Path,
        broker: Mosquitto,
        *,
        settings: ControllerSettings = FAST,
        zeroconf: AsyncZeroconf | None = None,
    ) -> None:
        self.config = Config(
            base_topic=BASE,
            data_dir=data_dir,
            mqtt=MqttConfig(host=broker.host, port=broker.port),
        )
        self.settings = settings
        self._own_zeroconf = zeroconf is None
        self.zeroconf = zeroconf or AsyncZeroconf(interfaces=["127.0.0.1"])
        self.router = Router(BASE)
        self.link = MqttLink(
            self.config.mqtt,
            subscriptions=self.router.subscriptions,
            will_topic=topics.bridge_topic(BASE, "state"),
            on_message=self.router.dispatch,
        )
        self.api = BridgeApi(self.link, BASE)
        self.router.serve_api(self.api)
        self.side = ControllerSide(
            config=self.config,
            link=self.link,
            api=self.api,
            router=self.router,
            zeroconf=self.zeroconf,
            settings=settings,
        )

        self.link.add_connect_hook(self.api.republish)
        self.link.add_connect_hook(self.side.republish)
        self._link_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._link_task = asyncio.create_task(self.link.run())
        await wait_for(lambda: self.link.connected, timeout=10, message="bridge link connected")
        await self.side.start()

    async def stop(self) -> None:
        await self.side.stop()
        await self.link.close()
        if self._link_task is not None:
            self._link_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._link_task
        if self._own_zeroconf:
            await self.zeroconf.async_close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
