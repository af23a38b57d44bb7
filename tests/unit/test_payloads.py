"""Payloads as a device sends them and as the bridge publishes them (docs/topics.md)."""

from __future__ import annotations

import base64
import math
import time

import pytest

from mqtt_hk_bridge import const
from mqtt_hk_bridge.errors import PayloadError
from mqtt_hk_bridge.homekit.catalog import CharInfo, get_catalog
from mqtt_hk_bridge.mqtt.payloads import coerce, decode, encode, payload_text


def char(name: str) -> CharInfo:
    return get_catalog().characteristics[name]


ON = char("On")
TEMPERATURE = char("CurrentTemperature")  # float, -273.1..1000, step 0.1
BRIGHTNESS = char("Brightness")  # int, 0..100, step 1
BATTERY = char("BatteryLevel")  # uint8, 0..100
CONTACT = char("ContactSensorState")  # uint8, valid 0, 1
BUTTON = char("ProgrammableSwitchEvent")  # uint8, valid 0, 1, 2
HUMIDITY = char("CurrentRelativeHumidity")  # float, 0..100, step 1
NAME = char("Name")  # string, maxLen 64
TLV = char("SetupEndpoints")  # tlv8


# --- booleans ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [b"1", b"true", b"TRUE", b"True", b"on", b"ON", b"On", b'"on"', b'"1"', b"true\n"],
)
def test_true_words(payload: bytes) -> None:
    assert decode(payload, ON) is True


@pytest.mark.parametrize(
    "payload",
    [b"0", b"false", b"FALSE", b"fAlSe", b"off", b"OFF", b"Off", b'"off"', b'"0"', b" 0 "],
)
def test_false_words(payload: bytes) -> None:
    assert decode(payload, ON) is False


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(b"true", True), (b"false", False), (b'{"value": true}', True), (b'{"value": 0}', False)],
)
def test_booleans_as_json(payload: bytes, expected: bool) -> None:
    assert decode(payload, ON) is expected


@pytest.mark.parametrize("payload", [b"2", b"-1", b"maybe", b"onn", b"[1]", b"null", b"1.5"])
def test_not_a_boolean(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode(payload, ON)


# --- numbers and accepted JSON forms -----------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        b"21.5",
        b'"21.5"',
        b'{"value": 21.5}',
        b'{"value":"21.5"}',
        b"  21.5  ",
        b"\t21.5\r\n",
        b"\xef\xbb\xbf21.5",  # UTF-8 BOM, as some Windows tools write
    ],
)
def test_accepted_numeric_forms(payload: bytes) -> None:
    value = decode(payload, TEMPERATURE)
    assert value == 21.5
    assert isinstance(value, float)


def test_trimmed_and_bom_22() -> None:
    assert decode(b"  22  ", TEMPERATURE) == 22.0
    assert decode("\ufeff22".encode(), TEMPERATURE) == 22.0


@pytest.mark.parametrize(
    "payload",
    [
        b'{"CurrentTemperature": 21.5}',  # only {"value": x} is a wrapper
        b'{"value": 21.5, "unit": "C"}',
        b"{}",
        b"[21.5]",
        b"[]",
        b'{"value": [21.5]}',
        b'{"value": {"value": 21.5}}',
        b'{"value": null}',
        b"null",
        b"21.5 C",
        b"0x15",
        b"twenty",
    ],
)
def test_rejected_numeric_forms(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode(payload, TEMPERATURE)


def test_duplicate_keys_take_the_last_value() -> None:
    # Documented JSON behaviour (RFC 8259 leaves it open; Python keeps the last).
    assert decode(b'{"value": 21.5, "value": 22}', TEMPERATURE) == 22.0


# --- bytes that are not text -------------------------------------------------------------
@pytest.mark.parametrize("payload", [b"\xff\xfe", b"\xff", b"2\xe2\x82", b"\xc0\xaf"])
def test_non_utf8_is_refused(payload: bytes) -> None:
    with pytest.raises(PayloadError, match="UTF-8"):
        decode(payload, TEMPERATURE)


@pytest.mark.parametrize("payload", [b"\x00", b"22\x00", b"\x0022", b"on\x00"])
def test_nul_is_refused(payload: bytes) -> None:
    with pytest.raises(PayloadError, match="NUL"):
        decode(payload, TEMPERATURE if payload[0:1] != b"o" else ON)


@pytest.mark.parametrize("payload", [b"", b"   ", b"\xef\xbb\xbf", b"\n"])
def test_empty_payload_is_never_a_value(payload: bytes) -> None:
    # An empty retained payload means "cleared", never 0 or False.
    for info in (TEMPERATURE, ON, BRIGHTNESS, NAME):
        with pytest.raises(PayloadError):
            decode(payload, info)


def test_payload_text_trims_and_strips_bom() -> None:
    assert payload_text(b"\xef\xbb\xbf  online \n") == "online"
    assert payload_text(b"") == ""


# --- caps before parsing -----------------------------------------------------------------
def test_one_megabyte_payload_is_refused_fast() -> None:
    payload = b"1" * (1 << 20)
    start = time.perf_counter()
    with pytest.raises(PayloadError, match="4096"):
        decode(payload, TEMPERATURE)
    assert time.perf_counter() - start < 0.05


def test_payload_at_the_cap_is_parsed_and_one_byte_over_is_not() -> None:
    at_cap = b" " * (const.MAX_PAYLOAD_BYTES - 2) + b"21"
    assert decode(at_cap, TEMPERATURE) == 21.0
    with pytest.raises(PayloadError):
        decode(b" " + at_cap, TEMPERATURE)


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"value":' * 10_000 + b"1" + b"}" * 10_000,
        b"[" * 2_000 + b"]" * 2_000,  # under the size cap, far past recursion limits
        b'{"value":' * 400 + b"1" + b"}" * 400,
        b"[" * 33 + b"1" + b"]" * 33,
        b"[" * 2_000,  # unbalanced
    ],
    ids=["10000 lists", "10000 objects", "2000 lists", "400 objects", "33 lists", "unbalanced"],
)
def test_nesting_bombs_are_payload_errors_fast(payload: bytes) -> None:
    start = time.perf_counter()
    with pytest.raises(PayloadError):
        decode(payload, TEMPERATURE)
    assert time.perf_counter() - start < 0.05


