"""The topic grammar as a user publishing to the bridge sees it (docs/topics.md)."""

from __future__ import annotations

import pytest

from mqtt_hk_bridge import const
from mqtt_hk_bridge.errors import TopicError
from mqtt_hk_bridge.mqtt import topics
from mqtt_hk_bridge.mqtt.topics import (
    AvailabilityTopic,
    BridgeTopic,
    CharKey,
    CommandTopic,
    ServiceKey,
    StateTopic,
    filter_overlaps_base,
    matches,
)

BASE = "HomeKit"


def key(service: str, characteristic: str, index: int = 1) -> CharKey:
    return CharKey(ServiceKey(service, index), characteristic)


# --- contract: the grammar, pinned -------------------------------------------------------
# Changing any row changes what every device and Node-RED flow out there must publish.
GRAMMAR = [
    (
        "HomeKit/esp8266_12345678/TemperatureSensor/CurrentTemperature",
        StateTopic("esp8266_12345678", key("TemperatureSensor", "CurrentTemperature")),
    ),
    (
        "HomeKit/esp1/TemperatureSensor/2/CurrentTemperature",
        StateTopic("esp1", key("TemperatureSensor", "CurrentTemperature", 2)),
    ),
    (
        "HomeKit/esp1/TemperatureSensor/16/CurrentTemperature",
        StateTopic("esp1", key("TemperatureSensor", "CurrentTemperature", 16)),
    ),
    ("HomeKit/TEST/Switch/On", StateTopic("TEST", key("Switch", "On"))),
    ("HomeKit/TEST/Switch/On/set", CommandTopic("TEST", key("Switch", "On"), "set")),
    ("HomeKit/TEST/Switch/On/get", CommandTopic("TEST", key("Switch", "On"), "get")),
    ("HomeKit/TEST/Switch/3/On/set", CommandTopic("TEST", key("Switch", "On", 3), "set")),
    ("HomeKit/TEST/Switch/3/On/get", CommandTopic("TEST", key("Switch", "On", 3), "get")),
    (
        "HomeKit/TEST/AccessoryInformation/Manufacturer",
        StateTopic("TEST", key("AccessoryInformation", "Manufacturer")),
    ),
    ("HomeKit/esp1/availability", AvailabilityTopic("esp1")),
    ("HomeKit/bridge", BridgeTopic(())),
    ("HomeKit/bridge/state", BridgeTopic(("state",))),
    ("HomeKit/bridge/request/pair", BridgeTopic(("request", "pair"))),
    ("HomeKit/bridge/request/device/remove", BridgeTopic(("request", "device", "remove"))),
    ("HomeKit/bridge/response/device/rename", BridgeTopic(("response", "device", "rename"))),
    # Names are passed through as written: the catalog, not the grammar, canonicalises case.
    (
        "HomeKit/dev1/temperaturesensor/currenttemperature",
        StateTopic("dev1", key("temperaturesensor", "currenttemperature")),
    ),
    # A controller-side vendor characteristic is named by its UUID.
    (
        "HomeKit/lamp/Lightbulb/0000FF01-0000-1000-8000-0026BB765291",
        StateTopic("lamp", key("Lightbulb", "0000FF01-0000-1000-8000-0026BB765291")),
    ),
]


@pytest.mark.parametrize(("topic", "expected"), GRAMMAR, ids=[row[0] for row in GRAMMAR])
def test_grammar_contract(topic: str, expected: topics.ParsedTopic) -> None:
    assert topics.parse(topic, BASE) == expected


@pytest.mark.parametrize(
    ("topic", "expected"),
    [row for row in GRAMMAR if isinstance(row[1], StateTopic | CommandTopic)],
)
def test_build_round_trips_state_and_command_topics(
    topic: str, expected: StateTopic | CommandTopic
) -> None:
    if isinstance(expected, CommandTopic):
        built = topics.command_topic(BASE, expected.device_id, expected.key, expected.action)
    else:
        built = topics.state_topic(BASE, expected.device_id, expected.key)
    assert built == topic
    assert topics.parse(built, BASE) == expected


def test_contract_constants() -> None:
    # The words every device sketch and flow hard-codes.
    assert const.DEFAULT_BASE_TOPIC == "HomeKit"
    assert (const.SET_SUFFIX, const.GET_SUFFIX) == ("set", "get")
    assert const.AVAILABILITY == "availability"
    assert (const.ONLINE, const.OFFLINE) == ("online", "offline")
    assert const.BRIDGE_DEVICE_ID == "bridge"
    assert const.MAX_SERVICE_INDEX == 16


