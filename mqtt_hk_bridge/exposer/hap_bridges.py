"""Every HAP bridge of the process, and which device each one shows.

HomeKit takes at most 149 bridged accessories per bridge, so the devices are spread over
several `HapBridge`s: a device that finds no room on the open bridges opens the next one (up
to `homekit.bridges`). Where a device goes is `choose_bridge`'s rule; it is saved in
`bridge-assignments.json` before the device is shown and never changes by itself.

Per-device calls (values, writes) find the device's bridge in one dict lookup.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .. import const
from ..errors import BridgeError
from ..mqtt.payloads import HapValue
from ..mqtt.topics import CharKey
from ..preflight import listen_problem
from ..tasks import TaskSet
from . import bridge_layout
from .bridge_assignments import ASSIGNMENTS_FILE, BridgeAssignments, NoRoom, choose_bridge
from .hap_bridge import BridgeCommon, HapBridge
from .notify import Pace
from .registry import Device

_LOGGER = logging.getLogger(__name__)

#: A bridge opened while running whose port is taken is tried again, backing off to this.
START_RETRY_MAX = 60.0
#: Longest a device's first bridge waits to reach disk (its ids there say it meanwhile).
ASSIGNMENTS_FLUSH_DELAY = 1.0


class HapBridges:
    def __init__(
        self,
        common: BridgeCommon,
        *,
        pinned: Callable[[str], int | None],
        event: Callable[..., None],
    ) -> None:
        homekit, data_dir = common.homekit, common.data_dir
        self._common = common
        self._pinned = pinned
        self._event = event
        self.limit = homekit.bridges
        self._assignments = BridgeAssignments(data_dir / ASSIGNMENTS_FILE)
        self._bridges: dict[int, HapBridge] = {}
        #: The bridge showing each device: the one lookup a value or a write makes.
        self._shown: dict[str, HapBridge] = {}
        self._started = False
        self._starting = TaskSet(_LOGGER, "Bridge start")
        self._flush_pending: asyncio.TimerHandle | None = None
        #: Called when a bridge opens or a pairing changes (bridge/info lists them).
        self.changed: Callable[[], None] = lambda: None
        #: Told when new accessories are served, and of each one that could not be (its ids
        #: could not be saved): it is then shown nowhere.
        self.served: Callable[[list[str]], None] = lambda device_ids: None
        self.not_served: Callable[[str, Exception], None] = lambda device_id, err: None
        created = bridge_layout.created(data_dir)
        for number in created:
            if number <= self.limit:
                self._open(number)
        beyond = [number for number in created if number > self.limit]
        if beyond:
            _LOGGER.warning(
                "Bridge(s) %s not opened: homekit.bridges is %d; their devices go to the "
                "others as far as there is room",
                ", ".join(map(str, beyond)),
                self.limit,
            )

    # -- the bridges --------------------------------------------------------------------

    @property
    def first(self) -> HapBridge:
        return self._bridges[bridge_layout.FIRST]

    @property
    def opened(self) -> list[HapBridge]:
        """Every open bridge, by number."""
        return [self._bridges[number] for number in sorted(self._bridges)]

    def _open(self, number: int) -> HapBridge:
        """Build bridge `number` (state loaded or created); served once started. Raises
        OSError when its state cannot be written."""
        bridge = HapBridge(self._common, number)
        bridge.on_pairing_changed(lambda: self.changed())
        bridge.on_served = lambda device_ids: self.served(device_ids)
        bridge.on_not_served = lambda device_ids, err: self._not_served(bridge, device_ids, err)
        self._bridges[number] = bridge
        if self._started:
            _LOGGER.info("Opening HomeKit bridge %r on port %d", bridge.name, bridge.port)
            self._starting.spawn(self._serve(bridge), name=f"start-bridge-{number}")
        return bridge

    def _open_problem(self, number: int) -> str | None:
        """Why bridge `number` cannot open now (its port is taken), or None."""
        if number in self._bridges:
            return None
        port = bridge_layout.port(self._common.homekit.port, number)
        problem = listen_problem(self._common.homekit.address, port)
        return None if problem is None else bridge_layout.port_problem(number, problem)

    async def start(self) -> None:
        """Serve every open bridge; a port taken since start-up checked it stops the bridge."""
        for bridge in self.opened:
            await bridge.start()
        self._started = True

    async def _serve(self, bridge: HapBridge) -> None:
        """Start a bridge opened while running; its port may have been taken meanwhile."""
        delay = 1.0
        while True:
            try:
                await bridge.start()
                break
            except BridgeError as err:
                if delay == 1.0:
                    self._event("bridge_not_started", f"bridge {bridge.number}: {err}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, START_RETRY_MAX)
        self.changed()

    async def stop(self) -> None:
        await self._starting.cancel()
        if self._flush_pending is not None:
            self._flush_pending.cancel()
        self._flush_assignments()
        for bridge in self.opened:
            await bridge.stop()

    def _flush_assignments(self) -> None:
        self._flush_pending = None
        try:
            self._assignments.flush()
        except OSError as err:
            _LOGGER.error("Could not save %s: %s", ASSIGNMENTS_FILE, err)

    def describe(self) -> list[dict[str, Any]]:
        """Every open bridge for `bridge/info`. The setup URI holds the setup code: it is
        there only while the bridge is unpaired (a paired bridge refuses pair-setup)."""
        return [
            {
                "bridge": bridge.number,
                "name": bridge.name,
                "hap_port": bridge.port,
                "hap_device_id": bridge.hap_device_id,
                "paired": bridge.paired,
                "accessories": bridge.bridged_count,
                **({} if bridge.paired else {"setup_uri": bridge.setup_uri}),
            }
            for bridge in self.opened
        ]

    @property
    def listening(self) -> bool:
        return all(bridge.listening for bridge in self._bridges.values())

    @property
    def bridged_count(self) -> int:
        return len(self._shown)

    # -- which bridge shows a device ----------------------------------------------------

    def shows(self, device_id: str) -> bool:
        return device_id in self._shown

    def aid(self, device_id: str) -> int | None:
        bridge = self._shown.get(device_id)
        return bridge.aid(device_id) if bridge is not None else None

    def serves(self, device_id: str) -> bool:
        """Whether controllers see the device (a new one is served a moment after `show`)."""
        bridge = self._shown.get(device_id)
        return bridge is not None and bridge.serves(device_id)

    def _not_served(self, bridge: HapBridge, device_ids: list[str], err: Exception) -> None:
        for device_id in device_ids:
            if self._shown.get(device_id) is bridge:
                del self._shown[device_id]
                self.not_served(device_id, err)

    def assigned(self, device_id: str) -> int | None:
        """The bridge the device was last shown on (kept while it is away)."""
        return self._assignments.get(device_id)

    def bridge_of(self, device_id: str) -> int | None:
        """The number of the bridge showing the device."""
        bridge = self._shown.get(device_id)
        return bridge.number if bridge is not None else None

    def _target(self, device_id: str) -> int:
        shown = self._shown.get(device_id)
        return choose_bridge(
            shown_on=shown.number if shown is not None else None,
            pinned=self._pinned(device_id),
            remembered=self._assignments.get(device_id),
            known_by=[n for n, bridge in self._bridges.items() if bridge.knows(device_id)],
            shown_counts={n: bridge.bridged_count for n, bridge in self._bridges.items()},
            limit=self.limit,
        )

    def room_problem(self, device_id: str) -> str | None:
        """Why the device cannot be shown now, or None when a bridge can take it."""
        try:
            return self._open_problem(self._target(device_id))
        except NoRoom as err:
            return str(err)

    def check_move(self, device_id: str, number: int) -> None:
        """Raise BridgeError when a `bridge: number` option could not be carried out now."""
        if number > self.limit:
            raise BridgeError(f"bridge {number} is above homekit.bridges ({self.limit})")
        shown = self._shown.get(device_id)
        if shown is not None and shown.number == number:
            return
        bridge = self._bridges.get(number)
        if bridge is not None and bridge.bridged_count >= const.MAX_BRIDGED_ACCESSORIES:
            raise BridgeError(
                f"bridge {number} already shows {bridge.bridged_count} accessories, the most "
                "HomeKit allows on one bridge"
            )
        problem = self._open_problem(number)
        if problem is not None:
            raise BridgeError(problem)

    def show(self, device: Device, *, name: str, available: Callable[[], bool]) -> int | None:
        """Build (or rebuild) the device's accessory on its bridge, opening that bridge if
        need be; returns the bridge it left when it moved. Raises NoRoom (nothing changes)
        when no bridge may take it, OSError when its bridge or ids cannot be saved. A
        device new to its bridge that follows another one at once (a flood) is served a
        moment later, with the others (`served`, `not_served`)."""
        device_id = device.device_id
        number = self._target(device_id)
        problem = self._open_problem(number)
        if problem is not None:
            raise NoRoom(problem)
        bridge = self._bridges.get(number) or self._open(number)
        self._assign(device_id, number)
        bridge.show(device, name=name, available=available)
        left = self._shown.get(device_id)
        self._shown[device_id] = bridge
        if left is not None and left is not bridge:
            left.hide(device_id)
            return left.number
        return None

    def _assign(self, device_id: str, number: int) -> None:
        """Record the device's bridge before it is shown there. A first bridge may reach
        disk a moment later: only that bridge's ids will know the device, which is what
        `choose_bridge` follows after a crash. Any other change is saved at once."""
        remembered = self._assignments.get(device_id)
        if remembered == number:
            return
        elsewhere = any(
            bridge.knows(device_id) for n, bridge in self._bridges.items() if n != number
        )
        if remembered is not None or elsewhere:
            self._assignments.set(device_id, number)
            return
        self._assignments.note(device_id, number)
        if self._flush_pending is None:
            self._flush_pending = asyncio.get_running_loop().call_later(
                ASSIGNMENTS_FLUSH_DELAY, self._flush_assignments
            )

    def hide(self, device_id: str) -> None:
        """Take the device off its bridge; its bridge and aid are kept for its return."""
        bridge = self._shown.pop(device_id, None)
        if bridge is not None:
            bridge.hide(device_id)

    # -- values (the hot path: one lookup) ----------------------------------------------

    def set_value(self, device_id: str, key: CharKey, value: HapValue, pace: Pace) -> None:
        bridge = self._shown.get(device_id)
        if bridge is not None:
            bridge.set_value(device_id, key, value, pace)

    def restore_value(self, device_id: str, key: CharKey, value: HapValue) -> None:
        bridge = self._shown.get(device_id)
        if bridge is not None:
            bridge.restore_value(device_id, key, value)

    def supersede(self, device_id: str, key: CharKey) -> None:
        bridge = self._shown.get(device_id)
        if bridge is not None:
            bridge.supersede(device_id, key)
