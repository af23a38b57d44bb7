"""How a mapped characteristic reads payloads and writes commands (docs/mapping.md)."""

from __future__ import annotations

import pytest

from mqtt_hk_bridge.errors import PayloadError
from mqtt_hk_bridge.exposer.colour import hs_to_xy, rgb_to_hs, xy_to_hs
from mqtt_hk_bridge.exposer.transforms import (
    JsonPath,
    Linear,
    PayloadView,
    ValueMap,
    device_word,
    render_command,
)

TASMOTA_SENSOR = b'{"Time":"2024-01-01T12:00:00","AM2301":{"Temperature":21.3,"Humidity":45.0}}'


@pytest.mark.parametrize(
    ("path", "document", "value"),
    [
        ("$.AM2301.Temperature", {"AM2301": {"Temperature": 21.3}}, 21.3),
        ("$.output", {"id": 0, "output": True}, True),
        ("$.list[1]", {"list": [5, 6]}, 6),
        ("$['PM2.5']", {"PM2.5": 12}, 12),
        ('$["a b"].c', {"a b": {"c": "x"}}, "x"),
        ("$", 7, 7),
        ("$.ENERGY.Power", {"ENERGY": {"Power": 0}}, 0),
    ],
)
def test_json_path_reads(path: str, document: object, value: object) -> None:
    assert JsonPath.parse(path).read(document) == value


@pytest.mark.parametrize(
    ("path", "document"),
    [
        ("$.AM2301.Temperature", {"DS18B20": {"Temperature": 20}}),
        ("$.list[2]", {"list": [5, 6]}),
        ("$.a.b", {"a": 3}),
        ("$[0]", {"0": 1}),
    ],
)
def test_json_path_that_does_not_match_says_so(path: str, document: object) -> None:
    with pytest.raises(PayloadError, match=r"the payload has no \$"):
        JsonPath.parse(path).read(document)


@pytest.mark.parametrize("path", ["state", "$.", "$..a", "$.a[x]", "$.a[*]", "$" + ".a" * 200])
def test_json_path_outside_the_subset_is_refused(path: str) -> None:
    with pytest.raises(ValueError):
        JsonPath.parse(path)


def test_payload_is_parsed_once_for_every_reader() -> None:
    view = PayloadView(TASMOTA_SENSOR)
    first = view.document
    assert view.document is first
    assert JsonPath.parse("$.AM2301.Humidity").read(view.document) == 45.0


def test_payload_that_is_not_json_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="not JSON"):
        _ = PayloadView(b"ON").document
    assert PayloadView(b"ON").text == "ON"


def test_value_map_reads_words_exactly_then_ignoring_case() -> None:
    values = ValueMap({"ON": True, "OFF": False})
    assert values.read("ON") is True
    assert values.read("off") is False
    contact = ValueMap({"true": 0, "false": 1})  # Zigbee2MQTT `contact: true` is closed
    assert contact.read(True) == 0
    assert contact.read(False) == 1


def test_value_map_miss_names_what_it_knows() -> None:
    with pytest.raises(PayloadError, match=r"'TOGGLE' is not in the value map \('ON', 'OFF'\)"):
        ValueMap({"ON": True, "OFF": False}).read("TOGGLE")


def test_value_map_writes_the_first_word_or_its_command_words() -> None:
    values = ValueMap({"ON": True, "on": True, "OFF": False})
    assert values.write(True) == "ON"
    assert values.write(False) == "OFF"
    shelly = ValueMap({}, {True: "on", False: "off"})
    assert shelly.write(True) == "on"
    with pytest.raises(PayloadError):
        ValueMap({"open": 1}).write(0)


def test_scale_and_offset_both_ways() -> None:
    brightness = Linear(scale=100 / 254)
    assert round(brightness.read(254)) == 100
    assert brightness.write(50, integral=True) == 127
    tenths = Linear(scale=0.1)
    assert tenths.read("215") == pytest.approx(21.5)
    assert tenths.write(21.5, integral=False) == 215
    fahrenheit = Linear(scale=5 / 9, offset=-160 / 9)
    assert fahrenheit.read(212) == pytest.approx(100)
    assert fahrenheit.write(100.0, integral=False) == 212


@pytest.mark.parametrize("raw", [True, "warm", "nan", None])
def test_scale_refuses_what_is_not_a_number(raw: object) -> None:
    with pytest.raises(PayloadError):
        Linear(scale=2).read(raw)


def test_command_template_puts_the_value_in() -> None:
    assert render_command('{"state": "{value}"}', "OFF") == '{"state": "OFF"}'
    assert render_command('{"brightness": {value}}', 127) == '{"brightness": 127}'
    assert render_command(None, True) == "true"
    assert render_command("TOGGLE", True) == "TOGGLE"


def test_device_words_are_json_like() -> None:
    assert [device_word(v) for v in (True, False, None, 1, 21.5, "ON")] == [
        "true",
        "false",
        "null",
        "1",
        "21.5",
        "ON",
    ]


def test_colour_round_trips() -> None:
    assert rgb_to_hs(255, 0, 0) == (0.0, 100.0)
    hue, saturation = xy_to_hs(*hs_to_xy(120, 50))
    assert hue == pytest.approx(120, abs=1)
    assert saturation == pytest.approx(50, abs=1.5)
    # D65 white has no saturation.
    assert xy_to_hs(0.3127, 0.329)[1] == pytest.approx(0, abs=0.5)
