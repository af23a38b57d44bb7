"""`mqtt-hk-bridge healthcheck` against the running bridge: what a container's HEALTHCHECK
runs (issue 14, item 1). The same check inside the image: tests/integration/test_container.py."""

from __future__ import annotations

import subprocess
import sys

from tests.support.bridge_process import REPO_ROOT, BridgeProcess
from tests.support.mosquitto import Mosquitto
from tests.support.wait import wait_for


def healthcheck(bridge: BridgeProcess) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "mqtt_hk_bridge", "healthcheck", "-c", str(bridge.config_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.returncode, done.stdout.strip()


async def test_healthy_while_connected_unhealthy_without_the_broker_and_when_stopped(
    bridge: BridgeProcess, mosquitto: Mosquitto
) -> None:
    # The bridge is up (HAP listening, MQTT connected): its first report says so.
    assert await wait_for(lambda: healthcheck(bridge) == (0, "healthy"), timeout=10)

    mosquitto.stop()
    code, reason = await wait_for(
        lambda: (result := healthcheck(bridge))[0] != 0 and result, timeout=10
    )
    assert (code, reason) == (1, "not connected to the MQTT broker")

    mosquitto.start()  # reconnect backoff is capped at 2 s in tests
    assert await wait_for(lambda: healthcheck(bridge) == (0, "healthy"), timeout=15)

    assert bridge.stop() == 0
    code, reason = healthcheck(bridge)
    assert code == 1 and "not running" in reason  # the report went with the bridge
