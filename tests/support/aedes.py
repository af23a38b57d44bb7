"""Aedes, the broker inside Node-RED (MQTT 3.1.1 only), as a real peer on 127.0.0.1: plain
MQTT, or MQTT over WebSockets (with TLS when given a certificate), which Debian's Mosquitto
is built without.

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

    def __init__(
        self, *, websockets_path: str | None = None, tls: tuple[Path, Path] | None = None
    ) -> None:
        """`websockets_path`: serve MQTT over WebSockets there instead of plain MQTT;
        `tls`: (certificate, key) files for WebSockets over TLS."""
        self.port = free_port()
        self._websockets_path = websockets_path
        self._tls = tls
        self._proc: subprocess.Popen[bytes] | None = None

    def _command(self, node: str) -> list[str]:
        if self._websockets_path is None:
            return [node, str(AEDES_DIR / "broker.js"), str(self.port)]
        tls = [str(path) for path in self._tls] if self._tls is not None else []
        script = AEDES_DIR / "websockets-broker.js"
        return [node, str(script), str(self.port), self._websockets_path, *tls]

    def start(self, timeout: float = 15.0) -> None:
        node = shutil.which("node")
        if node is None or not (AEDES_DIR / "node_modules" / "aedes").is_dir():
            raise AssertionError("Aedes is not installed: run scripts/test.sh (npm ci)")
        self._proc = subprocess.Popen(
            self._command(node),
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