def test_build_plain_form_for_index_one_and_index_level_otherwise() -> None:
    assert topics.state_topic(BASE, "esp1", key("Switch", "On")) == "HomeKit/esp1/Switch/On"
    assert topics.state_topic(BASE, "esp1", key("Switch", "On", 2)) == "HomeKit/esp1/Switch/2/On"


def test_command_topic_defaults_to_set() -> None:
    assert topics.command_topic(BASE, "TEST", key("Switch", "On")) == "HomeKit/TEST/Switch/On/set"


def test_build_availability_and_bridge_topics() -> None:
    assert topics.availability_topic(BASE, "esp1") == "HomeKit/esp1/availability"
    assert topics.parse(topics.availability_topic(BASE, "esp1"), BASE) == AvailabilityTopic("esp1")
    assert topics.bridge_topic(BASE, const.BRIDGE_STATE) == "HomeKit/bridge/state"
    built = topics.bridge_topic(BASE, const.BRIDGE_REQUEST, "device", "remove")
    assert built == "HomeKit/bridge/request/device/remove"
    assert topics.parse(built, BASE) == BridgeTopic(("request", "device", "remove"))
    assert topics.bridge_topic(BASE) == "HomeKit/bridge"


def test_custom_base_topic() -> None:
    assert topics.parse("home/esp1/Switch/On", "home") == StateTopic("esp1", key("Switch", "On"))
    assert topics.state_topic("home", "esp1", key("Switch", "On")) == "home/esp1/Switch/On"
    with pytest.raises(TopicError):
        topics.parse("HomeKit/esp1/Switch/On", "home")


def test_subscriptions_cover_every_device_and_the_bridge_subtree() -> None:
    assert topics.subscriptions(BASE) == ["HomeKit/#"]


def test_keys_print_as_their_topic_tail() -> None:
    assert str(key("TemperatureSensor", "CurrentTemperature")) == (
        "TemperatureSensor/CurrentTemperature"
    )
    assert str(key("TemperatureSensor", "CurrentTemperature", 2)) == (
        "TemperatureSensor/2/CurrentTemperature"
    )
    assert key("Switch", "On", 2).service == "Switch"
    assert key("Switch", "On", 2).index == 2


def test_plain_form_and_index_one_address_the_same_service() -> None:
    plain = topics.parse("HomeKit/esp1/Switch/On", BASE)
    indexed = topics.parse("HomeKit/esp1/Switch/1/On", BASE)
    assert plain == indexed


def test_service_keys_sort_by_type_then_index() -> None:
    keys = [ServiceKey("Switch", 2), ServiceKey("Lightbulb"), ServiceKey("Switch")]
    assert sorted(keys) == [ServiceKey("Lightbulb"), ServiceKey("Switch"), ServiceKey("Switch", 2)]


# --- malformed topics: each is a TopicError, never another exception ---------------------
MALFORMED = {
    "other base": "Other/esp1/Switch/On",
    "base differs in case": "homekit/esp1/Switch/On",
    "base only": "HomeKit",
    "empty device": "HomeKit/",
    "empty device with rest": "HomeKit//Switch/On",
    "device only": "HomeKit/dev1",
    "device and slash": "HomeKit/dev1/",
    "service only": "HomeKit/dev1/Switch",
    "empty service": "HomeKit/dev1//On",
    "empty characteristic": "HomeKit/dev1/Switch/",
    "empty index": "HomeKit/dev1/Switch//On",
    "trailing slash": "HomeKit/dev1/Switch/On/",
    "too deep": "HomeKit/dev1/a/b/c/d",
    "too deep with set": "HomeKit/dev1/Switch/2/On/extra/set",
    "index 0": "HomeKit/dev1/Switch/0/On",
    "index 17": "HomeKit/dev1/Switch/17/On",
    "index x": "HomeKit/dev1/Switch/x/On",
    "index negative": "HomeKit/dev1/Switch/-1/On",
    "index non-ascii digit": "HomeKit/dev1/Switch/\u0662/On",
    "index superscript": "HomeKit/dev1/Switch/\u00b2/On",
    "index huge": "HomeKit/dev1/Switch/" + "9" * 5000 + "/On",
    "device id 65 chars": "HomeKit/" + "d" * 65 + "/Switch/On",
    "empty topic": "",
}


