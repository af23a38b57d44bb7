"""Which HAP bridge a device goes to, and that it stays there: `choose_bridge` and the
assignments file; where bridge n lives (`bridge_layout`); `homekit.bridges` and
`devices.<id>.bridge` in bridge.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mqtt_hk_bridge import const
from mqtt_hk_bridge.config import parse
from mqtt_hk_bridge.errors import ConfigError, StateFileError
from mqtt_hk_bridge.exposer import bridge_layout
from mqtt_hk_bridge.exposer.bridge_assignments import (
    ASSIGNMENTS_FILE,
    BridgeAssignments,
    NoRoom,
    choose_bridge,
)

FULL = const.MAX_BRIDGED_ACCESSORIES


def choose(**given: object) -> int:
    arguments: dict[str, object] = {
        "shown_on": None,
        "pinned": None,
        "remembered": None,
        "known_by": [],
        "shown_counts": {},
        "limit": 7,
    }
    arguments.update(given)
    return choose_bridge(**arguments)  # type: ignore[arg-type]


def test_a_new_device_takes_the_lowest_bridge_with_room() -> None:
    assert choose() == 1
    assert choose(shown_counts={1: FULL - 1}) == 1
    assert choose(shown_counts={1: FULL}) == 2
    assert choose(shown_counts={1: FULL, 2: FULL, 3: 10}) == 3
    # Room freed on bridge 1 is taken again by the next new device.
    assert choose(shown_counts={1: FULL - 1, 2: FULL, 3: 10}) == 1


def test_a_shown_device_never_moves_by_itself() -> None:
    assert choose(shown_on=3, remembered=1, known_by=[1], shown_counts={1: 0, 3: FULL}) == 3


def test_a_returning_device_goes_back_to_its_bridge_when_it_has_room() -> None:
    assert choose(remembered=2, known_by=[2], shown_counts={1: 5, 2: 5}) == 2
    # Its bridge filled up while it was away: it is placed like a new device.
    assert choose(remembered=2, known_by=[2], shown_counts={1: 5, 2: FULL}) == 1


def test_an_install_from_before_several_bridges_keeps_bridge_1() -> None:
    # No assignment yet, but bridge 1's ids know the device: its aid is there.
    assert choose(known_by=[1], shown_counts={1: 3}) == 1
    assert choose(known_by=[3], shown_counts={1: 3, 3: 3}) == 3


def test_the_bridge_option_moves_a_device_when_there_is_room() -> None:
    assert choose(shown_on=1, pinned=4, shown_counts={1: 10}) == 4
    # No room there: a shown device stays where it is; a new one waits.
    assert choose(shown_on=1, pinned=2, shown_counts={1: 10, 2: FULL}) == 1
    with pytest.raises(NoRoom, match="bridge 2, which its `bridge` option names"):
        choose(pinned=2, shown_counts={1: 10, 2: FULL})
    with pytest.raises(NoRoom, match=r"above homekit\.bridges"):
        choose(pinned=5, limit=4)


def test_no_room_on_any_bridge_up_to_the_limit() -> None:
    with pytest.raises(NoRoom, match="all 2 bridges"):
        choose(shown_counts={1: FULL, 2: FULL}, limit=2)
    with pytest.raises(NoRoom, match=r"homekit\.bridges is 1"):
        choose(shown_counts={1: FULL}, limit=1)
    # A remembered bridge above a lowered limit is not used.
    assert choose(remembered=5, known_by=[5], shown_counts={1: 3}, limit=4) == 1


def test_assignments_are_saved_and_kept(tmp_path: Path) -> None:
    path = tmp_path / ASSIGNMENTS_FILE
    assignments = BridgeAssignments(path)
    assert assignments.get("esp") is None
    assignments.set("esp", 2)
    assignments.set("other", 1)
    assert json.loads(path.read_text()) == {"version": 1, "devices": {"esp": 2, "other": 1}}
    again = BridgeAssignments(path)
    assert (again.get("esp"), again.get("other")) == (2, 1)


def test_an_assignment_that_cannot_be_saved_changes_nothing(tmp_path: Path) -> None:
    assignments = BridgeAssignments(tmp_path / ASSIGNMENTS_FILE)
    assignments.set("esp", 1)
    # The save's temp file cannot be made (as with a full disk; root ignores modes).
    (tmp_path / f".{ASSIGNMENTS_FILE}.tmp").mkdir()
    with pytest.raises(OSError):
        assignments.set("esp", 2)
    assert assignments.get("esp") == 1
    assert BridgeAssignments(tmp_path / ASSIGNMENTS_FILE).get("esp") == 1


def test_a_corrupt_assignments_file_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / ASSIGNMENTS_FILE
    path.write_text('{"version": 1, "devices": {"esp": "two"}}')
    with pytest.raises(StateFileError, match=ASSIGNMENTS_FILE):
        BridgeAssignments(path)


def test_bridge_layout(tmp_path: Path) -> None:
    assert bridge_layout.state_dir(tmp_path, 1) == tmp_path
    assert bridge_layout.state_dir(tmp_path, 3) == tmp_path / "bridge-3"
    assert bridge_layout.port(51826, 1) == 51826
    assert bridge_layout.port(51826, 7) == 51832
    assert bridge_layout.name("MQTT Bridge", 1) == "MQTT Bridge"
    assert bridge_layout.name("MQTT Bridge", 2) == "MQTT Bridge 2"
    assert bridge_layout.created(tmp_path / "missing") == [1]
    for name in ("bridge-3", "bridge-2", "bridge-x", "bridge-05"):
        (tmp_path / name).mkdir()
        (tmp_path / name / const.HAP_STATE_FILE).write_text("{}")
    (tmp_path / "bridge-4").mkdir()  # no state: never opened
    assert bridge_layout.created(tmp_path) == [1, 2, 3]


def test_homekit_bridges() -> None:
    assert parse({}, environ={}).homekit.bridges == const.DEFAULT_HAP_BRIDGES == 7
    assert parse({"homekit": {"bridges": 1}}, environ={}).homekit.bridges == 1
    with pytest.raises(ConfigError, match=r"homekit\.bridges"):
        parse({"homekit": {"bridges": 0}}, environ={})
    with pytest.raises(ConfigError, match=r"homekit\.bridges: bridge 3 would serve on port 65536"):
        parse({"homekit": {"port": 65534, "bridges": 3}}, environ={})


def test_a_device_bridge_within_homekit_bridges() -> None:
    config = parse({"homekit": {"bridges": 3}, "devices": {"esp": {"bridge": 3}}}, environ={})
    assert config.device_options("esp").bridge == 3
    assert config.device_options("other").bridge is None
    with pytest.raises(ConfigError, match=r"devices.esp.bridge: 4 is above homekit.bridges \(3\)"):
        parse({"homekit": {"bridges": 3}, "devices": {"esp": {"bridge": 4}}}, environ={})
