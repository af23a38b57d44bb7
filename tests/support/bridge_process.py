"""The bridge under test as a real subprocess (so SIGKILL is real), on loopback only."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.wait import free_port, free_ports, port_accepts

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_CODE = "482-91-735"
#: Short timings so tests are quick; each is a documented config key.
TEST_TIMING = {
    "event_window": 1.0,
    "config_debounce": 0.2,
    "state_flush_interval": 0.1,
    "reconnect_max": 2.0,
}


class BridgeProcess:
    """`mqtt-hk-bridge run` with a bridge.yaml in `directory`, HAP on 127.0.0.1."""

    host = "127.0.0.1"

    def __init__(
        self, directory: Path, mqtt_port: int, *, hap_ports: int = 1, **overrides: Any
    ) -> None:
        """`hap_ports`: how many consecutive HAP ports to keep free (bridge n serves on
        `hap_port + n - 1`)."""
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.dir / "data"
        self.hap_port = free_port() if hap_ports == 1 else free_ports(hap_ports)
        self.setup_code = SETUP_CODE
        self.config: dict[str, Any] = {
            "base_topic": "HomeKit",
            "data_dir": "./data",
            "log_level": "debug",
            "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "keepalive": 10},
            "homekit": {
                "name": "Test Bridge",
                "address": self.host,
                "port": self.hap_port,
                "setup_code": SETUP_CODE,
            },
            "zeroconf": {"interfaces": ["127.0.0.1"]},
            "timing": dict(TEST_TIMING),
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(self.config.get(key), dict):
                self.config[key] = {**self.config[key], **value}
            else:
                self.config[key] = value
        self.config_path = self.dir / "bridge.yaml"
        self.log_path = self.dir / "bridge.log"
        self.out_path = self.dir / "bridge.out"
        self._proc: subprocess.Popen[bytes] | None = None
        self._offsets: dict[Path, int] = {}
        #: (soft, hard) RLIMIT_NOFILE for the process, as a service manager would set it.
        self.open_files_limit: tuple[int, int] | None = None

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config))

    def start(self, timeout: float = 15.0, expect_mqtt: bool = True) -> None:
        """Start and wait until HAP listens (and MQTT is connected when `expect_mqtt`)."""
        self.write_config()
        self._offsets = {path: _size(path) for path in (self.out_path, self.log_path)}
        with self.out_path.open("ab") as out, self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "mqtt_hk_bridge", "run", "-c", str(self.config_path)],
                cwd=REPO_ROOT,
                stdout=out,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=self._set_limits if self.open_files_limit else None,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise AssertionError(f"bridge exited with {self._proc.returncode}:\n{self.log()}")
            ready = port_accepts(self.host, self.hap_port)
            if ready and (not expect_mqtt or "Connected to MQTT broker" in self.log()):
                return
            time.sleep(0.05)
        self.kill9()  # never leave a half-started bridge behind
        raise AssertionError(f"bridge did not start within {timeout}s:\n{self.log()}")

    def _set_limits(self) -> None:
        assert self.open_files_limit is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, self.open_files_limit)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def mapped_files(self) -> set[str]:
        """The files the process has mapped: its Python's compiled extension modules."""
        lines = Path(f"/proc/{self.pid}/maps").read_text().splitlines()
        return {line.split(maxsplit=5)[5] for line in lines if len(line.split(maxsplit=5)) == 6}

    def open_files(self) -> int:
        return len(list(Path(f"/proc/{self.pid}/fd").iterdir()))

    def _since_start(self, path: Path) -> str:
        if not path.exists():
            return ""
        with path.open("rb") as handle:
            handle.seek(self._offsets.get(path, 0))
            return handle.read().decode("utf-8", "replace")

    def log(self) -> str:
        """Everything the bridge wrote since its last start: its logs, then its terminal output."""
        return self.logs() + self.terminal()

    def logs(self) -> str:
        """What the bridge logged (stderr) since its last start: what log collectors keep."""
        return self._since_start(self.log_path)

    def terminal(self) -> str:
        """What the bridge printed for the person at the terminal (stdout) since its start."""
        return self._since_start(self.out_path)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        return self._end(signal.SIGTERM, timeout)

    def kill9(self) -> None:
        self._end(signal.SIGKILL, 10.0)

    def _end(self, sig: signal.Signals, timeout: float) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"bridge ignored {sig.name} for {timeout}s") from None

    @property
    def device_id(self) -> str:
        """The HAP device id (pairing id) from the bridge's state file."""
        return self.device_id_of(1)

    def state_dir(self, number: int) -> Path:
        """Where HAP bridge `number` keeps its files (docs/configuration.md)."""
        return self.data_dir if number == 1 else self.data_dir / f"bridge-{number}"

    def port_of(self, number: int) -> int:
        return self.hap_port + number - 1

    def device_id_of(self, number: int) -> str:
        """The HAP device id of bridge `number`, from its state file."""
        state = json.loads((self.state_dir(number) / "homekit-state.json").read_text())
        return str(state["mac"])


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


async def advertised_txt(name: str, device_id: str) -> dict[str, str]:
    """The bridge's mDNS TXT record (c#, sf, id...) as a controller on loopback sees it.

    A fresh zeroconf each call, so nothing is answered from an earlier cache.
    """
    from zeroconf.asyncio import AsyncZeroconf

    azc = AsyncZeroconf(interfaces=["127.0.0.1"])
    try:
        short_mac = device_id[-8:].replace(":", "")
        info = await azc.async_get_service_info(
            "_hap._tcp.local.", f"{name} {short_mac}._hap._tcp.local.", timeout=3000
        )
        if info is None:
            raise AssertionError(f"no mDNS record for {name} {short_mac}")
        return {key.decode(): (value or b"").decode() for key, value in info.properties.items()}
    finally:
        await azc.async_close()


async def settled_config_number(name: str, device_id: str, quiet: float = 0.6) -> int:
    """The advertised c# once it has stopped changing for `quiet` seconds (the bridge
    debounces structural changes, 0.2 s in tests), within 10 s."""
    import asyncio

    deadline = time.monotonic() + 10
    last = int((await advertised_txt(name, device_id))["c#"])
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet)
        current = int((await advertised_txt(name, device_id))["c#"])
        if current == last:
            return current
        last = current
    raise AssertionError(f"c# of {name} kept changing for 10 s")
