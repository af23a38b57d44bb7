"""Recorded device payloads (tests/fixtures, see its README.md), played into a broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.mosquitto import MqttProbe

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool


@dataclass(frozen=True)
class Recording:
    name: str
    messages: tuple[Message, ...]
    #: A mapped device's `bridge.yaml` entries (`devices:`), for mapped recordings.
    devices: dict[str, Any]

    def configs(self) -> list[Message]:
        return [m for m in self.messages if m.topic.endswith("/config")]

    def states(self) -> list[Message]:
        return [m for m in self.messages if not m.topic.endswith("/config")]

    async def play(self, probe: MqttProbe, only: Callable[[Message], bool] | None = None) -> None:
        for message in self.messages:
            if only is None or only(message):
                await probe.publish(message.topic, message.payload, retain=message.retain)


def payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def load(name: str) -> Recording:
    """`discovery/z2m_bulb` or `mapped/tasmota_th` (without .json)."""
    raw = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    messages = tuple(
        Message(item["topic"], payload_bytes(item["payload"]), bool(item["retain"]))
        for item in raw["messages"]
    )
    return Recording(name, messages, raw.get("devices", {}))
