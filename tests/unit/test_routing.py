"""Which feature gets an MQTT message: the topic is parsed once, each device id has one owner."""

from __future__ import annotations

import pytest

from mqtt_hk_bridge.mqtt.link import IncomingMessage
from mqtt_hk_bridge.mqtt.topics import CommandTopic, StateTopic
from mqtt_hk_bridge.routing import DeviceTopic, Router

BASE = "HomeKit"


def message(topic: str, payload: bytes = b"1") -> IncomingMessage:
    return IncomingMessage(topic, payload, retain=False)


@pytest.fixture
def received() -> dict[str, list[object]]:
    return {"controller": [], "exposer": [], "tasmota": []}


@pytest.fixture
def router(received: dict[str, list[object]]) -> Router:
    router = Router(BASE)
    router.own_devices(
        lambda device_id: device_id.startswith("hue"),
        lambda parsed, _: received["controller"].append(parsed),
    )
    router.own_other_devices(lambda parsed, _: received["exposer"].append(parsed))
    router.add_filter("stat/+/POWER", lambda msg: received["tasmota"].append(msg.topic))
    return router


def test_each_device_topic_reaches_exactly_one_owner(
    router: Router, received: dict[str, list[DeviceTopic]]
) -> None:
    router.dispatch(message("HomeKit/hue-2/Lightbulb/On/set"))
    router.dispatch(message("HomeKit/esp_1/Switch/On"))
    assert [type(p) for p in received["controller"]] == [CommandTopic]
    assert [type(p) for p in received["exposer"]] == [StateTopic]
    assert received["exposer"][0].device_id == "esp_1"


def test_a_feature_filter_takes_its_topics_and_is_subscribed(
    router: Router, received: dict[str, list[object]]
) -> None:
    router.dispatch(message("stat/plug/POWER", b"ON"))
    router.dispatch(message("stat/plug/STATUS", b"x"))  # neither filtered nor under the base
    assert received["tasmota"] == ["stat/plug/POWER"]
    assert received["exposer"] == [] and received["controller"] == []
    assert router.subscriptions == ["HomeKit/#", "stat/+/POWER"]


def test_bad_topics_under_the_base_are_counted_not_delivered(
    router: Router, received: dict[str, list[object]]
) -> None:
    router.dispatch(message("HomeKit/esp_1/only-two"))
    router.dispatch(message("HomeKit//Switch/On"))
    assert router.rejected_topics == 2
    assert received["exposer"] == []


def test_a_filter_may_not_take_over_the_base_tree(router: Router) -> None:
    with pytest.raises(ValueError, match="overlaps"):
        router.add_filter("+/esp_1/#", lambda msg: None)


def test_an_exact_filter_wins_over_a_wildcard_one(
    router: Router, received: dict[str, list[object]]
) -> None:
    # A device's state topic under a discovery prefix goes to the device, not the prefix.
    prefix: list[str] = []
    router.add_filter("homeassistant/#", lambda msg: prefix.append(msg.topic))
    router.add_filter("homeassistant/sensor/x/state", lambda msg: received["tasmota"].append("x"))
    router.dispatch(message("homeassistant/sensor/x/state"))
    router.dispatch(message("homeassistant/sensor/x/config"))
    assert received["tasmota"] == ["x"]
    assert prefix == ["homeassistant/sensor/x/config"]


def test_a_filter_added_later_is_announced_once(router: Router) -> None:
    added: list[str] = []
    router.on_filter_added = added.append
    router.add_filter("zigbee2mqtt/bulb", lambda msg: None)
    router.add_filter("zigbee2mqtt/bulb", lambda msg: None)
    assert added == ["zigbee2mqtt/bulb"]
    assert router.subscriptions.count("zigbee2mqtt/bulb") == 1
