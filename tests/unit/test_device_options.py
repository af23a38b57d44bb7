"""Options set by `device/options`, merged with bridge.yaml's: the file's own per-device keys
win, a request's value wins over `defaults`, and they are read back after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqtt_hk_bridge.config import parse
from mqtt_hk_bridge.errors import StateFileError
from mqtt_hk_bridge.exposer.device_options import LiveDeviceOptions

CONFIG = {
    "defaults": {"expire_after": 300, "command_topic": "set"},
    "devices": {"fixed": {"expire_after": 600}},
}


def test_precedence_and_persistence(tmp_path: Path) -> None:
    config = parse(CONFIG)
    path = tmp_path / "device-options.json"
    options = LiveDeviceOptions(config, path)
    options.update("fixed", {"command_topic": "same"}, [])
    options.update("esp", {"expire_after": 60.0, "retain_commands": True}, [])
    assert options["esp"].expire_after == 60.0  # over defaults.expire_after
    assert options["esp"].retain_commands is True
    assert options["fixed"].expire_after == 600  # the file's own
    assert options["fixed"].command_topic == "same"
    assert "other" not in options

    again = LiveDeviceOptions(config, path)  # a restart
    assert again["esp"].expire_after == 60.0 and again["fixed"].command_topic == "same"
    again.update("esp", {}, ["expire_after", "retain_commands"])
    assert "esp" not in again
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_corrupt_file_stops_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "device-options.json"
    path.write_text('{"version": 1, "devices": {"esp": {"expire_after": "soon"}}}')
    with pytest.raises(StateFileError, match=r"device-options\.json"):
        LiveDeviceOptions(parse(CONFIG), path)
