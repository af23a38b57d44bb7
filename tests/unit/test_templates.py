"""Home Assistant's templates in jinja2's sandbox: the forms firmwares publish, and what
happens with those that cannot be evaluated."""

from __future__ import annotations

import pytest

from mqtt_hk_bridge.errors import PayloadError
from mqtt_hk_bridge.exposer.templates import MAX_RANGE, Template
from mqtt_hk_bridge.exposer.transforms import PayloadView


def render(template: str, payload: bytes) -> str:
    return Template(template).render_payload(PayloadView(payload))


@pytest.mark.parametrize(
    ("template", "payload", "result"),
    [
        ('{{ value_json["temperature"] }}', b'{"temperature": 21.5}', "21.5"),
        ("{{ value_json.occupancy }}", b'{"occupancy": true}', "True"),
        ("{{value_json['AM2301']['Temperature']}}", b'{"AM2301": {"Temperature": 21.3}}', "21.3"),
        ("{{ value_json.POWER1 }}", b'{"POWER1": "ON"}', "ON"),
        ("{{ value | float * 10 }}", b"2.5", "25.0"),
        ("{{ value | int }}", b"21.7", "21"),
        ("{{ (value_json.t | float) | round(1) }}", b'{"t": "21.46"}', "21.5"),
        ("{{ value_json.missing | default('n/a') }}", b"{}", "n/a"),
        ("{{ 'yes' if value_json.x is defined else 'no' }}", b"{}", "no"),
        ("{% if value_json.White %}white{% else %}rgb{% endif %}", b'{"White": 0}', "rgb"),
        (
            "{{ value_json.Color.split(',')[0:3] | join(',') }}",
            b'{"Color": "255,0,0,0"}',
            "255,0,0",
        ),
        ("{{ iif(value_json.on, 'ON', 'OFF') }}", b'{"on": false}', "OFF"),
        ("{{ value_json.x | float(0) }}", b'{"x": "n/a"}', "0"),
        ("{{ value_json.a.b }}", b"{}", ""),  # missing: nothing, as in Home Assistant
        ("{{ value }}", b"not json", "not json"),
    ],
)
def test_common_forms(template: str, payload: bytes, result: str) -> None:
    assert render(template, payload) == result


def test_command_templates_get_their_variables() -> None:
    assert Template('{"state": "{{ value }}"}').render(value="ON") == '{"state": "ON"}'
    assert Template('{"position": {{ position }}}').render(position=40) == '{"position": 40}'


@pytest.mark.parametrize(
    "template",
    [
        "{{ value_json.x | float }}",  # not a number, no default: refused, not read as 0
        "{{ value_json.x | int }}",
        "{{ 1 / 0 }}",
        "{{ value_json.x.upper(1, 2, 3) }}",
    ],
)
def test_a_template_that_raises_is_a_payload_error(template: str) -> None:
    with pytest.raises(PayloadError, match="failed"):
        render(template, b'{"x": "warm"}')


def test_the_sandbox_keeps_python_out() -> None:
    assert render("{{ ().__class__.__bases__ }}", b"{}") == ""
    with pytest.raises(PayloadError):
        render("{{ value_json.update({'a': 1}) }}", b"{}")  # immutable sandbox
    with pytest.raises(PayloadError, match="range"):
        render(f"{{% for i in range({MAX_RANGE + 1}) %}}x{{% endfor %}}", b"{}")


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x' * 1000000000 }}",
        "{{ [1] * 100000 }}",
        "{{ 2 ** 99999999 }}",
        "{{ 10 ** 100 }}",
    ],
)
def test_what_would_take_the_bridges_memory_or_time_is_refused(template: str) -> None:
    with pytest.raises(PayloadError, match="failed"):
        render(template, b"{}")
    assert render("{{ 'ab' * 3 }}{{ 2 ** 10 }}{{ 21.5 * 2 }}", b"{}") == "ababab102443.0"


@pytest.mark.parametrize(
    "template",
    [
        "{{ value_json.x ",
        "{% if %}",
        "x" * 5000,
        "{% for a in range(9) %}{% for b in range(9) %}x{% endfor %}{% endfor %}",
    ],
)
def test_a_template_that_cannot_be_read_is_refused_at_once(template: str) -> None:
    with pytest.raises(ValueError):
        Template(template)
