"""Aedes, the broker inside Node-RED (MQTT 3.1.1 only), as a real peer on 127.0.0.1.

scripts/test.sh installs it (`npm ci` in tests/peers/aedes).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.wait import free_port, port_accepts

AEDES_DIR = Path(__file__).resolve().parents[1] / "peers" / "aedes"


class Aedes:
    host = "127.0.0.1"

    def __init__(self) -> None:
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        node = shutil.which("node")
        if node is None or not (AEDES_DIR / "node_modules" / "aedes").is_dir():
            raise AssertionError("Aedes is not installed: run scripts/test.sh (npm ci)")
        self._proc = subprocess.Popen(
            [node, str(AEDES_DIR / "broker.js"), str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not port_accepts(self.host, self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"Aedes did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
