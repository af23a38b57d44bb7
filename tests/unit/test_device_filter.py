"""`device_filter` and `instance` as a user writes them in bridge.yaml, and what the
filter takes."""

from __future__ import annotations

import pytest

from mqtt_hk_bridge.config import DeviceFilter, parse
from mqtt_hk_bridge.errors import ConfigError
from mqtt_hk_bridge.exposer.device_filter import device_filter


def test_no_filter_takes_every_device() -> None:
    takes = device_filter(parse({}, environ={}).device_filter)
    assert takes("esp8266_12345678") and takes("anything")


def test_include_and_exclude_globs() -> None:
    config = parse(
        {"device_filter": {"include": ["kitchen_*", "esp?"], "exclude": ["kitchen_test*"]}},
        environ={},
    )
    assert config.device_filter == DeviceFilter(("kitchen_*", "esp?"), ("kitchen_test*",))
    takes = device_filter(config.device_filter)
    assert takes("kitchen_light") and takes("esp1")
    assert not takes("kitchen_test_1")  # exclude wins
    assert not takes("esp12") and not takes("living_room")
    assert not takes("Kitchen_light")  # device ids are case-sensitive


def test_exclude_alone_takes_the_rest() -> None:
    takes = device_filter(DeviceFilter(exclude=("zigbee_[ab]*",)))
    assert takes("zigbee_c1") and not takes("zigbee_a1") and not takes("zigbee_b1")


@pytest.mark.parametrize("pattern", ["kitchen/#", "+", "a#", ""])
def test_a_topic_filter_is_not_a_device_pattern(pattern: str) -> None:
    with pytest.raises(ConfigError, match=r"device_filter.include.*use \* and \?"):
        parse({"device_filter": {"include": [pattern]}}, environ={})


def test_instance_names_the_bridge_topics() -> None:
    assert parse({}, environ={}).bridge_levels == ()
    config = parse({"instance": "upstairs"}, environ={})
    assert (config.instance, config.bridge_levels) == ("upstairs", ("upstairs",))
    for word in ("request", "info", "a/b", ""):
        with pytest.raises(ConfigError, match="instance"):
            parse({"instance": word}, environ={})