def test_nesting_bomb_never_raises_recursion_error_for_string_characteristics() -> None:
    # A string characteristic takes plain text too, so the depth check must still hold.
    with pytest.raises(PayloadError):
        decode(b"[" * 2_000 + b"]" * 2_000, NAME)


# --- numeric edge cases ------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        b"NaN",
        b"nan",
        b"-nan",
        b"inf",
        b"-inf",
        b"Infinity",
        b"-Infinity",
        b"1e309",
        b"-1e309",
        b'{"value": NaN}',
        b'{"value": Infinity}',
        b'{"value": 1e999}',
        b'"NaN"',
        b"9" * 400,
        b'{"value": ' + b"9" * 400 + b"}",  # a JSON integer too big for a float
    ],
)
@pytest.mark.parametrize("info", [TEMPERATURE, BRIGHTNESS, BATTERY, CONTACT], ids=lambda i: i.name)
def test_non_finite_numbers_are_refused(payload: bytes, info: CharInfo) -> None:
    with pytest.raises(PayloadError):
        decode(payload, info)


def test_huge_finite_number_is_out_of_range() -> None:
    with pytest.raises(PayloadError, match="range"):
        decode(b"1e308", TEMPERATURE)


@pytest.mark.parametrize("info", [TEMPERATURE, BRIGHTNESS, BATTERY, CONTACT], ids=lambda i: i.name)
@pytest.mark.parametrize("payload", [b"true", b"false", b'{"value": true}'])
def test_bool_for_a_numeric_characteristic_is_refused(payload: bytes, info: CharInfo) -> None:
    with pytest.raises(PayloadError, match="boolean"):
        decode(payload, info)


@pytest.mark.parametrize(
    ("info", "payload"),
    [
        (BRIGHTNESS, b"150"),
        (BRIGHTNESS, b"-5"),
        (BRIGHTNESS, b"101"),
        (BATTERY, b"150"),
        (BATTERY, b"-5"),
        (BATTERY, b"101"),
        (TEMPERATURE, b"-273.2"),
        (TEMPERATURE, b"1000.1"),
        (HUMIDITY, b"-1"),
    ],
)
def test_out_of_range_is_refused_not_clamped(info: CharInfo, payload: bytes) -> None:
    with pytest.raises(PayloadError, match="range"):
        decode(payload, info)


@pytest.mark.parametrize(
    ("info", "payload", "expected"),
    [
        (BRIGHTNESS, b"0", 0),
        (BRIGHTNESS, b"100", 100),
        (BATTERY, b"0", 0),
        (BATTERY, b"100", 100),
        (TEMPERATURE, b"-273.1", -273.1),
        (TEMPERATURE, b"1000", 1000.0),
    ],
)
def test_range_limits_are_inclusive(info: CharInfo, payload: bytes, expected: float) -> None:
    assert decode(payload, info) == expected


def test_invalid_enum_value_is_refused() -> None:
    with pytest.raises(PayloadError, match="valid"):
        decode(b"2", CONTACT)
    for payload in (b"-1", b"0.5", b"1.5", b"closed"):
        with pytest.raises(PayloadError):
            decode(payload, CONTACT)


def test_valid_enum_values() -> None:
    assert decode(b"0", CONTACT) == 0
    assert decode(b"1", CONTACT) == 1
    assert decode(b"1.0", CONTACT) == 1
    assert isinstance(decode(b"1.0", CONTACT), int)
    assert [decode(str(v).encode(), BUTTON) for v in (0, 1, 2)] == [0, 1, 2]


