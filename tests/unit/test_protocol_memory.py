"""The file that keeps, across restarts, that a broker needs MQTT 3.1.1."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mqtt_hk_bridge.mqtt.protocol_memory import MQTT_PROTOCOL_FILE, ProtocolMemory

BROKER = "rabbit.lan:1883"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / MQTT_PROTOCOL_FILE


def test_nothing_is_remembered_at_first(path: Path) -> None:
    assert ProtocolMemory(path, BROKER).load() is None


def test_311_is_remembered_for_the_next_start(path: Path) -> None:
    ProtocolMemory(path, BROKER).remember("3.1.1")
    assert json.loads(path.read_text()) == {"broker": BROKER, "protocol": "3.1.1"}
    assert path.stat().st_mode & 0o777 == 0o600
    assert ProtocolMemory(path, BROKER).load() == "3.1.1"


def test_another_broker_starts_afresh(path: Path) -> None:
    ProtocolMemory(path, BROKER).remember("3.1.1")
    assert ProtocolMemory(path, "mosquitto.lan:1883").load() is None


def test_a_connect_with_mqtt5_removes_the_file(path: Path) -> None:
    ProtocolMemory(path, BROKER).remember("3.1.1")
    ProtocolMemory(path, BROKER).remember("3.1.1")  # a .bak may come with a rewrite
    memory = ProtocolMemory(path, BROKER)
    assert memory.load() == "3.1.1"
    memory.remember("5")
    assert list(path.parent.iterdir()) == []
    assert ProtocolMemory(path, BROKER).load() is None


def test_mqtt5_leaves_no_file_behind(path: Path) -> None:
    ProtocolMemory(path, BROKER).remember("5")
    assert not path.exists()


def test_an_unreadable_file_is_ignored_with_a_warning(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path.write_text("{half")
    with caplog.at_level(logging.WARNING):
        assert ProtocolMemory(path, BROKER).load() is None
    assert f"Ignoring {path}" in caplog.text
    ProtocolMemory(path, BROKER).remember("3.1.1")  # and replaced by the next connect
    assert ProtocolMemory(path, BROKER).load() == "3.1.1"


def test_a_failed_write_is_a_warning_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing_dir = tmp_path / "gone" / MQTT_PROTOCOL_FILE
    with caplog.at_level(logging.WARNING):
        ProtocolMemory(missing_dir, BROKER).remember("3.1.1")
    assert f"Could not update {missing_dir}" in caplog.text
