"""Starting the bridge as a newcomer does: whatever `run` refuses, `check-config` refuses
first with the same message and no traceback; interface names work; one bridge per
data_dir; a host without a default route starts (in a network namespace of our own)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.bridge_process import REPO_ROOT, BridgeProcess, advertised_txt
from tests.support.cli_process import run_cli
from tests.support.wait import free_port, wait_for


def write_config(path: Path, mqtt_port: int, **overrides: Any) -> Path:
    """A loopback bridge.yaml (BridgeProcess's) with `overrides` merged per section."""
    config = BridgeProcess(path.parent, mqtt_port, **overrides).config
    path.write_text(yaml.safe_dump(config))
    return path


def _listening_socket() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


BAD_CONFIGS: dict[str, tuple[dict[str, Any], str]] = {
    "interface that does not exist": (
        {"zeroconf": {"interfaces": ["eth9"]}},
        "zeroconf.interfaces[0]: 'eth9' is neither an IP address nor a network interface",
    ),
    "address that is no address": (
        {"homekit": {"address": "999.1.1.1"}},
        "homekit.address: '999.1.1.1' is neither an IP address nor a network interface",
    ),
    "address of another host": (
        {"homekit": {"address": "10.255.255.1"}},
        "homekit.address: 10.255.255.1 is not an address of this host",
    ),
    "advertised address that is no address": (
        {"homekit": {"advertised_address": "my-mac"}},
        "homekit.advertised_address: 'my-mac' is neither an IP address nor a network interface",
    ),
    "broker port with a fraction": (
        {"mqtt": {"port": 1883.5}},
        "mqtt.port: expected a whole number, got 1883.5",
    ),
    "data_dir that is a file": ({"data_dir": "./bridge.yaml"}, "data_dir: "),
    "negative expire_after": (
        {"defaults": {"expire_after": -5}},
        'defaults.expire_after: expected a duration >= 1 s, e.g. 300 or "5m"',
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
async def test_check_config_refuses_what_run_refuses_with_the_same_message(
    tmp_path: Path, case: str
) -> None:
    overrides, expected = BAD_CONFIGS[case]
    config = write_config(tmp_path / "bridge.yaml", free_port(), **overrides)
    checked = await run_cli(config, "check-config", timeout=30)
    ran = await run_cli(config, "run", timeout=30)
    assert checked.returncode == ran.returncode == 2, (checked, ran)
    assert checked.stderr == ran.stderr
    assert checked.stderr.startswith(f"mqtt-hk-bridge: {config}: {expected}"), checked.stderr
    assert "Traceback" not in ran.stderr and "setup code" not in ran.stdout


async def test_a_hap_port_in_use_names_the_port_the_process_and_the_key(
    tmp_path: Path,
) -> None:
    with _listening_socket() as listener:
        port = listener.getsockname()[1]
        config = write_config(tmp_path / "bridge.yaml", free_port(), homekit={"port": port})
        checked = await run_cli(config, "check-config", timeout=30)
        ran = await run_cli(config, "run", timeout=30)
    assert checked.returncode == ran.returncode == 2
    assert (
        checked.stderr
        == ran.stderr
        == (
            f"mqtt-hk-bridge: {config}: homekit.port: port {port} is already in use by pid "
            f"{os.getpid()} ({_command_line_of_this_process()}); stop that process or set "
            "homekit.port to a free port\n"
        )
    )


def _command_line_of_this_process() -> str:
    text = Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    return text if len(text) <= 80 else text[:77] + "..."


async def test_interface_names_are_accepted(
    make_bridge: Callable[..., BridgeProcess],
) -> None:
    bridge = make_bridge(homekit={"address": "lo"}, zeroconf={"interfaces": ["lo"]})
    txt = await advertised_txt("Test Bridge", bridge.device_id)
    assert txt["id"] == bridge.device_id
    assert "(listening on 127.0.0.1, announced as 127.0.0.1)" in bridge.logs()


async def test_a_second_bridge_on_one_data_dir_is_refused_at_once(
    make_bridge: Callable[..., BridgeProcess],
) -> None:
    first = make_bridge()
    second = await run_cli(first.config_path, "run", timeout=30)
    assert second.returncode == 2
    assert second.stderr == (
        f"mqtt-hk-bridge: {first.config_path}: data_dir {first.data_dir} is in use by another "
        f"bridge (pid {first.pid}); stop it first, or give this one a data_dir of its own\n"
    )
    assert "setup code" not in second.stdout.lower()
    assert first.running
    # The lock dies with its process, however it dies.
    first.kill9()
    first.start()
    assert (first.data_dir / "bridge.lock").read_text() == f"{first.pid}\n"
    first.stop()
    assert (first.data_dir / "bridge.lock").read_text() == ""


# ---- a host without a default route -----------------------------------------------------


def _in_new_netns(command: list[str]) -> list[str]:
    """`command` in a network namespace of its own holding only `lo` (no default route)."""
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    script = 'ip link set lo up && exec "$@"'
    return [*unshare, "sh", "-c", script, "sh", *command]


@pytest.mark.parametrize(
    ("advertised", "announced"), [(None, "127.0.0.1"), ("192.168.1.20", "192.168.1.20")]
)
async def test_listening_on_all_addresses_starts_without_a_default_route(
    tmp_path: Path, advertised: str | None, announced: str
) -> None:
    for tool in ("unshare", "nsenter", "ip"):
        assert shutil.which(tool), f"this test needs {tool} (util-linux, iproute2)"
    homekit: dict[str, Any] = {"address": "0.0.0.0"}
    if advertised:
        homekit["advertised_address"] = advertised
    # The broker is out of reach in there; HAP must start all the same.
    config = write_config(tmp_path / "bridge.yaml", free_port(), homekit=homekit)
    notice = "set homekit.advertised_address to the address the Home app should use"
    checked = subprocess.run(
        _in_new_netns([sys.executable, "-m", "mqtt_hk_bridge", "check-config", "-c", str(config)]),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (checked.returncode, checked.stderr) == (0, ""), checked
    assert checked.stdout.startswith(f"{config}: OK\n")
    assert (notice in checked.stdout) == (advertised is None), checked.stdout
    hap_port = yaml.safe_load(config.read_text())["homekit"]["port"]
    log = tmp_path / "bridge.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            _in_new_netns([sys.executable, "-m", "mqtt_hk_bridge", "run", "-c", str(config)]),
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        await wait_for(
            lambda: "Ready:" in log.read_text() or proc.poll() is not None,
            timeout=20,
            message="the Ready line",
        )
        text = log.read_text()
        assert "Traceback" not in text, text
        assert f"(listening on 0.0.0.0, announced as {announced})" in text, text
        assert (notice in text) == (advertised is None), text
        # The HAP server answers inside the namespace (the bridge's own, entered by pid).
        enter = ["nsenter", "-t", str(proc.pid), "-n"]
        if os.geteuid() != 0:
            enter += ["-U", "--preserve-credentials"]
        connect = f"import socket; socket.create_connection(('127.0.0.1', {hap_port}), 5).close()"
        probe = await asyncio.create_subprocess_exec(*enter, sys.executable, "-c", connect)
        assert await asyncio.wait_for(probe.wait(), 15) == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    assert proc.returncode == 0
    assert log.read_text().rstrip().endswith("Stopped")