def test_float_rounds_to_min_step() -> None:
    # CurrentTemperature's step is 0.1: a DS18B20's 20.125 shows as 20.1 in the Home app.
    value = decode(b"20.125", TEMPERATURE)
    assert value == 20.1
    assert decode(b"20.17", TEMPERATURE) == 20.2
    assert decode(b"-5.04", TEMPERATURE) == -5.0
    # No float noise such as 20.100000000000001 leaks through.
    assert repr(decode(b"20.125", TEMPERATURE)) == "20.1"
    assert repr(decode(b"21.3", TEMPERATURE)) == "21.3"


def test_float_with_whole_step_rounds_to_whole_numbers() -> None:
    value = decode(b"58.4", HUMIDITY)
    assert value == 58.0
    assert isinstance(value, float)


@pytest.mark.parametrize(
    ("info", "payload", "expected"),
    [
        (BRIGHTNESS, b"50.7", 51),
        (BRIGHTNESS, b"50.2", 50),
        (BATTERY, b"50.7", 51),
        (BRIGHTNESS, b"1e2", 100),
        (BRIGHTNESS, b'"42"', 42),
    ],
)
def test_integer_formats_round(info: CharInfo, payload: bytes, expected: int) -> None:
    value = decode(payload, info)
    assert value == expected
    assert isinstance(value, int)
    assert not isinstance(value, bool)


def test_integer_format_without_min_max_uses_the_format_range() -> None:
    flags = char("AccessoryFlags")  # uint32, no min/max in HAP-python's table
    assert flags.min_value is None
    assert decode(b"4294967295", flags) == 2**32 - 1
    with pytest.raises(PayloadError):
        decode(b"4294967296", flags)
    with pytest.raises(PayloadError):
        decode(b"-1", flags)


# --- strings and tlv8 --------------------------------------------------------------------
def test_strings_are_taken_as_written() -> None:
    assert decode(b"Living room", NAME) == "Living room"
    assert decode(b'"Living room"', NAME) == "Living room"
    assert decode(b'{"value": "Kitchen"}', NAME) == "Kitchen"
    # Number-looking text stays text exactly: no float round trip.
    assert decode(b"12.50", NAME) == "12.50"
    assert decode("Küche ☕".encode(), NAME) == "Küche ☕"


def test_string_length_limit_counts_characters() -> None:
    assert decode(b"a" * 64, NAME) == "a" * 64
    assert decode("é".encode() * 64, NAME) == "é" * 64  # 128 bytes, 64 characters
    with pytest.raises(PayloadError, match="64"):
        decode(b"a" * 65, NAME)


def test_tlv8_takes_base64() -> None:
    text = base64.b64encode(b"\x01\x02\x03").decode()
    assert decode(text.encode(), TLV) == text
    for bad in (b"not base64!", b"AQI", b"@@@@"):
        with pytest.raises(PayloadError, match="base64"):
            decode(bad, TLV)


def test_coerce_checks_values_from_the_home_app_the_same_way() -> None:
    # The HAP write path uses coerce() on Python values rather than bytes.
    assert coerce(True, ON) is True
    assert coerce(1, ON) is True
    assert coerce(55, BRIGHTNESS) == 55
    for bad in (150, math.nan, math.inf, True, None, [1]):
        with pytest.raises(PayloadError):
            coerce(bad, BRIGHTNESS)


# --- what the bridge sends ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "1"),
        (False, "0"),
        (0, "0"),
        (42, "42"),
        (-7, "-7"),
        (2**40, "1099511627776"),
        (21.5, "21.5"),
        (20.0, "20"),
        (-0.0, "0"),
        (20.1, "20.1"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e-5, "0.00001"),
        (1.5e-7, "0.00000015"),
        (-2.5e-6, "-0.0000025"),
        (1e16, "10000000000000000"),
        (1e20, "100000000000000000000"),
        (1.5e16, "15000000000000000"),
        ("Living room", "Living room"),
        ("", '""'),
        (b"\x01\x02", "AQI="),
        (None, ""),
    ],
)
def test_encode(value: object, expected: str) -> None:
    assert encode(value) == expected


def test_encoded_floats_are_plain_decimals() -> None:
    # "numbers in plain decimal" (docs/topics.md): never an exponent, never nan/inf words for
    # finite values, and the text reads back as the same float.
    for value in (1e-4, 3.14159, 123456.789, 1e-10, 9.999e15, -0.001, 2.5e-300):
        text = encode(value)
        assert "e" not in text.lower(), text
        assert float(text) == value


def test_decoded_values_encode_back_to_the_same_text() -> None:
    for payload, info in ((b"20.1", TEMPERATURE), (b"55", BRIGHTNESS), (b"on", ON)):
        assert decode(encode(decode(payload, info)).encode(), info) == decode(payload, info)
    assert encode(decode(b"on", ON)) == "1"
    assert encode(decode(b"22", TEMPERATURE)) == "22"


@pytest.mark.parametrize(
    "text",
    ["", " padded ", '"quoted"', "[1]", "{x}", "true", "null", "\ufeffBOM", "plain", "Küche"],
)
def test_every_string_reads_back_as_itself(text: str) -> None:
    # An empty retained payload would delete the topic: "" must go out as something.
    payload = encode(text).encode()
    assert payload
    assert decode(payload, NAME) == text
