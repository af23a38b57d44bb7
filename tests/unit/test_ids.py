"""aids and iids: the Home app keeps rooms, names and automations by them."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mqtt_hk_bridge.errors import StateFileError
from mqtt_hk_bridge.exposer.ids import FIRST_BRIDGED_AID, FIRST_IID, IdStore


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ids.json"


def test_first_accessory_gets_aid_2(path: Path) -> None:
    # aid 1 is the bridge itself.
    assert FIRST_BRIDGED_AID == 2
    assert IdStore(path).aid("esp1") == 2


def test_each_device_gets_its_own_aid_and_keeps_it(path: Path) -> None:
    ids = IdStore(path)
    assert [ids.aid(d) for d in ("esp1", "esp2", "TEST")] == [2, 3, 4]
    assert [ids.aid(d) for d in ("TEST", "esp1", "esp2")] == [4, 2, 3]


def test_aids_are_stable_across_reload(path: Path) -> None:
    first = IdStore(path)
    before = {d: first.aid(d) for d in ("esp1", "esp2", "esp3")}
    first.save()
    again = IdStore(path)
    # Asked in another order after the restart: nothing shifts.
    assert {d: again.aid(d) for d in ("esp3", "esp1", "esp2")} == before


def test_aids_are_never_reused(path: Path) -> None:
    ids = IdStore(path)
    ids.aid("esp1")
    ids.aid("esp2")
    ids.save()
    again = IdStore(path)
    assert again.aid("new-device") == 4
    again.save()
    assert IdStore(path).aid("another") == 5


def test_known_aid_does_not_allocate(path: Path) -> None:
    ids = IdStore(path)
    assert ids.known_aid("esp1") is None
    assert not path.exists()
    ids.aid("esp1")
    assert ids.known_aid("esp1") == 2
    assert ids.known_aid("esp2") is None
    assert ids.aid("esp2") == 3


def test_iids_start_at_1_and_count_up_per_device(path: Path) -> None:
    ids = IdStore(path)
    assert FIRST_IID == 1
    assert ids.iid("esp1", "AccessoryInformation/1") == 1
    assert ids.iid("esp1", "AccessoryInformation/1/Name") == 2
    assert ids.iid("esp1", "TemperatureSensor/1") == 3
    # Another device has its own numbering.
    assert ids.iid("esp2", "AccessoryInformation/1") == 1


def test_iids_are_stable_and_new_keys_are_appended(path: Path) -> None:
    ids = IdStore(path)
    keys = ["AccessoryInformation/1", "TemperatureSensor/1", "TemperatureSensor/1/Current"]
    before = {k: ids.iid("esp1", k) for k in keys}
    ids.save()
    again = IdStore(path)
    # A service added later takes the next free iid; the old ones keep theirs.
    assert again.iid("esp1", "HumiditySensor/1") == max(before.values()) + 1
    assert again.iid("esp1", "HumiditySensor/1/CurrentRelativeHumidity") == max(before.values()) + 2
    assert {k: again.iid("esp1", k) for k in reversed(keys)} == before
    assert again.aid("esp1") == 2


def test_iids_are_never_reused_within_a_device(path: Path) -> None:
    ids = IdStore(path)
    seen = [ids.iid("esp1", f"Switch/{n}") for n in range(1, 9)]
    ids.save()
    for n in range(1, 9):
        again = IdStore(path)
        seen.append(again.iid("esp1", f"Switch/{n}/On"))
        again.save()
    assert len(set(seen)) == len(seen)


def test_iid_for_an_unknown_device_gives_it_an_aid(path: Path) -> None:
    ids = IdStore(path)
    ids.iid("esp9", "Switch/1")
    assert ids.known_aid("esp9") == 2


def test_allocations_are_on_disk_after_save(path: Path) -> None:
    # The accessory side saves before an accessory with new ids joins the bridge, so a
    # kill -9 can never hand out again a number a controller has seen.
    ids = IdStore(path)
    ids.aid("esp1")
    ids.iid("esp1", "Switch/1")
    assert not path.exists()  # one write per accessory built, not one per allocation
    ids.save()
    on_disk = json.loads(path.read_text())
    assert on_disk["next_aid"] == 3
    assert on_disk["devices"]["esp1"]["aid"] == 2
    assert on_disk["devices"]["esp1"]["iids"] == {"Switch/1": 1}


def test_store_file_is_private(path: Path) -> None:
    ids = IdStore(path)
    ids.aid("esp1")
    ids.save()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_corrupt_id_file_stops_start_up(path: Path) -> None:
    path.write_text('{"next_aid": 3, "devices": {"esp1": {"aid": 2}}}')  # no iids
    with pytest.raises(StateFileError, match=r"ids\.json"):
        IdStore(path)


def test_corrupt_id_file_recovers_from_bak(path: Path) -> None:
    ids = IdStore(path)
    ids.aid("esp1")
    ids.save()
    ids.aid("esp2")
    ids.save()  # the .bak now holds esp1
    path.write_text("{")
    again = IdStore(path)
    assert again.aid("esp1") == 2
