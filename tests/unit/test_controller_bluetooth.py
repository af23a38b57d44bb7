"""controller.bluetooth: whether aiohomekit's Bluetooth transport is loaded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mqtt_hk_bridge.config import load
from mqtt_hk_bridge.controller.bluetooth import wanted
from mqtt_hk_bridge.errors import ConfigError


def test_auto_is_on_only_where_linux_lists_an_adapter(tmp_path: Path) -> None:
    adapters = tmp_path / "bluetooth"
    assert not wanted("auto", adapters)  # no such directory: not Linux, or no support
    adapters.mkdir()
    assert not wanted("auto", adapters)  # support, but no adapter
    (adapters / "hci0").mkdir()
    assert wanted("auto", adapters)


def test_true_and_false_are_kept_whatever_the_machine_has(tmp_path: Path) -> None:
    (tmp_path / "hci0").mkdir()
    assert wanted(True, tmp_path / "none")
    assert not wanted(False, tmp_path)


@pytest.mark.parametrize(("text", "setting"), [("", "auto"), ("yes", True), ("off", False)])
def test_the_setting_as_people_write_it(tmp_path: Path, text: str, setting: object) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(f"controller: {{bluetooth: {text}}}\n" if text else "{}\n")
    assert load(path, environ={}).controller.bluetooth == setting


def test_anything_else_is_refused_with_the_choices(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text("controller: {bluetooth: hci0}\n")
    with pytest.raises(ConfigError, match=re.escape("controller.bluetooth: expected true, false")):
        load(path, environ={})