@pytest.mark.parametrize("topic", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_topics_are_topic_errors(topic: str) -> None:
    with pytest.raises(TopicError):
        topics.parse(topic, BASE)


def test_device_id_of_64_characters_is_accepted() -> None:
    device_id = "d" * const.MAX_DEVICE_ID_LENGTH
    parsed = topics.parse(f"HomeKit/{device_id}/Switch/On", BASE)
    assert parsed == StateTopic(device_id, key("Switch", "On"))


def test_long_device_id_is_refused_with_a_message_saying_so() -> None:
    with pytest.raises(TopicError, match="longer than 64"):
        topics.parse("HomeKit/" + "d" * 65 + "/Switch/On", BASE)


def test_index_out_of_range_says_the_range() -> None:
    with pytest.raises(TopicError, match="1-16"):
        topics.parse("HomeKit/dev1/Switch/17/On", BASE)
    with pytest.raises(TopicError, match="not a number"):
        topics.parse("HomeKit/dev1/Switch/x/On", BASE)


def test_too_deep_topic_message_shows_the_expected_shape() -> None:
    with pytest.raises(TopicError, match=r"<Service>\[/<index>\]/<Characteristic>"):
        topics.parse("HomeKit/dev1/a/b/c/d", BASE)


HUGE = {
    "65,535-char topic, one long device level": "HomeKit/" + "x" * (65_535 - len("HomeKit/")),
    "65,535-char topic, long index": "HomeKit/dev/Switch/" + "1" * 65_000 + "/On",
    "65,535-char topic, with empty level": "HomeKit/dev//" + "x" * 65_000,
    "65,535-char topic, not under base": "x" * 65_535,
    "200 levels": "HomeKit/" + "/".join(f"l{i}" for i in range(199)),
    "200 empty levels": "HomeKit" + "/" * 199,
}


@pytest.mark.parametrize("topic", HUGE.values(), ids=HUGE.keys())
def test_huge_topics_are_refused_with_a_short_message(topic: str) -> None:
    # One log line per bad topic: the message must not carry the whole topic.
    with pytest.raises(TopicError) as caught:
        topics.parse(topic, BASE)
    assert len(str(caught.value)) < 400


def test_bridge_subtree_is_never_a_device() -> None:
    # Even a shape that would be a state topic for any other device id.
    assert topics.parse("HomeKit/bridge/Switch/On", BASE) == BridgeTopic(("Switch", "On"))
    assert topics.parse("HomeKit/bridge/availability", BASE) == BridgeTopic(("availability",))


def test_availability_word_is_only_special_directly_under_the_device() -> None:
    parsed = topics.parse("HomeKit/esp1/availability/set", BASE)
    assert not isinstance(parsed, AvailabilityTopic)


def test_set_and_get_are_only_actions_after_a_characteristic() -> None:
    # `.../Switch/set` has no characteristic before `set`: it is not a command (the catalog
    # then refuses `set` as a characteristic name).
    parsed = topics.parse("HomeKit/esp1/Switch/set", BASE)
    assert not isinstance(parsed, CommandTopic)
    parsed = topics.parse("HomeKit/esp1/Switch/On/set", BASE)
    assert isinstance(parsed, CommandTopic)
    assert parsed.action == "set"
    assert parsed.key == key("Switch", "On")


# --- topic filters (features outside the base tree) ---------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("stat/plug/POWER", "stat/plug/POWER", True),
        ("stat/plug/POWER", "stat/plug/POWER2", False),
        ("stat/+/POWER", "stat/plug/POWER", True),
        ("stat/+/POWER", "stat/plug/x/POWER", False),
        ("zigbee2mqtt/#", "zigbee2mqtt/bulb/set", True),
        ("zigbee2mqtt/#", "zigbee2mqtt", True),
        ("zigbee2mqtt/#", "zigbee2mqttx/bulb", False),
        ("homeassistant/+/+/config", "homeassistant/light/bulb/config", True),
        ("homeassistant/+/+/config", "homeassistant/light/node/bulb/config", False),
        ("#", "$SYS/broker/uptime", False),
        ("+/x", "$SYS/x", False),
        ("a/b", "a", False),
    ],
)
def test_filter_matches_as_mqtt_brokers_match(
    topic_filter: str, topic: str, expected: bool
) -> None:
    assert matches(topic_filter, topic) is expected


def test_a_feature_filter_may_not_overlap_the_base_tree() -> None:
    assert filter_overlaps_base("HomeKit/#", "HomeKit")
    assert filter_overlaps_base("+/x/y", "HomeKit")
    assert filter_overlaps_base("#", "HomeKit")
    assert not filter_overlaps_base("stat/#", "HomeKit")
