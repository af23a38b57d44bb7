"""The bridge's own health, for a container's HEALTHCHECK and other supervisors.

The daemon keeps `health.json` in data_dir fresh; `mqtt-hk-bridge healthcheck` reads it in
a separate process. Healthy means: connected to the MQTT broker, the HAP server listening,
and the report recent (a hung event loop stops rewriting it, so an old report counts as
unhealthy too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .store import FILE_MODE
from .tasks import TaskSet

_LOGGER = logging.getLogger(__name__)

HEALTH_FILE = "health.json"
#: How often the daemon looks at its state (in memory); a change is written at once.
CHECK_INTERVAL = 1.0
#: An unchanged state is rewritten this often, only to show the loop is alive (a file
#: written every second would wear an SD card for nothing).
REWRITE_INTERVAL = 30.0
#: A report older than this means the daemon stopped reporting: three missed rewrites.
MAX_AGE = 3 * REWRITE_INTERVAL


@dataclass(frozen=True)
class Health:
    mqtt_connected: bool
    hap_listening: bool

    def problems(self) -> list[str]:
        found = []
        if not self.mqtt_connected:
            found.append("not connected to the MQTT broker")
        if not self.hap_listening:
            found.append("the HAP server is not listening")
        return found


class HealthReporter:
    """Writes `probe()` to the health file whenever it changes, and every REWRITE_INTERVAL;
    removes the file on stop, so a stopped bridge never reads as healthy."""

    def __init__(self, path: Path, probe: Callable[[], Health]) -> None:
        self.path = path
        self._probe = probe
        self._tasks = TaskSet(_LOGGER, "Health report")

    def start(self) -> None:
        self._tasks.spawn(self._report(), name="health-report")

    async def stop(self) -> None:
        await self._tasks.cancel()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _report(self) -> None:
        last: Health | None = None
        last_written = float("-inf")
        while True:
            health = self._probe()
            now = time.monotonic()
            if health != last or now - last_written >= REWRITE_INTERVAL:
                last, last_written = health, now
                try:
                    _write(self.path, health)
                except OSError as err:
                    _LOGGER.warning("Could not write %s: %s", self.path, err)
            await asyncio.sleep(CHECK_INTERVAL)


def _write(path: Path, health: Health) -> None:
    """Replace the file in one step, so a reader never sees half of it (no fsync: a report
    lost in a crash is rewritten by the next start). Private, like every file in data_dir."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({**asdict(health), "updated": time.time()}))
    os.replace(tmp, path)


def check(path: Path, now: float | None = None) -> list[str]:
    """What is wrong according to the health file; an empty list means healthy."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        health = Health(bool(report["mqtt_connected"]), bool(report["hap_listening"]))
        age = (time.time() if now is None else now) - float(report["updated"])
    except FileNotFoundError:
        return [f"no health report at {path}: the bridge is not running (or not started yet)"]
    except (OSError, ValueError, TypeError, KeyError) as err:
        return [f"unreadable health report {path}: {err}"]
    if age > MAX_AGE:
        return [f"the last health report is {age:.0f} s old: the bridge is not responding"]
    return health.problems()
