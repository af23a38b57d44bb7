"""Talking to the bridge's request API the way a Node-RED flow does: publish on
`HomeKit/bridge/request/<action>`, wait for the answer carrying our transaction."""

from __future__ import annotations

import itertools
import json
from typing import Any

from tests.support.mosquitto import MqttProbe

_TRANSACTIONS = itertools.count(1)


async def request(
    probe: MqttProbe,
    action: str,
    body: dict[str, Any] | None = None,
    *,
    raw: bytes | str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """The response to one request. `raw` sends that payload instead of `body` (it then
    has no transaction: the next answer on the action's response topic is taken)."""
    topic = f"HomeKit/bridge/response/{action}"
    if raw is not None:
        seen = len(probe.messages_on(topic))
        await probe.publish(f"HomeKit/bridge/request/{action}", raw)
        await probe.wait_message(topic, lambda m: len(probe.messages_on(topic)) > seen)
        return dict(json.loads(probe.messages_on(topic)[seen].payload))
    transaction = f"t{next(_TRANSACTIONS)}"
    await probe.publish(
        f"HomeKit/bridge/request/{action}", json.dumps({**(body or {}), "transaction": transaction})
    )
    message = await probe.wait_message(
        topic, lambda m: json.loads(m.payload).get("transaction") == transaction, timeout=timeout
    )
    return dict(json.loads(message.payload))
