"""What the bridge remembers of MQTT devices, and which changes reshape the Home app."""

from __future__ import annotations

import json

from mqtt_hk_bridge.exposer.registry import Change, Device, Registry
from mqtt_hk_bridge.mqtt.topics import CharKey, ServiceKey

TEMPERATURE = CharKey(ServiceKey("TemperatureSensor"), "CurrentTemperature")
TEMPERATURE_2 = CharKey(ServiceKey("TemperatureSensor", 2), "CurrentTemperature")
HUMIDITY = CharKey(ServiceKey("HumiditySensor"), "CurrentRelativeHumidity")
ON = CharKey(ServiceKey("Lightbulb"), "On")
BRIGHTNESS = CharKey(ServiceKey("Lightbulb"), "Brightness")
INFO_NAME = CharKey(ServiceKey("AccessoryInformation"), "Name")
INFO_MODEL = CharKey(ServiceKey("AccessoryInformation"), "Model")


def test_first_value_of_a_device_is_structural() -> None:
    registry = Registry()
    assert registry.set_value("esp1", TEMPERATURE, 20.0, now=100.0) is Change.STRUCTURE
    assert registry.devices["esp1"].value(TEMPERATURE) == 20.0


def test_new_service_on_a_known_device_is_structural_and_same_device() -> None:
    registry = Registry()
    registry.set_value("esp1", TEMPERATURE, 20.0, now=1.0)
    assert registry.set_value("esp1", HUMIDITY, 58.0, now=2.0) is Change.STRUCTURE
    assert list(registry.devices) == ["esp1"]
    assert registry.devices["esp1"].exposed_services == [
        HUMIDITY.service_key,
        TEMPERATURE.service_key,
    ]


def test_second_service_of_a_type_is_structural() -> None:
    registry = Registry()
    registry.set_value("esp1", TEMPERATURE, 20.0, now=1.0)
    assert registry.set_value("esp1", TEMPERATURE_2, 18.0, now=1.0) is Change.STRUCTURE
    device = registry.devices["esp1"]
    assert device.value(TEMPERATURE) == 20.0
    assert device.value(TEMPERATURE_2) == 18.0


def test_new_characteristic_on_a_known_service_is_structural() -> None:
    registry = Registry()
    registry.set_value("lamp", ON, True, now=1.0)
    assert registry.set_value("lamp", BRIGHTNESS, 40, now=1.0) is Change.STRUCTURE


def test_value_changes_are_not_structural() -> None:
    # 100 value-only changes must never bump the configuration number.
    registry = Registry()
    registry.set_value("esp1", TEMPERATURE, 20.0, now=1.0)
    changes = [
        registry.set_value("esp1", TEMPERATURE, 20.0 + n / 10, now=1.0 + n) for n in range(1, 101)
    ]
    assert set(changes) == {Change.VALUE}
    assert registry.devices["esp1"].value(TEMPERATURE) == 30.0


def test_same_value_again_is_no_change_but_counts_as_seen() -> None:
    registry = Registry()
    registry.set_value("esp1", TEMPERATURE, 20.0, now=1.0)
    assert registry.set_value("esp1", TEMPERATURE, 20.0, now=50.0) is Change.NONE
    assert registry.devices["esp1"].last_seen == 50.0


def test_clearing_the_last_characteristic_removes_service_and_device() -> None:
    registry = Registry()
    registry.set_value("esp1", TEMPERATURE, 20.0, now=1.0)
    registry.set_value("esp1", HUMIDITY, 58.0, now=1.0)
    assert registry.clear("esp1", HUMIDITY) is Change.STRUCTURE
    assert registry.devices["esp1"].exposed_services == [TEMPERATURE.service_key]
    assert registry.clear("esp1", TEMPERATURE) is Change.STRUCTURE
    assert "esp1" not in registry.devices


def test_clearing_an_optional_characteristic_is_structural() -> None:
    # The accessory shows Brightness only while it has a value: clearing it reshapes the
    # accessory just as its first value did.
    registry = Registry()
    registry.set_value("lamp", ON, True, now=1.0)
    registry.set_value("lamp", BRIGHTNESS, 40, now=1.0)
    assert registry.clear("lamp", BRIGHTNESS) is Change.STRUCTURE
    assert registry.devices["lamp"].value(BRIGHTNESS) is None
    assert registry.devices["lamp"].value(ON) is True
    assert registry.set_value("lamp", BRIGHTNESS, 40, now=2.0) is Change.STRUCTURE


def test_clearing_what_is_not_there_is_no_change() -> None:
    registry = Registry()
    assert registry.clear("ghost", TEMPERATURE) is Change.NONE
    registry.set_value("esp1", TEMPERATURE, 20.0, now=1.0)
    assert registry.clear("esp1", HUMIDITY) is Change.NONE
    assert registry.clear("esp1", TEMPERATURE_2) is Change.NONE
    assert registry.devices["esp1"].value(TEMPERATURE) == 20.0


def test_information_service_is_kept_but_not_exposed_as_a_service() -> None:
    registry = Registry()
    registry.set_value("esp1", INFO_NAME, "Attic", now=1.0)
    registry.set_value("esp1", TEMPERATURE, 20.0, now=1.0)
    device = registry.devices["esp1"]
    assert device.info("Name") == "Attic"
    assert device.info("Model") is None
    assert device.exposed_services == [TEMPERATURE.service_key]


