"""Characteristics that return to a value by themselves (`ResetAfter`: Home Assistant's
`off_delay`, for a PIR or an RF sensor that only ever says ON). One timer per device and
characteristic; every reading starts it again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..mqtt.payloads import HapValue
from ..mqtt.topics import CharKey

#: Called when a characteristic is due to return to its value.
ResetDue = Callable[[str, CharKey, HapValue], None]


class ResetTimers:
    def __init__(self, due: ResetDue) -> None:
        self._due = due
        self._timers: dict[tuple[str, CharKey], asyncio.TimerHandle] = {}

    def shown(
        self,
        device_id: str,
        key: CharKey,
        value: HapValue,
        reset: tuple[float, HapValue],
        *,
        restart: bool = True,
    ) -> None:
        """The characteristic shows `value` now: it returns to `reset`'s value after `reset`'s
        seconds, unless another value comes first. Without `restart`, a timer already running
        keeps its time (a device bound again after a restart)."""
        seconds, target = reset
        timer_key = (device_id, key)
        if not restart and timer_key in self._timers:
            return
        timer = self._timers.pop(timer_key, None)
        if timer is not None:
            timer.cancel()
        if value != target:
            self._timers[timer_key] = asyncio.get_running_loop().call_later(
                seconds, self._fire, device_id, key, target
            )

    def cancel(self, device_id: str) -> None:
        for timer_key in [timer_key for timer_key in self._timers if timer_key[0] == device_id]:
            self._timers.pop(timer_key).cancel()

    def _fire(self, device_id: str, key: CharKey, value: HapValue) -> None:
        del self._timers[(device_id, key)]
        self._due(device_id, key, value)
