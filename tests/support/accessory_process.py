"""Run the HomeKit accessory peer (tests/peers/accessory_server.py) as its own OS process.

    peer = AccessoryProcess(tmp_path, database=Path("eve_energy.json"))
    async with peer:                       # start(), then stop() on the way out
        client = await HapClient.pair("127.0.0.1", peer.port, peer.device_id, peer.pin)
        await peer.set(1, 23, "...")       # server-side change -> HAP event
        await peer.kill()                  # SIGKILL, no mDNS goodbye
        await peer.start(port=0)           # same state file (pairings survive), new port

stdout and stderr of each run go to files in `peer.log_dir`; the peer exits on its own when
this process dies (it watches its stdin), and an atexit hook kills any peer still running.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Self

from tests.support.wait import free_port, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PIN = "482-91-735"

_RUNNING: set[AccessoryProcess] = set()  # until close(): atexit kills what is left


class PeerError(RuntimeError):
    """The peer did not start, or refused a control command."""


class AccessoryProcess:
    """One accessory peer process; restartable, keeping its state file and device id."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        database: Path | str | None = None,
        port: int | None = None,
        pin: str = DEFAULT_PIN,
        name: str | None = None,
        mac: str | None = None,
        ready_timeout: float = 15.0,
    ) -> None:
        self.log_dir = Path(tempfile.mkdtemp(prefix="accessory-", dir=tmp_path))
        self.state_file = self.log_dir / "accessory.state"
        self.database = Path(database) if database is not None else None
        self.port = port or free_port()
        self.pin = pin
        self.name = name
        self.mac = mac
        self.ready_timeout = ready_timeout
        self.device_id: str | None = None  # from the ready line; stable across restarts
        self.control_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._runs = 0

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self, port: int | None = None) -> None:
        """(Re)start the peer and wait for its ready line. `port`: None keeps the current
        port, 0 picks a new free one, anything else is used as given."""
        if self.running:
            await self.stop()
        self.close()  # reap a run that ended on its own
        if port is not None:
            self.port = port or free_port()
        self._runs += 1
        stdout_path = self.log_dir / f"run{self._runs}.stdout"
        stderr_path = self.log_dir / f"run{self._runs}.stderr"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            self._proc = subprocess.Popen(
                self._command(),
                cwd=REPO_ROOT,
                stdin=subprocess.PIPE,  # closed when we die: the peer then exits
                stdout=out,
                stderr=err,
            )
        _RUNNING.add(self)
        proc = self._proc

        def ready() -> dict[str, Any] | None:
            for line in stdout_path.read_text().splitlines():
                if line.startswith('{"ready"'):
                    return dict(json.loads(line)["ready"])
            if proc.poll() is not None:
                raise PeerError(f"peer exited with {proc.returncode}: {_tail(stderr_path)}")
            return None

        try:
            info = await wait_for(ready, timeout=self.ready_timeout, message="peer ready line")
        except AssertionError as err:
            self.close()
            raise PeerError(f"{err}; stderr: {_tail(stderr_path)}") from None
        except PeerError:
            self.close()
            raise
        assert info is not None
        self.device_id = str(info["device_id"])
        self.control_port = int(info["control_port"])

    def _command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "tests.peers.accessory_server",
            "--port",
            str(self.port),
            "--state-file",
            str(self.state_file),
            "--pin",
            self.pin,
            "--control-port",
            "0",
            "--exit-with-stdin",
        ]
        cmd += ["--database", str(self.database)] if self.database else ["--demo"]
        if self.name:
            cmd += ["--name", self.name]
        if self.mac:
            cmd += ["--mac", self.mac]
        return cmd

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: the peer sends its mDNS goodbye and exits; SIGKILL if it hangs."""
        await self._signal(signal.SIGTERM, timeout)

    async def kill(self) -> None:
        """SIGKILL: the peer vanishes like a device losing power (no goodbye)."""
        await self._signal(signal.SIGKILL, 5.0)

    async def _signal(self, sig: signal.Signals, timeout: float) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            await wait_for(lambda: proc.poll() is not None, timeout=timeout, message="peer exit")
        except AssertionError:
            proc.kill()
        self.close()

    def close(self) -> None:
        """Synchronous last resort (atexit, failed start): kill and reap."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        if proc.stdin:
            proc.stdin.close()
        _RUNNING.discard(self)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- control channel --------------------------------------------------------------------

    async def control(self, cmd: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send one control command, return the peer's reply ({"ok": bool, ...})."""
        if self.control_port is None or not self.running:
            raise PeerError("peer is not running")
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", self.control_port)
            try:
                writer.write(json.dumps(cmd).encode() + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
        if not line:
            raise PeerError(f"peer closed the control connection on {cmd}")
        return dict(json.loads(line))

    async def _ok(self, cmd: dict[str, Any]) -> dict[str, Any]:
        reply = await self.control(cmd)
        if not reply.get("ok"):
            raise PeerError(f"{cmd}: {reply.get('error')}")
        return reply

    async def set(self, aid: int, iid: int, value: Any) -> Any:
        """Change a value server-side; subscribed controllers get the event at once."""
        return (await self._ok({"cmd": "set", "aid": aid, "iid": iid, "value": value}))["value"]

    async def get(self, aid: int, iid: int) -> Any:
        return (await self._ok({"cmd": "get", "aid": aid, "iid": iid}))["value"]

    async def writes(self) -> list[dict[str, Any]]:
        """Every controller write this run accepted: [{"aid", "iid", "value"}, ...]."""
        return list((await self._ok({"cmd": "writes"}))["writes"])

    async def info(self) -> dict[str, Any]:
        """device_id, port, paired, config_number, name."""
        return await self._ok({"cmd": "info"})

    async def bump_config(self) -> int:
        """Increment the configuration number (c#) and re-announce it; returns the new one."""
        return int((await self._ok({"cmd": "bump_config"}))["config_number"])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@atexit.register
def _kill_leftovers() -> None:
    for peer in list(_RUNNING):
        peer.close()
