"""When value changes reach the Home app: fast when quiet, polite when busy (docs/topics.md).

A real asyncio loop with a 0.2 s window stands in for the 1 s default.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Hashable
from typing import Any

import pytest

from mqtt_hk_bridge import const
from mqtt_hk_bridge.exposer.notify import EventPacer, Pace, pace_of

WINDOW = 0.2
#: Scheduling slack allowed on a busy test machine.
SLACK = 0.15


class Recorder:
    """The `send` callback: what went out, when (loop time), in order."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Hashable, Any]] = []

    def __call__(self, key: Hashable, value: Any) -> None:
        self.events.append((asyncio.get_running_loop().time(), key, value))

    def values(self, key: Hashable) -> list[Any]:
        return [value for _, k, value in self.events if k == key]

    def times(self, key: Hashable) -> list[float]:
        return [at for at, k, _ in self.events if k == key]


async def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll `predicate` until true; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)


@pytest.fixture
def sent() -> Recorder:
    return Recorder()


@pytest.fixture
async def pacer(sent: Recorder) -> Any:
    pacer = EventPacer(sent, WINDOW)
    yield pacer
    pacer.close()


# --- which characteristics get which pace ------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "MotionDetected",
        "ContactSensorState",
        "OccupancyDetected",
        "LeakDetected",
        "SmokeDetected",
        "CarbonMonoxideDetected",
        "CarbonDioxideDetected",
    ],
)
def test_transitions_automations_wait_for_are_every_change(name: str) -> None:
    assert pace_of(name) is Pace.EVERY_CHANGE


def test_button_events_are_immediate() -> None:
    assert pace_of("ProgrammableSwitchEvent") is Pace.IMMEDIATE


@pytest.mark.parametrize("name", ["CurrentTemperature", "On", "Brightness", "BatteryLevel"])
def test_states_are_windowed(name: str) -> None:
    assert pace_of(name) is Pace.WINDOWED


def test_default_window_is_apples_one_second() -> None:
    assert const.DEFAULT_EVENT_WINDOW == 1.0


# --- windowed: leading and trailing edge -------------------------------------------------
async def test_first_change_goes_out_at_once(pacer: EventPacer, sent: Recorder) -> None:
    pacer.changed("t", 20.0, Pace.WINDOWED)
    # Synchronously, inside the call: no window, no loop turn.
    assert sent.values("t") == [20.0]


