"""When a value change reaches the Home app: fast when quiet, polite when busy.

Per characteristic: the first change after a quiet window goes out at once (leading edge);
changes inside the window are merged and the last one goes out when it ends (trailing
edge), so a storm costs about one event per window and the final value always arrives.
Transitions automations wait for (motion, contact, leak...) and button presses are never
merged. Each characteristic has its own window: a burst on one never delays another.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Hashable
from typing import Any

from .. import const


class Pace(enum.Enum):
    WINDOWED = "windowed"  # leading + trailing edge
    EVERY_CHANGE = "every_change"  # transitions: each change, in order
    IMMEDIATE = "immediate"  # button events


def pace_of(characteristic: str) -> Pace:
    if characteristic in const.IMMEDIATE_CHARACTERISTICS:
        return Pace.IMMEDIATE
    if characteristic in const.TRANSITION_CHARACTERISTICS:
        return Pace.EVERY_CHANGE
    return Pace.WINDOWED


class EventPacer:
    """Calls `send(key, value)` for each change according to the characteristic's pace."""

    def __init__(self, send: Callable[[Hashable, Any], None], window: float) -> None:
        self._send = send
        self._window = window
        self._last_sent: dict[Hashable, float] = {}
        self._pending: dict[Hashable, Any] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._sent_this_turn: set[Hashable] = set()

    def changed(self, key: Hashable, value: Any, pace: Pace) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if pace is not Pace.WINDOWED:
            self._cancel(key)
            self._emit_in_order(key, value)
            return
        if key in self._timers:
            self._pending[key] = value
            return
        due = self._last_sent.get(key, -self._window) + self._window
        if now >= due:
            self._emit(key, value, now)
        else:
            self._pending[key] = value
            self._timers[key] = loop.call_at(due, self._trailing, key)

    def _trailing(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        if key in self._pending:
            self._emit(key, self._pending.pop(key), asyncio.get_running_loop().time())

    def _emit(self, key: Hashable, value: Any, now: float) -> None:
        self._last_sent[key] = now
        self._send(key, value)

    def _emit_in_order(self, key: Hashable, value: Any) -> None:
        # HAP-python keeps one queued value per characteristic until the loop's next turn,
        # so a second change in the same turn waits one turn rather than replace the first.
        loop = asyncio.get_running_loop()
        if key in self._sent_this_turn:
            loop.call_soon(self._emit_in_order, key, value)
            return
        if not self._sent_this_turn:
            loop.call_soon(self._sent_this_turn.clear)
        self._sent_this_turn.add(key)
        self._emit(key, value, loop.time())

    def _cancel(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._pending.pop(key, None)

    def supersede(self, key: Hashable) -> None:
        """Drop a held-back value: a newer one is already known where it would go (a
        Home-app write sets the value itself)."""
        self._cancel(key)

    def forget(self, key: Hashable) -> None:
        """Drop a characteristic that no longer exists (its device or service was removed)."""
        self._cancel(key)
        self._last_sent.pop(key, None)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._pending.clear()
