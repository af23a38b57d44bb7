"""The request bodies: one schema per action, strict about types, naming the field at
fault; docs/api.md documents exactly these actions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mqtt_hk_bridge.api import BridgeApi
from mqtt_hk_bridge.config import MqttConfig
from mqtt_hk_bridge.mqtt.link import MqttLink
from mqtt_hk_bridge.request_schemas import SCHEMAS, RequestInvalid, validate

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_docs_list_every_action_and_no_other() -> None:
    rows = re.findall(r"^\| `([a-z/_-]+)` \|", DOCS.read_text(), flags=re.MULTILINE)
    assert sorted(rows) == sorted(SCHEMAS)


def test_the_transaction_is_not_the_handlers() -> None:
    assert validate(
        "pair", {"device_id": "x", "setup_code": "1", "alias": "a", "transaction": 3}
    ) == {
        "device_id": "x",
        "setup_code": "1",
        "alias": "a",
    }
    assert validate("info", {"transaction": {"any": ["json"]}}) == {}


@pytest.mark.parametrize(
    ("action", "body", "field", "message"),
    [
        ("discover", {"timeout": True}, "timeout", "must be a number of seconds"),
        ("discover", {"timeout": None}, "timeout", "must be a number of seconds"),
        ("pair", {"setup_code": "1", "alias": "a"}, "device_id", "missing"),
        ("pair", {"device_id": "  ", "setup_code": "1", "alias": "a"}, "device_id", "non-empty"),
        ("unpair", {"alias": "a", "force": 0}, "force", "must be true or false"),
        ("device/options", {"id": "x", "reset": ["name"]}, "reset", "list of option names"),
        ("device/rename", {"id": "x", "name": "ok", "x" * 500: 1}, "x" * 64, "unknown field"),
    ],
)
def test_refusals_name_the_field(
    action: str, body: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(RequestInvalid) as caught:
        validate(action, body)
    assert caught.value.field == field
    assert str(caught.value) == f"field {field!r}: {caught.value.args[0].split(': ', 1)[1]}"
    assert message in str(caught.value)


def test_values_come_out_clean() -> None:
    body = validate("device/options", {"id": " esp ", "expire_after": 60, "reset": []})
    assert body == {"id": "esp", "expire_after": 60.0, "reset": []}
    assert validate("device/options", {"id": "esp", "expire_after": None})["expire_after"] is None


def test_an_action_without_a_schema_cannot_be_registered() -> None:
    link = MqttLink(MqttConfig(), subscriptions=[], will_topic="t", on_message=lambda m: None)
    api = BridgeApi(link, "HomeKit")

    async def handler(body: dict[str, Any]) -> None:
        return None

    with pytest.raises(ValueError, match="no schema"):
        api.register("device/frobnicate", handler)
