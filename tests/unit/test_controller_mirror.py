"""Accessory database -> topics: names, service indexes, vendor UUIDs, bridged ids; and the
repeated-(aid, iid) detector. Golden digests pin the topics of every recorded database."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from mqtt_hk_bridge.controller.mirror import (
    build,
    characteristic_name,
    device_id_for,
    service_name,
    topics_of,
)
from mqtt_hk_bridge.controller.sessions import repeated_ids
from mqtt_hk_bridge.mqtt.topics import CharKey, ServiceKey, parse
from tests.support.fixtures import ACCESSORY_DATABASES

DATABASES = ACCESSORY_DATABASES
APPLE = "-0000-1000-8000-0026BB765291"
VENDOR = "E863F10A-079E-48FF-8F27-9C2605A29F52"


def char(iid: int, short: str, fmt: str, perms: list[str], value: Any = None) -> dict[str, Any]:
    raw: dict[str, Any] = {"iid": iid, "type": short, "format": fmt, "perms": perms}
    if value is not None:
        raw["value"] = value
    return raw


DATABASE = [
    {
        "aid": 1,
        "services": [
            {"iid": 1, "type": "3E", "characteristics": [char(2, "23", "string", ["pr"], "Hub")]},
        ],
    },
    {
        "aid": 7,
        "services": [
            # Listed out of iid order on purpose: numbering follows iids.
            {
                "iid": 20,
                "type": "8A",
                "characteristics": [char(21, "11", "float", ["pr", "ev"], 19.5)],
            },
            {
                "iid": 10,
                "type": "8A",
                "characteristics": [
                    char(11, "11", "float", ["pr", "ev"], 21.0),
                    char(12, VENDOR, "uint16", ["pr"], 3),
                ],
            },
            {"iid": 30, "type": VENDOR, "characteristics": [char(31, "25", "bool", ["pw"])]},
        ],
    },
]


def test_names_indexes_and_device_ids() -> None:
    topics = topics_of("hub", "HomeKit", DATABASE)
    assert topics == sorted(
        [
            "HomeKit/hub/AccessoryInformation/Name",
            "HomeKit/hub-7/TemperatureSensor/CurrentTemperature",
            f"HomeKit/hub-7/TemperatureSensor/{VENDOR}",
            "HomeKit/hub-7/TemperatureSensor/2/CurrentTemperature",
            f"HomeKit/hub-7/{VENDOR}/On",
        ]
    )
    devices, values = build("hub", "HomeKit", DATABASE)
    assert devices["hub"].name == "Hub"
    assert devices["hub-7"].name == "hub-7"  # no information service: the id
    first = next(c for c in devices["hub-7"].chars if c.iid == 11)
    assert first.key == CharKey(ServiceKey("TemperatureSensor", 1), "CurrentTemperature")
    assert values[(7, 21)] == 19.5
    write_only = next(c for c in devices["hub-7"].chars if c.iid == 31)
    assert write_only.info.writable and not write_only.info.readable


def test_every_topic_parses_back() -> None:
    for name in sorted(p.stem for p in DATABASES.glob("*.json")):
        database = json.loads((DATABASES / f"{name}.json").read_text())
        devices, _ = build("dev", "HomeKit", database)
        for device in devices.values():
            for mirrored in device.chars:
                parsed = parse(mirrored.topic, "HomeKit")
                assert parsed.device_id == device.device_id  # type: ignore[union-attr]
                assert parsed.key == mirrored.key  # type: ignore[union-attr]


def test_device_ids() -> None:
    assert device_id_for("hue", 1) == "hue"
    assert device_id_for("hue", 6623462389072572) == "hue-6623462389072572"


# sha256 (first 16 hex) of the sorted topic list for alias "dev", and the topic count. A
# change here changes users' topics: make it a conscious one.
GOLDEN = {
    "aqara_gateway": (37, "57bee7310be648a5"),
    "camera": (21, "9c8505bf2ceb4000"),
    "ecobee3": (85, "7d259475839c12f7"),
    "eve_energy": (32, "64d742cc960ded88"),
    "home_assistant_bridge_camera": (58, "0b99ea4418160a30"),
    "hue_bridge": (185, "41df0cbc06358d15"),
    "idevices_switch": (16, "d2179946e6d70fc6"),
    "koogeek_ls1": (18, "5e67cde931ad19a3"),
    "lennox_e30": (15, "6e6df2847f70365d"),
    "nanoleaf_bulb": (36, "3624deada649c616"),
    "vocolinc_flowerbud": (35, "91732d03555d5f8c"),
}

SAMPLES = {
    "eve_energy": ["HomeKit/dev/Outlet/On", f"HomeKit/dev/Outlet/{VENDOR}"],
    "hue_bridge": [
        "HomeKit/dev-6623462378982941/Lightbulb/Brightness",
        "HomeKit/dev/AccessoryInformation/Name",
    ],
    "camera": [
        "HomeKit/dev/CameraRTPStreamManagement/Active",
        "HomeKit/dev/CameraRTPStreamManagement/2/Active",
    ],
    "ecobee3": [
        "HomeKit/dev/Thermostat/TargetTemperature",
        "HomeKit/dev-2/AccessoryInformation/Name",
    ],
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_recorded_databases_have_stable_topics(name: str) -> None:
    database = json.loads((DATABASES / f"{name}.json").read_text())
    topics = topics_of("dev", "HomeKit", database)
    assert len(topics) == len(set(topics))
    digest = hashlib.sha256("\n".join(topics).encode()).hexdigest()[:16]
    assert (len(topics), digest) == GOLDEN[name]
    for sample in SAMPLES.get(name, []):
        assert sample in topics
    assert all("+" not in t and "#" not in t and "//" not in t for t in topics)


def test_repeated_ids_in_one_event_frame() -> None:
    body = {
        "characteristics": [
            {"aid": 2, "iid": 10, "value": 5},
            {"aid": 2, "iid": 11, "value": 1},
            {"aid": 2, "iid": 10, "value": 4},
        ]
    }
    assert repeated_ids(body) == {(2, 10)}
    assert repeated_ids({"characteristics": [{"aid": 1, "iid": 2}]}) == set()
    assert repeated_ids([]) == set()


def test_apple_types_missing_from_hap_python_get_aiohomekits_names() -> None:
    assert service_name("A2") == "ProtocolInformation"
    assert service_name("00000701-0000-1000-8000-0026BB765291") == "ThreadTransport"
    # A vendor's UUID means what that vendor says: it stays a UUID, whatever aiohomekit
    # calls it on one product.
    assert characteristic_name(VENDOR) == VENDOR
    # HAP-python's names come first.
    assert service_name("43") == "Lightbulb"
