"""The controller commands as a person runs them in a terminal, against a real HAP-python
accessory (the demo bridge: a light at aid 2, a temperature sensor at aid 3) on loopback.
What they print is what docs/controller.md says they print, and never a library traceback."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from tests.support.accessory_process import AccessoryProcess
from tests.support.bridge_process import BridgeProcess
from tests.support.cli_process import interrupt, run_cli, start_cli
from tests.support.wait import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

# The demo peer's iids (HAP-python numbers them in creation order; stable for the demo).
ON_IID, BRIGHTNESS_IID, TEMPERATURE_IID = 9, 10, 9
WRONG_CODE = "111-22-333"


def write_config(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "bridge.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": "./data",
                "zeroconf": {"interfaces": ["lo"]},  # an interface name, as people write it
                "controller": {"discover_timeout": 5},
            }
        )
    )
    return path


@dataclass
class Paired:
    peer: AccessoryProcess
    config: Path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def paired(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Paired]:
    root = tmp_path_factory.mktemp("controller-cli")
    peer = AccessoryProcess(root)
    await peer.start()
    config = write_config(root / "cli")
    try:
        result = await run_cli(config, "pair", str(peer.device_id), peer.pin, "--alias", "demo")
        assert (result.returncode, result.stderr) == (0, ""), result
        device_id = str(peer.device_id).lower()
        assert (
            result.stdout
            == f"Paired {device_id} as demo; its topics are HomeKit/demo[-<aid>]/...\n"
        )
        yield Paired(peer, config)
    finally:
        await peer.stop()


async def test_a_wrong_setup_code_is_named_and_costs_one_attempt(tmp_path: Path) -> None:
    """HAP-python 5.2 locks pair-setup for 60 s after 5 refused proofs: three wrong codes
    leave room for the right one only if none of them was tried twice."""
    async with AccessoryProcess(tmp_path) as peer:
        config = write_config(tmp_path / "cli")
        for _ in range(3):
            result = await run_cli(config, "pair", str(peer.device_id), WRONG_CODE, "--alias", "x")
            assert result.returncode == 1
            assert result.stderr == f"error: wrong setup code for {peer.device_id}\n"
        result = await run_cli(config, "pair", str(peer.device_id), peer.pin, "--alias", "x")
        assert (result.returncode, result.stderr) == (0, ""), result
        assert (await peer.info())["paired"] is True


async def test_list_pairings_checks_each_pairing_live(paired: Paired, tmp_path: Path) -> None:
    device_id = str(paired.peer.device_id).lower()
    text = await run_cli(paired.config, "list-pairings")
    assert (text.returncode, text.stderr) == (0, "")
    assert text.stdout == (
        f"demo  {device_id}  IP 127.0.0.1:{paired.peer.port}  online  "
        "devices: demo, demo-2, demo-3\n"
    )
    raw = await run_cli(paired.config, "list-pairings", "--json")
    [entry] = json.loads(raw.stdout)
    assert entry["connected"] is True and entry["available"] is True
    assert entry["devices"] == ["demo", "demo-2", "demo-3"]
    # With nothing paired, it says so and how to pair, rather than printing nothing.
    empty = await run_cli(write_config(tmp_path / "empty"), "list-pairings")
    assert empty.returncode == 0 and empty.stdout.startswith("No pairings.")
    assert "mqtt-hk-bridge pair <device-id> <setup-code> --alias <name>" in empty.stdout


async def test_accessories_and_put_print_no_library_traceback(paired: Paired) -> None:
    # aiohomekit re-read the database in the background and logged its failure when the
    # command closed the connection: on most runs, so each command runs a few times.
    for value in (40, 55, 60):
        listing = await run_cli(paired.config, "accessories", "demo")
        assert (listing.returncode, listing.stderr) == (0, "")
        put = await run_cli(paired.config, "put", "demo", f"2.{BRIGHTNESS_IID}={value}")
        assert put.stderr == ""
        assert put.stdout == f"2.{BRIGHTNESS_IID}  demo-2/Lightbulb/Brightness  {value}  written\n"
        assert put.returncode == 0
    assert "demo-2 (aid 2): Demo Light" in listing.stdout
    assert f"  2.{BRIGHTNESS_IID}    Lightbulb/Brightness [int pr,pw,ev] = 55" in listing.stdout


async def test_accessories_compact_lists_units_and_ranges(paired: Paired) -> None:
    compact = await run_cli(paired.config, "accessories", "--compact", "demo")
    assert (compact.returncode, compact.stderr) == (0, "")
    lines = compact.stdout.splitlines()
    assert "2.8: >Lightbulb<" in lines
    assert any(
        re.fullmatch(
            rf"  2\.{BRIGHTNESS_IID}: \d+ >Brightness< \[pr,pw,ev\] "
            r"\(int, percentage, 0\.\.100 step 1\)",
            line,
        )
        for line in lines
    ), compact.stdout
    assert any(
        line.startswith(f"  3.{TEMPERATURE_IID}: ")
        and line.endswith(">CurrentTemperature< [pr,ev] (float, celsius, -273.1..1000 step 0.1)")
        for line in lines
    ), compact.stdout
    default = await run_cli(paired.config, "accessories", "demo")
    assert default.stdout != compact.stdout


async def test_get_and_watch_name_what_they_print(paired: Paired) -> None:
    await paired.peer.set(3, TEMPERATURE_IID, 23.5)
    got = await run_cli(paired.config, "get", "demo", f"3.{TEMPERATURE_IID}")
    assert (got.returncode, got.stderr) == (0, "")
    assert got.stdout == f"3.{TEMPERATURE_IID}  demo-3/TemperatureSensor/CurrentTemperature  23.5\n"

    proc = await start_cli(paired.config, "watch", "demo")
    assert proc.stdout is not None
    line = b""
    try:
        temperatures = iter([24.0, 24.5] * 20)

        async def event_line() -> bytes:
            nonlocal line
            # Changed until watch has subscribed and prints one (it prints nothing before).
            await paired.peer.set(3, TEMPERATURE_IID, next(temperatures))
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), 0.5)  # type: ignore[union-attr]
            except TimeoutError:
                return b""
            return line

        await wait_for(event_line, timeout=20, message="an event line from watch")
    finally:
        result = await interrupt(proc)
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}}[+-]\d\d:\d\d  3\.{TEMPERATURE_IID}  "
        r"demo-3/TemperatureSensor/CurrentTemperature  2(4|4\.5)\n",
        line.decode(),
    ), line
    assert result.returncode == 130 and result.stderr == ""  # Ctrl-C is no traceback either


async def test_discover_names_the_bridge_itself(make_bridge, tmp_path: Path) -> None:
    bridge: BridgeProcess = make_bridge()
    result = await run_cli(bridge.config_path, "discover", "--timeout", "3")
    assert (result.returncode, result.stderr) == (0, "")
    ours = [
        line for line in result.stdout.splitlines() if line.startswith(bridge.device_id.lower())
    ]
    assert len(ours) == 1 and ours[0].endswith("this bridge itself (its HomeKit side)"), result
    listed = json.loads(
        (await run_cli(bridge.config_path, "discover", "--timeout", "3", "--json")).stdout
    )
    assert [
        item["this_bridge"] for item in listed if item["device_id"] == bridge.device_id.lower()
    ] == [True]
