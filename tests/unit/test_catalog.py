"""Service and characteristic names as a device author writes them in topics."""

from __future__ import annotations

import pytest

from mqtt_hk_bridge.errors import CatalogError
from mqtt_hk_bridge.homekit.catalog import (
    APPLE_UUID_SUFFIX,
    Catalog,
    get_catalog,
    normalize_uuid,
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return get_catalog()


def test_catalog_is_read_once(catalog: Catalog) -> None:
    assert get_catalog() is catalog


def test_exact_service_lookup(catalog: Catalog) -> None:
    sensor = catalog.service("TemperatureSensor")
    assert sensor.name == "TemperatureSensor"
    assert sensor.uuid == "0000008A" + APPLE_UUID_SUFFIX
    assert "CurrentTemperature" in sensor.required


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("temperaturesensor", "TemperatureSensor"),
        ("TEMPERATURESENSOR", "TemperatureSensor"),
        ("lightbulb", "Lightbulb"),
        ("LightBulb", "Lightbulb"),
        ("switch", "Switch"),
        ("accessoryinformation", "AccessoryInformation"),
    ],
)
def test_service_lookup_ignores_case(catalog: Catalog, written: str, canonical: str) -> None:
    assert catalog.service(written).name == canonical


@pytest.mark.parametrize(
    ("service", "written", "canonical"),
    [
        ("TemperatureSensor", "CurrentTemperature", "CurrentTemperature"),
        ("TemperatureSensor", "currenttemperature", "CurrentTemperature"),
        ("HumiditySensor", "CURRENTRELATIVEHUMIDITY", "CurrentRelativeHumidity"),
        ("Lightbulb", "on", "On"),
        ("Lightbulb", "brightness", "Brightness"),
        ("AccessoryInformation", "serialnumber", "SerialNumber"),
    ],
)
def test_characteristic_lookup_exact_and_ignoring_case(
    catalog: Catalog, service: str, written: str, canonical: str
) -> None:
    info = catalog.characteristic(catalog.service(service), written)
    assert info.name == canonical


@pytest.mark.parametrize(
    "name",
    [
        "Thermometer",
        "",
        "Temperature Sensor",
        "TemperatureSensor ",
        "Switch/2",
        # Unicode look-alikes must not pass for the real name.
        "Swit\u0441h",  # Cyrillic es
        "\u017fwitch",  # long s, which casefold() turns into "s"
        "Loc\u212amechanism",  # Kelvin sign, which casefold() turns into "k"
        "\uff33witch",  # fullwidth S
    ],
)
def test_unknown_service_is_a_catalog_error(catalog: Catalog, name: str) -> None:
    with pytest.raises(CatalogError, match="unknown HomeKit service"):
        catalog.service(name)


@pytest.mark.parametrize(
    "name", ["Temperature", "currenttemp", "CurrentTemperatur\u0435", "\u212aelvin", ""]
)
def test_unknown_characteristic_is_a_catalog_error(catalog: Catalog, name: str) -> None:
    with pytest.raises(CatalogError, match="unknown HomeKit characteristic"):
        catalog.characteristic(catalog.service("TemperatureSensor"), name)


def test_characteristic_not_allowed_on_the_service(catalog: Catalog) -> None:
    sensor = catalog.service("TemperatureSensor")
    with pytest.raises(CatalogError) as caught:
        catalog.characteristic(sensor, "Brightness")
    message = str(caught.value)
    # Says what is wrong and what the service does take.
    assert "TemperatureSensor has no characteristic Brightness" in message
    assert "CurrentTemperature" in message


def test_characteristic_not_allowed_even_when_written_in_another_case(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="has no characteristic On"):
        catalog.characteristic(catalog.service("TemperatureSensor"), "on")


def test_optional_characteristics_are_allowed(catalog: Catalog) -> None:
    bulb = catalog.service("Lightbulb")
    assert bulb.allows("Brightness")
    assert bulb.allows("On")
    assert not bulb.allows("CurrentTemperature")
    assert catalog.characteristic(bulb, "Name").name == "Name"


def test_a_lightbulb_may_show_colour_temperature(catalog: Catalog) -> None:
    # HAP's Lightbulb has it; HAP-python's table leaves it out (SPEC_OPTIONAL adds it).
    bulb = catalog.service("Lightbulb")
    assert catalog.characteristic(bulb, "ColorTemperature").name == "ColorTemperature"
    assert bulb.optional.count("ColorTemperature") == 1


def test_error_for_a_huge_name_stays_short(catalog: Catalog) -> None:
    # A 65,535-character topic level must not become a 65 kB log line.
    huge = "X" * 65_000
    for lookup in (
        lambda: catalog.service(huge),
        lambda: catalog.characteristic(catalog.service("Switch"), huge),
    ):
        with pytest.raises(CatalogError) as caught:
            lookup()
        assert len(str(caught.value)) < 200


def test_characteristic_details_come_from_hap_python(catalog: Catalog) -> None:
    temperature = catalog.characteristics["CurrentTemperature"]
    assert temperature.format == "float"
    assert (temperature.min_value, temperature.max_value, temperature.min_step) == (
        -273.1,
        1000,
        0.1,
    )
    assert temperature.readable and temperature.notifies and not temperature.writable
    brightness = catalog.characteristics["Brightness"]
    assert brightness.format == "int"
    assert brightness.writable
    contact = catalog.characteristics["ContactSensorState"]
    assert contact.valid_values == (0, 1)
    assert catalog.characteristics["Name"].max_len == 64


@pytest.mark.parametrize(
    "written",
    [
        "43",
        "0043",
        "00000043",
        "00000043-0000-1000-8000-0026BB765291",
        "00000043-0000-1000-8000-0026bb765291",
    ],
)
def test_service_by_uuid_short_and_long_forms(catalog: Catalog, written: str) -> None:
    found = catalog.service_by_uuid(written)
    assert found is not None
    assert found.name == "Lightbulb"


@pytest.mark.parametrize("written", ["25", "00000025", "00000025-0000-1000-8000-0026bb765291"])
def test_characteristic_by_uuid(catalog: Catalog, written: str) -> None:
    found = catalog.characteristic_by_uuid(written)
    assert found is not None
    assert found.name == "On"


def test_lowercase_short_uuid(catalog: Catalog) -> None:
    found = catalog.characteristic_by_uuid("ce")
    assert found is not None
    assert found.name == "ColorTemperature"


def test_unknown_uuids_are_none(catalog: Catalog) -> None:
    assert catalog.service_by_uuid("FFFFFF") is None
    assert catalog.characteristic_by_uuid("12345678-1234-1234-1234-123456789ABC") is None
    # A vendor type in Apple's base range that HAP-python does not know.
    assert catalog.characteristic_by_uuid("0000FF01-0000-1000-8000-0026BB765291") is None


def test_normalize_uuid() -> None:
    assert normalize_uuid("3e") == "0000003E-0000-1000-8000-0026BB765291"
    assert normalize_uuid("0000003E") == "0000003E-0000-1000-8000-0026BB765291"
    vendor = "e863f10a-079e-48ff-8f27-9c2605a29f52"
    assert normalize_uuid(vendor) == vendor.upper()
    assert normalize_uuid("E863F10A079E48FF8F279C2605A29F52") == vendor.upper()
