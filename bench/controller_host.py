"""The bridge's controller side alone, in a process of its own, from any checkout of the repo:
what bench/controller_idle_cpu.py reads the CPU time of.

    python -m bench.controller_host --broker-port 1883 --data-dir /tmp/d [--checkout PATH]

`--checkout` (default: this one) is the root of the tree whose `mqtt_hk_bridge` and
`tests/support/controller_harness.py` run, for example a `git worktree` of an older commit:
the same bench then measures before and after a change. The harness wires the controller
side as app.py does (its own zeroconf on 127.0.0.1, MQTT link, request API), with that
checkout's default `controller:` timings. stdout: one line `{"ready": {"pid", "commit"}}`
once it is connected to the broker, then `{"usage": {"cpu_seconds", "context_switches",
"threads"}}` for each line `usage` on stdin (time.process_time() and getrusage(): every
thread, ended ones included). Stops on SIGTERM, SIGINT or when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

THIS_CHECKOUT = Path(__file__).resolve().parents[1]


def own_usage() -> dict[str, float]:
    """CPU seconds and context switches of this process so far, all threads, ended ones too."""
    rusage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_seconds": time.process_time(),
        "context_switches": rusage.ru_nvcsw + rusage.ru_nivcsw,
        "threads": threading.active_count(),
    }


class _Parent(asyncio.Protocol):
    """Our stdin pipe: a line `usage` is answered with own_usage() on stdout; the pipe's end
    means the parent process is gone."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if line.strip() == b"usage":
                print(json.dumps({"usage": own_usage()}), flush=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop.set()


def checkout_modules(checkout: Path) -> tuple[Any, Any]:
    """The checkout's ControllerHarness and ControllerSettings, imported from its tree (first
    on sys.path, before this one's)."""
    sys.path.insert(0, str(checkout))
    harness = importlib.import_module("tests.support.controller_harness")
    settings = importlib.import_module("mqtt_hk_bridge.controller.settings")
    for module in (harness, settings):
        if not Path(str(module.__file__)).is_relative_to(checkout):
            raise RuntimeError(f"{module.__file__} is not under {checkout}")
    return harness.ControllerHarness, settings.ControllerSettings


def checkout_commit(checkout: Path) -> str:
    git = ["git", "rev-parse", "--short", "HEAD"]
    return subprocess.run(
        git, cwd=checkout, capture_output=True, text=True, check=False
    ).stdout.strip()


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await loop.connect_read_pipe(lambda: _Parent(stop), sys.stdin)
    harness_class, settings_class = checkout_modules(args.checkout)
    broker = SimpleNamespace(host="127.0.0.1", port=args.broker_port)
    commit = checkout_commit(args.checkout)
    async with harness_class(args.data_dir, broker, settings=settings_class()):
        print(json.dumps({"ready": {"pid": os.getpid(), "commit": commit}}), flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The controller side in its own process.")
    parser.add_argument("--broker-port", type=int, required=True, help="Mosquitto on 127.0.0.1")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--checkout", type=Path, default=THIS_CHECKOUT)
    args = parser.parse_args(argv)
    args.checkout = args.checkout.resolve()
    # The bridge's default log level; the idle minute should log nothing at all.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
