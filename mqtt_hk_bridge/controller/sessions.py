"""Keep one pairing connected and its mirror current (one supervisor task per pairing),
whatever transport carries it: the session is written once against `links.Link` (IP or
CoAP), which wakes it on every change of the connection or the zeroconf record; nothing
is polled but the slow full read.

What aiohomekit 4.0.1 leaves to us, and how it is done here:
- Availability: its callback only ever reports True, so the supervisor follows the link and
  failed requests itself and publishes `online`/`offline`: offline at once when a request
  goes unanswered or a short-lived connection drops; a stable connection that ends (an idle
  close) is retried at once, offline only if that fails.
- Bounded reconnects: one attempt at a time, then full-jitter exponential backoff (capped),
  and a connection that drops again soon after it came up keeps the backoff growing.
- Address/port moves: a new zeroconf record wakes the backoff, so a moved accessory is back
  in seconds.
- c# change -> the accessory database is read again and the mirror rebuilt; s# change or a
  reconnect -> one catch-up read; a slow poll as fallback. Reads never overlap: a read asked
  for while one runs is merged into one more pass.
- An EVENT frame listing one characteristic twice is folded by aiohomekit to the value listed
  last (HAP-NodeJS lists newest first): those characteristics are read fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import const
from ..errors import PayloadError
from ..mqtt import payloads
from ..mqtt.topics import CommandTopic
from ..tasks import TaskSet
from .links import LINK_ERRORS, make_link, wait_changed
from .mirror import AccessoryMirror, CharId
from .pairings import PairingStore
from .settings import ControllerSettings

_LOGGER = logging.getLogger(__name__)

#: A connection that lasted less than this did not really recover: keep backing off.
STABLE_AFTER = 10.0

EventSink = Callable[..., None]


def repeated_ids(event: Any) -> set[CharId]:
    """(aid, iid) pairs listed more than once in one raw EVENT body."""
    seen: set[CharId] = set()
    repeated: set[CharId] = set()
    rows = event.get("characteristics", []) if isinstance(event, dict) else []
    for row in rows:
        if isinstance(row, dict) and "aid" in row and "iid" in row:
            key = (int(row["aid"]), int(row["iid"]))
            (repeated if key in seen else seen).add(key)
    return repeated


class PairingSession:
    """One pairing: its connection, its availability and its mirror."""

    def __init__(
        self,
        alias: str,
        pairing: Any,  # aiohomekit's IpPairing or CoAPPairing; its methods are untyped
        mirror: AccessoryMirror,
        settings: ControllerSettings,
        *,
        store: PairingStore,
        event: EventSink,
        catalogue_changed: Callable[[], None],
    ) -> None:
        self.alias = alias
        self.pairing = pairing
        self.link = make_link(pairing, alias)
        self.mirror = mirror
        self._settings = settings
        self._store = store
        self._event = event
        self._catalogue_changed = catalogue_changed
        self._task: asyncio.Task[None] | None = None
        self._tasks = TaskSet(_LOGGER, f"Controller session {alias}")
        self._read_lock = asyncio.Lock()
        self._pending_reads: set[CharId] = set()
        self._forced_reads: set[CharId] = set()
        self._db_config_num: int | None = None
        self._state_num: int | None = None
        self._last_full_read = 0.0
        self._reported_unreachable = False
        self._unsubscribe_events: Callable[[], None] | None = None
        # What the tests look at: attempts made, database reads, reads running at once.
        self.connect_attempts = 0
        self.database_reads = 0
        self.max_concurrent_reads = 0
        self._reads_running = 0

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._unsubscribe_events = self.pairing.dispatcher_connect(self._on_event)
        self.link.tap_raw_events(self._on_raw_event)
        self._task = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"controller-session-{self.alias}"
        )
        self._task.add_done_callback(self._supervisor_done)

    async def stop(self, *, shutdown: bool = True) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._tasks.cancel()
        if self._unsubscribe_events is not None:
            self._unsubscribe_events()
            self._unsubscribe_events = None
        self.link.detach()
        if shutdown:
            with contextlib.suppress(*LINK_ERRORS):
                await self.pairing.shutdown()

    def _supervisor_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.error("%s: connection supervisor failed", self.alias, exc_info=task.exception())

    @property
    def connected(self) -> bool:
        return self.link.connected

    # ---- the supervisor --------------------------------------------------------------
    async def _supervise(self) -> None:
        settings = self._settings
        delay = settings.reconnect_min
        while True:
            if not self.connected and not await self._attempt():
                self._set_available(False)
                await self._backoff(delay)
                delay = min(delay * 2, settings.reconnect_max)
                continue
            up_since = time.monotonic()
            # Lost, it stays down until the backoff below says otherwise.
            self.link.hold_down_when_lost()
            try:
                await self._on_connected()
                await self._watch()
            except LINK_ERRORS as err:
                _LOGGER.info("%s: connection failed: %s", self.alias, err or type(err).__name__)
                self._set_available(False)  # a request went unanswered
            except Exception:
                # A library fault must not leave the accessory without a supervisor for good.
                _LOGGER.exception("%s: unexpected error; reconnecting", self.alias)
                self._set_available(False)
            await self._drop()
            if time.monotonic() - up_since < STABLE_AFTER:
                # Up and down again at once (a reset after pair-verify): no storm.
                self._set_available(False)
                await self._backoff(delay)
                delay = min(delay * 2, settings.reconnect_max)
            else:
                # A stable connection ended (an idle close): try again at once, offline only
                # if that fails.
                delay = settings.reconnect_min

    async def _attempt(self) -> bool:
        """One connection attempt; the next one is the supervisor's to schedule."""
        self.connect_attempts += 1
        error = await self.link.attempt(self._settings.connect_timeout)
        if error is None:
            return True
        _LOGGER.debug("%s: connection attempt failed: %s", self.alias, error)
        if not self._reported_unreachable:
            self._reported_unreachable = True
            self._event(
                "accessory_unreachable",
                f"{self.alias}: cannot reach the accessory ({error or type(error).__name__}); "
                "retrying with backoff",
                device=self.alias,
            )
        return False

    async def _backoff(self, delay: float) -> None:
        """Sleep with full jitter; wake early on a new zeroconf record or a connection
        aiohomekit made by itself (it reconnects when a record announces a move)."""
        description = self.pairing.description
        until = time.monotonic() + random.uniform(delay / 2, delay)  # noqa: S311
        while (remaining := until - time.monotonic()) > 0:
            await wait_changed(self.link.changed, remaining)
            if self.connected or self.pairing.description is not description:
                return

    async def _drop(self) -> None:
        try:
            await self.link.drop()
        except LINK_ERRORS:
            pass
        except Exception:
            _LOGGER.exception("%s: closing the connection failed", self.alias)

    async def _on_connected(self) -> None:
        description = self.pairing.description
        config_num = description.config_num if description is not None else None
        if not self.mirror.loaded or config_num != self._db_config_num:
            await self._read_database()
        self._state_num = description.state_num if description is not None else None
        await self._read_all()
        self._reported_unreachable = False
        self._set_available(True)
        endpoint = self.link.endpoint()
        if endpoint is not None and self._store.update_endpoint(self.alias, *endpoint):
            hosts, port = endpoint
            _LOGGER.info("%s: now at %s port %s", self.alias, ", ".join(hosts), port)

    async def _watch(self) -> None:
        """Until the connection drops: follow c#, s# and the poll interval."""
        link = self.link
        poll_interval = self._settings.poll_interval and link.poll_interval(
            self._settings.poll_interval
        )
        while True:
            timeout = link.wake_interval
            if poll_interval:
                due = max(0.0, self._last_full_read + poll_interval - time.monotonic())
                timeout = due if timeout is None else min(timeout, due)
            await wait_changed(link.changed, timeout)
            if not self.connected:
                _LOGGER.info("%s: connection lost", self.alias)
                return
            description = self.pairing.description
            if description is not None:
                if description.config_num != self._db_config_num:
                    _LOGGER.info(
                        "%s: configuration number %s -> %s; reading the database again",
                        self.alias,
                        self._db_config_num,
                        description.config_num,
                    )
                    await self._read_database()
                    await self._read_all()
                    continue
                if link.reads_on_state_number and description.state_num != self._state_num:
                    self._state_num = description.state_num
                    await self._read_all()
                    continue
            if poll_interval and time.monotonic() - self._last_full_read >= poll_interval:
                await self._read_all()

    def _set_available(self, available: bool) -> None:
        if self.mirror.set_available(available):
            _LOGGER.info("%s is %s", self.alias, const.ONLINE if available else const.OFFLINE)
            self._catalogue_changed()

    # ---- reads -----------------------------------------------------------------------
    async def _read_database(self) -> None:
        timeout = self._settings.request_timeout
        description = self.pairing.description
        accessories = await asyncio.wait_for(
            self.pairing.list_accessories_and_characteristics(), timeout
        )
        self.database_reads += 1
        self._db_config_num = description.config_num if description is not None else None
        changed = self.mirror.load(accessories)
        wanted = set(self.mirror.event_ids())
        current = set(self.pairing.subscriptions)
        if current - wanted:
            await asyncio.wait_for(self.pairing.unsubscribe(sorted(current - wanted)), timeout)
        if wanted - current:
            await asyncio.wait_for(self.pairing.subscribe(sorted(wanted - current)), timeout)
        if changed:
            self._catalogue_changed()

    async def _read_all(self) -> None:
        self._last_full_read = time.monotonic()
        await self.read(self.mirror.readable_ids())

    async def read(self, ids: Iterable[CharId], *, force: bool = False) -> None:
        """Read characteristics and publish them; merged into a running read if one is on.

        `force` publishes even unchanged values (a `/get` expects an answer).
        """
        ids = set(ids)
        self._pending_reads |= ids
        if force:
            self._forced_reads |= ids
        if self._read_lock.locked():
            return
        async with self._read_lock:
            while self._pending_reads:
                batch = sorted(self._pending_reads)
                forced = self._forced_reads & set(batch)
                self._pending_reads.clear()
                self._forced_reads -= forced
                self._reads_running += 1
                self.max_concurrent_reads = max(self.max_concurrent_reads, self._reads_running)
                try:
                    result = await asyncio.wait_for(
                        self.pairing.get_characteristics(batch), self._settings.request_timeout
                    )
                finally:
                    self._reads_running -= 1
                for char_id, data in result.items():
                    if "value" in data:
                        self.mirror.set_value(
                            char_id, data["value"], only_if_changed=char_id not in forced
                        )
                    elif data.get("status"):
                        _LOGGER.debug("%s: read %s: %s", self.alias, char_id, data)

    def _read_soon(self, ids: Iterable[CharId], *, force: bool = False) -> None:
        self._tasks.spawn(self._guarded_read(set(ids), force))

    async def _guarded_read(self, ids: set[CharId], force: bool) -> None:
        try:
            await self.read(ids, force=force)
        except LINK_ERRORS as err:
            _LOGGER.info("%s: read failed: %s", self.alias, err or type(err).__name__)
            self._set_available(False)
            await self._drop()

    # ---- events ----------------------------------------------------------------------
    def _on_event(self, data: dict[CharId, dict[str, Any]]) -> None:
        if not data:
            return  # aiohomekit's "connection is back" signal
        for char_id, body in data.items():
            if "value" in body:
                self.mirror.set_value(char_id, body["value"])

    def _on_raw_event(self, event: Any) -> None:
        """aiohomekit kept one value per characteristic of this frame: read the repeated."""
        repeated = repeated_ids(event)
        if repeated:
            _LOGGER.debug("%s: %s repeated in one event frame; reading", self.alias, repeated)
            self._read_soon(repeated, force=True)

    # ---- commands --------------------------------------------------------------------
    async def command(self, command: CommandTopic, payload: bytes) -> None:
        """`/set` (write exactly once, or refuse with a bridge/event) and `/get`."""
        where = f"{command.device_id}/{command.key}"
        char = self.mirror.lookup(command.device_id, command.key)
        if char is None:
            self._event(
                "unknown_characteristic",
                f"{where}: no such characteristic on this accessory",
                device=command.device_id,
            )
            return
        if command.action == const.GET_SUFFIX:
            if not char.info.readable:
                self._event("read_refused", f"{where} is not readable", device=command.device_id)
                return
            if not self._reachable(where, command.device_id):
                return
            await self._guarded_read({char.char_id}, force=True)
            return
        if not char.info.writable:
            self._event(
                "write_refused",
                f"{where} is read-only; not written",
                device=command.device_id,
                characteristic=str(command.key),
            )
            return
        try:
            value = payloads.decode(payload, char.info)
        except PayloadError as err:
            self._event(
                "invalid_value",
                f"{where}: {err}; not written",
                device=command.device_id,
                characteristic=str(command.key),
            )
            return
        if not self._reachable(where, command.device_id):
            return
        try:
            result = await asyncio.wait_for(
                self.pairing.put_characteristics([(char.aid, char.iid, value)]),
                self._settings.request_timeout,
            )
        except LINK_ERRORS as err:
            self._event(
                "write_failed",
                f"{where}: write failed ({err or type(err).__name__})",
                device=command.device_id,
            )
            self._set_available(False)
            await self._drop()
            return
        status = result.get(char.char_id) if result else None
        if status and status.get("status"):
            self._event(
                "write_refused",
                f"{where}: the accessory refused the write: {status.get('description')} "
                f"({status.get('status')})",
                device=command.device_id,
                status=status.get("status"),
            )

    def _reachable(self, where: str, device_id: str) -> bool:
        if self.connected and self.mirror.available:
            return True
        self._event(
            "accessory_unreachable",
            f"{where}: the accessory is offline; not sent",
            device=device_id,
        )
        return False
