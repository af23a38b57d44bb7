"""The controller pairing store: atomic, 0600, corrupt -> clear error, never reset."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mqtt_hk_bridge.config import parse
from mqtt_hk_bridge.controller.pairings import (
    PairingError,
    PairingStore,
    check_alias,
    normalize_setup_code,
)
from mqtt_hk_bridge.controller.settings import ControllerSettings
from mqtt_hk_bridge.errors import ConfigError, StateFileError

PAIRING = {
    "AccessoryPairingID": "AA:BB:CC:DD:EE:FF",
    "AccessoryLTPK": "00" * 32,
    "iOSPairingId": "c0ffee",
    "iOSDeviceLTSK": "11" * 32,
    "iOSDeviceLTPK": "22" * 32,
    "AccessoryIP": "127.0.0.1",
    "AccessoryIPs": ["127.0.0.1"],
    "AccessoryPort": 51826,
    "Connection": "IP",
}


def test_put_writes_0600_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "state" / "pairings.json"
    store = PairingStore(path)
    assert store.load() == {}
    store.put("kitchen", PAIRING)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    again = PairingStore(path)
    assert again.load() == {"kitchen": PAIRING}
    assert again.alias_of("aa:bb:cc:dd:ee:ff") == "kitchen"
    again.remove("kitchen")
    assert PairingStore(path).load() == {}


def test_update_endpoint_saves_only_changes(tmp_path: Path) -> None:
    store = PairingStore(tmp_path / "p.json")
    store.put("kitchen", PAIRING)
    assert not store.update_endpoint("kitchen", ["127.0.0.1"], 51826)
    assert store.update_endpoint("kitchen", ["127.0.0.2"], 40000)
    data = PairingStore(tmp_path / "p.json").get("kitchen")
    assert (data["AccessoryIP"], data["AccessoryPort"]) == ("127.0.0.2", 40000)


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b'{"version": 1, "pairings": {"x": {"AccessoryPairingID": "a"}}}', b"[]"],
)
def test_corrupt_file_is_a_clear_error_and_is_kept(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "pairings.json"
    path.write_bytes(content)
    with pytest.raises(StateFileError, match=r"pairings\.json"):
        PairingStore(path).load()
    assert path.read_bytes() == content  # never reset


def test_corrupt_primary_falls_back_to_backup(tmp_path: Path) -> None:
    path = tmp_path / "pairings.json"
    store = PairingStore(path)
    store.put("a", PAIRING)
    store.put("b", PAIRING)  # the .bak now holds {"a"}
    path.write_text("garbage")
    assert set(PairingStore(path).load()) == {"a"}


def test_unknown_alias(tmp_path: Path) -> None:
    with pytest.raises(PairingError, match="no pairing called 'x'"):
        PairingStore(tmp_path / "p.json").get("x")


@pytest.mark.parametrize("alias", ["kitchen", "living-room", "hue_1", "a.b", "lamp-x2"])
def test_good_aliases(alias: str) -> None:
    assert check_alias(alias) == alias


@pytest.mark.parametrize("alias", ["", "a/b", "a+b", "a#", "bridge", "lamp-2", "x" * 60, "a b"])
def test_bad_aliases(alias: str) -> None:
    with pytest.raises(PairingError):
        check_alias(alias)


def test_setup_code_forms() -> None:
    assert normalize_setup_code("48291735") == "482-91-735"
    assert normalize_setup_code(" 482-91-735 ") == "482-91-735"
    with pytest.raises(PairingError):
        normalize_setup_code("4829173")


def test_settings_defaults_and_schema() -> None:
    assert parse({}).controller == ControllerSettings()
    parsed = parse({"controller": {"reconnect_max": "5", "poll_interval": 0}}).controller
    assert parsed.reconnect_max == 5.0 and parsed.poll_interval == 0.0
    with pytest.raises(ConfigError, match=r"controller\.nope"):
        parse({"controller": {"nope": 1}})


def test_store_file_is_plain_json(tmp_path: Path) -> None:
    store = PairingStore(tmp_path / "p.json")
    store.put("kitchen", PAIRING)
    assert json.loads((tmp_path / "p.json").read_text())["version"] == 1


def test_a_second_writer_is_not_clobbered(tmp_path: Path) -> None:
    """The daemon's store and a CLI `pair` write the same file: neither loses the other's."""
    daemon = PairingStore(tmp_path / "p.json")
    daemon.put("a", PAIRING)
    PairingStore(tmp_path / "p.json").put("b", {**PAIRING, "AccessoryPairingID": "11:22"})
    daemon.update_endpoint("a", ["127.0.0.9"], 1234)
    assert set(PairingStore(tmp_path / "p.json").load()) == {"a", "b"}