def test_information_only_device_exposes_nothing() -> None:
    registry = Registry()
    registry.set_value("esp1", INFO_MODEL, "ESP8266", now=1.0)
    assert registry.devices["esp1"].exposed_services == []


def test_remove_device() -> None:
    registry = Registry()
    registry.set_value("esp1", TEMPERATURE, 20.0, now=1.0)
    assert registry.remove("esp1") is True
    assert registry.remove("esp1") is False
    assert registry.devices == {}


# --- availability ------------------------------------------------------------------------
def test_online_offline_and_change_reporting() -> None:
    registry = Registry()
    registry.set_value("esp1", TEMPERATURE, 20.0, now=1.0)
    device = registry.devices["esp1"]
    assert device.online is None
    assert device.available(now=2.0, expire_after=None)
    assert registry.set_online("esp1", False, now=3.0) is True
    assert not device.available(now=3.0, expire_after=None)
    assert registry.set_online("esp1", False, now=4.0) is False
    assert registry.set_online("esp1", True, now=5.0) is True
    assert device.available(now=5.0, expire_after=None)


def test_online_counts_as_seen_and_offline_does_not() -> None:
    registry = Registry()
    registry.set_value("esp1", TEMPERATURE, 20.0, now=1.0)
    registry.set_online("esp1", False, now=50.0)
    assert registry.devices["esp1"].last_seen == 1.0
    registry.set_online("esp1", True, now=60.0)
    assert registry.devices["esp1"].last_seen == 60.0


def test_availability_for_an_unknown_device_is_ignored() -> None:
    registry = Registry()
    assert registry.set_online("ghost", True, now=1.0) is False
    assert "ghost" not in registry.devices


def test_expiry() -> None:
    device = Device("esp1", last_seen=100.0)
    assert device.available(now=1_000_000.0, expire_after=None)
    assert device.available(now=160.0, expire_after=60.0)
    assert not device.available(now=160.1, expire_after=60.0)
    device.online = False
    assert not device.available(now=100.0, expire_after=60.0)


def test_a_new_value_brings_an_expired_device_back() -> None:
    registry = Registry()
    registry.set_value("esp1", TEMPERATURE, 20.0, now=0.0)
    assert not registry.devices["esp1"].available(now=1000.0, expire_after=900.0)
    registry.set_value("esp1", TEMPERATURE, 20.0, now=1000.0)
    assert registry.devices["esp1"].available(now=1000.0, expire_after=900.0)


# --- persistence: last values survive a restart ------------------------------------------
def _populated() -> Registry:
    registry = Registry()
    registry.set_value("esp1", TEMPERATURE, 20.1, now=10.0)
    registry.set_value("esp1", TEMPERATURE_2, 18.5, now=11.0)
    registry.set_value("esp1", INFO_NAME, "Attic", now=12.0)
    registry.set_value("lamp", ON, True, now=13.0, source="mapping")
    registry.set_value("lamp", BRIGHTNESS, 40, now=14.0, source="mapping")
    registry.set_online("lamp", False, now=15.0)
    registry.devices["lamp"].name = "Desk lamp"
    return registry


def test_json_round_trip_keeps_values_availability_and_names() -> None:
    registry = _populated()
    # Through real JSON text, as the state file holds it.
    again = Registry.from_json(json.loads(json.dumps(registry.to_json())))
    assert again.devices.keys() == registry.devices.keys()
    for device_id, device in registry.devices.items():
        restored = again.devices[device_id]
        assert restored.services == device.services
        assert restored.online == device.online
        assert restored.last_seen == device.last_seen
        assert restored.name == device.name
        assert restored.source == device.source
    lamp = again.devices["lamp"]
    assert lamp.source == "mapping"  # the source that reported it first
    assert again.devices["esp1"].source == "homekit_topics"
    assert lamp.value(ON) is True  # a bool stays a bool, not 1
    assert lamp.value(BRIGHTNESS) == 40
    assert lamp.online is False
    assert again.devices["esp1"].value(TEMPERATURE_2) == 18.5


def test_restored_registry_reports_no_change_for_the_same_values() -> None:
    # A restart with the same retained messages must not look like new structure.
    again = Registry.from_json(json.loads(json.dumps(_populated().to_json())))
    assert again.set_value("esp1", TEMPERATURE, 20.1, now=20.0) is Change.NONE
    assert again.set_value("esp1", TEMPERATURE_2, 18.5, now=20.0) is Change.NONE
    assert again.set_value("lamp", BRIGHTNESS, 41, now=20.0) is Change.VALUE


def test_to_json_is_deterministic() -> None:
    first = _populated()
    second = Registry.from_json(first.to_json())
    assert json.dumps(first.to_json(), sort_keys=True) == json.dumps(
        second.to_json(), sort_keys=True
    )


def test_a_state_file_from_before_sources_reads_as_our_topic_layout() -> None:
    data = _populated().to_json()
    for raw in data.values():
        del raw["source"]
    assert {d.source for d in Registry.from_json(data).devices.values()} == {"homekit_topics"}
