"""A real Node-RED (tests/peers/node-red, installed by scripts/test.sh with `npm ci`),
headless on 127.0.0.1 with its own user directory and a flow of ours.

    async with NodeRed(tmp_path, flow) as red:
        await red.inject("hk-pair")                  # what the editor's inject button does
        value = await red.flow_context("hk-tab", "responses")

The admin API (no login: it listens on loopback only) is how the test presses buttons and
reads what the flow remembered; nothing else of Node-RED is used.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Self

from tests.support.wait import free_port, wait_for

NODE_RED_DIR = Path(__file__).resolve().parents[1] / "peers" / "node-red"
RED_JS = NODE_RED_DIR / "node_modules" / "node-red" / "red.js"

_SETTINGS = """module.exports = {{
    uiHost: "127.0.0.1",
    uiPort: {port},
    flowFile: "flows.json",
    credentialSecret: false,
    editorTheme: {{ tours: false, projects: {{ enabled: false }} }},
    diagnostics: {{ enabled: false, ui: false }},
    telemetry: {{ enabled: false, updateNotification: false }},
    externalModules: {{ autoInstall: false, palette: {{ allowInstall: false }} }},
    logging: {{ console: {{ level: "info", metrics: false, audit: false }} }},
}};
"""


class NodeRed:
    host = "127.0.0.1"

    def __init__(self, directory: Path, flow: list[dict[str, Any]]) -> None:
        self.user_dir = directory
        self.user_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        (self.user_dir / "settings.js").write_text(_SETTINGS.format(port=self.port))
        (self.user_dir / "flows.json").write_text(json.dumps(flow))
        self.log_path = self.user_dir / "node-red.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def start(self, timeout: float = 60.0) -> None:
        node = shutil.which("node")
        if node is None or not RED_JS.is_file():
            raise AssertionError("Node-RED is not installed: run scripts/test.sh (npm ci)")
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    node,
                    str(RED_JS),
                    "--userDir",
                    str(self.user_dir),
                    "--settings",
                    str(self.user_dir / "settings.js"),
                ],
                cwd=self.user_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proc = self._proc

        def started() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"Node-RED exited with {proc.returncode}:\n{self.log()}")
            return "Started flows" in self.log()

        try:
            await wait_for(started, timeout=timeout, interval=0.1, message="Node-RED started")
        except AssertionError:
            self.stop()
            raise

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    async def _call(self, method: str, path: str) -> Any:
        def call() -> Any:
            request = urllib.request.Request(f"http://{self.host}:{self.port}{path}", method=method)
            with urllib.request.urlopen(request, timeout=5) as response:
                body = response.read()
            return json.loads(body) if body.strip().startswith((b"{", b"[")) else body

        return await asyncio.to_thread(call)

    async def inject(self, node_id: str) -> None:
        """Press an inject node's button, as the editor does."""
        await self._call("POST", f"/inject/{node_id}")

    async def flow_context(self, flow_id: str, key: str) -> Any:
        """A flow-context value as the editor's Context panel shows it, or None."""
        data = await self._call("GET", f"/context/flow/{flow_id}")
        # One level per context store (`memory` by default) in current Node-RED.
        for candidate in (data, *(v for v in data.values() if isinstance(v, dict))):
            entry = candidate.get(key)
            if isinstance(entry, dict) and "msg" in entry:
                return json.loads(entry["msg"]) if entry.get("format") != "string" else entry["msg"]
        return None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
