"""No secret in the logs, even at DEBUG: the setup code, HAP keys
and MQTT passwords stay out of what log collectors keep."""

from __future__ import annotations

import json

from tests.support.accessories import aid_of, char_of
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import MqttProbe

from .test_exposer_devices import accessories_with


async def test_debug_logs_hold_no_setup_code_keys_or_password(
    make_bridge, probe: MqttProbe
) -> None:
    password = "s3cret-Pa55word"
    bridge: BridgeProcess = make_bridge(log_level="debug", mqtt={"password": password})
    await probe.publish("HomeKit/TEST/Switch/On", "1")
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        accessories = await accessories_with(home, "TEST")
        aid = aid_of(accessories, "TEST")
        iid = char_of(accessories, aid, "49", "25")["iid"]
        await home.subscribe([(aid, iid)])
        await home.put([(aid, iid, False)])
        await probe.wait_message("HomeKit/TEST/Switch/On/set")
        controller_key = home.pairing_data["iOSDeviceLTSK"]
    finally:
        await home.close()
    bridge.stop()

    logs = bridge.logs()
    assert "DEBUG" in logs  # the bridge did log at DEBUG
    state = json.loads((bridge.data_dir / "homekit-state.json").read_text())
    secrets = {
        "setup code": bridge.setup_code,
        "setup code digits": bridge.setup_code.replace("-", ""),
        "accessory private key": state["private_key"],
        "controller private key": controller_key,
        "MQTT password": password,
    }
    for what, secret in secrets.items():
        assert secret.lower() not in logs.lower(), f"{what} found in the logs"
    assert "Authorization:" not in logs
    # The person at the terminal is shown the code while the bridge is unpaired.
    assert bridge.setup_code in bridge.terminal()
