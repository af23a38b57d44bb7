"""The bridge's own requests: `info`, `health_check` and `restart` (docs/api.md)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .api import BridgeApi
from .health import Health

_LOGGER = logging.getLogger(__name__)


class BridgeRequests:
    def __init__(
        self,
        *,
        api: BridgeApi,
        info: Callable[[], dict[str, Any]],
        health: Callable[[], Health],
        restart: Callable[[], None],
    ) -> None:
        self._info = info
        self._health = health
        self._restart = restart
        api.register("info", self._answer_info)
        api.register("health_check", self._health_check)
        api.register("restart", self._restart_request)

    async def _answer_info(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._info()

    async def _health_check(self, body: dict[str, Any]) -> dict[str, Any]:
        health = self._health()
        problems = health.problems()
        return {
            "healthy": not problems,
            "mqtt_connected": health.mqtt_connected,
            "hap_listening": health.hap_listening,
            "problems": problems,
        }

    async def _restart_request(self, body: dict[str, Any]) -> dict[str, Any]:
        # The answer goes out first; the stop begins once this handler has returned.
        _LOGGER.warning("Restart requested over MQTT")
        self._restart()
        return {"restarting": True}