async def test_changes_in_the_window_are_merged_and_the_last_sent_at_its_end(
    pacer: EventPacer, sent: Recorder
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    pacer.changed("t", 20.0, Pace.WINDOWED)
    pacer.changed("t", 20.1, Pace.WINDOWED)
    pacer.changed("t", 20.2, Pace.WINDOWED)
    await asyncio.sleep(WINDOW / 4)
    pacer.changed("t", 20.3, Pace.WINDOWED)
    assert sent.values("t") == [20.0]
    await wait_until(lambda: len(sent.values("t")) == 2)
    assert sent.values("t") == [20.0, 20.3]
    trailing_at = sent.times("t")[1]
    assert start + WINDOW - 0.01 <= trailing_at <= start + WINDOW + SLACK
    # Nothing more is owed.
    await asyncio.sleep(WINDOW * 1.5)
    assert sent.values("t") == [20.0, 20.3]


async def test_change_after_a_quiet_window_goes_out_at_once(
    pacer: EventPacer, sent: Recorder
) -> None:
    pacer.changed("t", 1, Pace.WINDOWED)
    await asyncio.sleep(WINDOW + 0.05)
    pacer.changed("t", 2, Pace.WINDOWED)
    assert sent.values("t") == [1, 2]


async def test_change_after_a_trailing_event_waits_a_full_window(
    pacer: EventPacer, sent: Recorder
) -> None:
    pacer.changed("t", 1, Pace.WINDOWED)
    pacer.changed("t", 2, Pace.WINDOWED)
    await wait_until(lambda: len(sent.events) == 2)
    pacer.changed("t", 3, Pace.WINDOWED)
    assert sent.values("t") == [1, 2]  # the trailing event started a new window
    await wait_until(lambda: len(sent.events) == 3)
    times = sent.times("t")
    assert times[2] - times[1] >= WINDOW - 0.01


async def test_storm_costs_about_one_event_per_window_and_the_final_value_arrives(
    pacer: EventPacer, sent: Recorder
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    storm = 1.0
    value = 0
    while loop.time() - start < storm:
        value += 1
        pacer.changed("t", value, Pace.WINDOWED)
        await asyncio.sleep(0.005)
    await wait_until(lambda: sent.values("t")[-1] == value)
    values, times = sent.values("t"), sent.times("t")
    # Leading edge, then one per window: about storm / window + 1 events, not ~200.
    assert len(values) <= storm / WINDOW + 2
    assert len(values) >= storm / WINDOW - 1
    assert values[0] == 1
    assert values == sorted(values)  # never an older value after a newer one
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= WINDOW - 0.01


async def test_storm_on_one_key_never_delays_another(pacer: EventPacer, sent: Recorder) -> None:
    for n in range(50):
        pacer.changed(("esp1", "t"), n, Pace.WINDOWED)
    # The other characteristic's first change goes out in the same call.
    pacer.changed(("esp2", "t"), 7, Pace.WINDOWED)
    assert sent.values(("esp2", "t")) == [7]
    pacer.changed(("esp1", "h"), 50, Pace.WINDOWED)
    assert sent.values(("esp1", "h")) == [50]
    await wait_until(lambda: sent.values(("esp1", "t")) == [0, 49])


async def test_repeated_same_value_is_still_one_trailing_event(
    pacer: EventPacer, sent: Recorder
) -> None:
    pacer.changed("t", 1, Pace.WINDOWED)
    pacer.changed("t", 2, Pace.WINDOWED)
    pacer.changed("t", 2, Pace.WINDOWED)
    await wait_until(lambda: len(sent.events) == 2)
    await asyncio.sleep(WINDOW * 1.5)
    assert sent.values("t") == [1, 2]


# --- transitions: every change, in order -------------------------------------------------
class TurnCounter:
    """Counts loop iterations: a callback that re-schedules itself runs once per turn."""

    def __init__(self) -> None:
        self.turn = 0
        self._handle: asyncio.Handle | None = None

    def start(self) -> None:
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


async def test_zero_one_zero_in_one_loop_turn_delivers_each() -> None:
    turns = TurnCounter()
    delivered: list[tuple[int, Any]] = []
    pacer = EventPacer(lambda _key, value: delivered.append((turns.turn, value)), WINDOW)
    loop = asyncio.get_running_loop()
    turns.start()
    try:
        start = loop.time()
        pacer.changed("motion", 0, Pace.EVERY_CHANGE)
        pacer.changed("motion", 1, Pace.EVERY_CHANGE)
        pacer.changed("motion", 0, Pace.EVERY_CHANGE)
        assert [value for _, value in delivered] == [0]  # the first at once
        await wait_until(lambda: len(delivered) == 3)
        assert [value for _, value in delivered] == [0, 1, 0]
        # Not held back by the window.
        assert loop.time() - start < WINDOW / 2
        # Each in its own loop turn: HAP-python keeps one queued value per characteristic
        # per turn, so two in one turn would merge into the last.
        assert len({turn for turn, _ in delivered}) == 3
    finally:
        turns.stop()
        pacer.close()


async def test_long_transition_sequence_in_one_turn_keeps_order(
    pacer: EventPacer, sent: Recorder
) -> None:
    sequence = [1, 0] * 10
    for value in sequence:
        pacer.changed("contact", value, Pace.EVERY_CHANGE)
    await wait_until(lambda: len(sent.values("contact")) == len(sequence))
    assert sent.values("contact") == sequence


async def test_transitions_in_quick_succession_are_not_merged(
    pacer: EventPacer, sent: Recorder
) -> None:
    for value in (1, 0, 1, 0):
        pacer.changed("leak", value, Pace.EVERY_CHANGE)
        await asyncio.sleep(0.01)
    assert sent.values("leak") == [1, 0, 1, 0]


async def test_transition_on_one_key_does_not_hold_another(
    pacer: EventPacer, sent: Recorder
) -> None:
    pacer.changed("motion-a", 1, Pace.EVERY_CHANGE)
    pacer.changed("motion-b", 1, Pace.EVERY_CHANGE)
    assert sent.values("motion-a") == [1]
    assert sent.values("motion-b") == [1]


# --- buttons: at once --------------------------------------------------------------------
async def test_button_events_go_out_at_once_every_time(pacer: EventPacer, sent: Recorder) -> None:
    for press in (0, 1, 0, 2, 0):
        pacer.changed("button", press, Pace.IMMEDIATE)
        assert sent.values("button")[-1] == press  # inside the call
        await asyncio.sleep(0)
    assert sent.values("button") == [0, 1, 0, 2, 0]


async def test_button_during_a_windowed_storm_is_not_delayed(
    pacer: EventPacer, sent: Recorder
) -> None:
    for n in range(20):
        pacer.changed("t", n, Pace.WINDOWED)
    pacer.changed("button", 0, Pace.IMMEDIATE)
    assert sent.values("button") == [0]


# --- forgetting and closing --------------------------------------------------------------
async def test_forget_drops_a_pending_trailing_event(pacer: EventPacer, sent: Recorder) -> None:
    pacer.changed("t", 1, Pace.WINDOWED)
    pacer.changed("t", 2, Pace.WINDOWED)
    pacer.forget("t")
    await asyncio.sleep(WINDOW + SLACK)
    assert sent.values("t") == [1]
    # A characteristic that comes back starts afresh: its first change goes out at once.
    pacer.changed("t", 3, Pace.WINDOWED)
    assert sent.values("t") == [1, 3]


async def test_close_cancels_pending_events(sent: Recorder) -> None:
    pacer = EventPacer(sent, WINDOW)
    pacer.changed("t", 1, Pace.WINDOWED)
    pacer.changed("t", 2, Pace.WINDOWED)
    pacer.close()
    await asyncio.sleep(WINDOW + SLACK)
    assert sent.values("t") == [1]
