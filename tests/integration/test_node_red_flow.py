"""examples/node-red/flow.json, run by a real Node-RED against a real bridge, Mosquitto and
HomeKit accessory (an iDevices switch, recorded): it pairs the accessory through
`bridge/request/pair`, lists the devices from `bridge/devices`, and toggles the switch.

The test only does what a person in the editor would: set the two inject nodes (the
accessory to pair, the switch's topic), press them, and look at what the flow shows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.accessory_process import AccessoryProcess
from tests.support.bridge_process import REPO_ROOT, BridgeProcess
from tests.support.fixtures import ACCESSORY_DATABASES
from tests.support.mosquitto import Mosquitto, MqttProbe
from tests.support.node_red import NodeRed
from tests.support.wait import wait_for

FLOW = REPO_ROOT / "examples" / "node-red" / "flow.json"
TAB = "hk-tab"
SWITCH = "HomeKit/switch/Switch/On"
FAST_CONTROLLER = {"reconnect_min": 0.2, "reconnect_max": 1.0, "poll_interval": 0}


def flow_for(mosquitto: Mosquitto, accessory: AccessoryProcess) -> list[dict[str, Any]]:
    """The shipped flow with what a user edits: the broker, the accessory and the switch."""
    flow = json.loads(FLOW.read_text())
    nodes = {node["id"]: node for node in flow}
    nodes["hk-broker"]["broker"] = mosquitto.host
    nodes["hk-broker"]["port"] = str(mosquitto.port)
    nodes["hk-pair"]["payload"] = json.dumps(
        {"device_id": accessory.device_id, "setup_code": accessory.pin, "alias": "switch"}
    )
    nodes["hk-toggle"]["payload"] = SWITCH
    return flow


async def test_the_example_flow_pairs_lists_and_toggles(
    make_bridge: Callable[..., BridgeProcess],
    mosquitto: Mosquitto,
    probe: MqttProbe,
    tmp_path: Path,
) -> None:
    make_bridge(controller=FAST_CONTROLLER)
    async with (
        AccessoryProcess(tmp_path, database=ACCESSORY_DATABASES / "idevices_switch.json") as switch,
        NodeRed(tmp_path / "node-red", flow_for(mosquitto, switch)) as red,
    ):
        await wait_for(
            lambda: "Connected to broker" in red.log(), timeout=20, message="Node-RED on MQTT"
        )
        # 3. Pair: the flow sends the request with a transaction and keeps our answer.
        await red.inject("hk-pair")
        request = await probe.wait_message("HomeKit/bridge/request/pair", timeout=10)
        assert json.loads(request.payload)["transaction"].startswith("node-red-")
        responses = await wait_for(
            lambda: red.flow_context(TAB, "responses"), timeout=30, message="pair answered"
        )
        assert responses["pair"]["status"] == "ok", responses
        assert responses["pair"]["data"]["alias"] == "switch"
        assert (await switch.info())["paired"] is True

        # 1. Devices: the flow's list follows the retained catalogue.
        async def listed() -> Any:
            devices = await red.flow_context(TAB, "devices")
            return devices if devices and "switch" in devices else None

        assert "switch" in await wait_for(listed, timeout=20, message="switch in the list")

        # 2. Toggle: the flow flips the state it saw, on the switch's /set topic.
        async def state_seen() -> Any:
            return (await red.flow_context(TAB, "switches") or {}).get(SWITCH)

        before = await wait_for(state_seen, timeout=20, message="the flow saw the switch")
        for _ in range(2):
            sent = len(probe.messages_on(f"{SWITCH}/set"))
            await red.inject("hk-toggle")
            await wait_for(
                lambda sent=sent: len(probe.messages_on(f"{SWITCH}/set")) > sent,
                message="the flow sent a command",
            )
            after = b"0" if before == "1" else b"1"
            command = probe.messages_on(f"{SWITCH}/set")[sent]
            assert command.payload == after and not command.retain
            await probe.wait_message(SWITCH, lambda m, after=after: m.payload == after)
            await wait_for(
                lambda after=after: _equals(state_seen(), after.decode()),
                message="the flow saw the new state",
            )
            before = after.decode()
        written = [w["value"] for w in await switch.writes()]
        assert len(written) == 2 and written[0] != written[1]  # one write per press


async def _equals(value, expected) -> bool:
    return await value == expected
