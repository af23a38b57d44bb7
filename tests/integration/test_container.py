"""The bridge's container image, built from the repository's Dockerfile and run for real
with Podman (issue 14, item 1): it talks to a Mosquitto on the host over host networking,
the Home app (aiohomekit) pairs with it over loopback, it stops cleanly on SIGTERM, its
/data outlives the container, and its HEALTHCHECK follows the bridge's real health.

Not tested here: the images from Docker Hub (python:3.12-slim, eclipse-mosquitto:2), which
cannot be pulled on our machines; the image is built on a Debian base made locally instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.accessories import aid_of, char_of
from tests.support.hap_client import HapClient
from tests.support.mosquitto import Mosquitto, MqttProbe
from tests.support.podman import BridgeContainer, Podman, run_tool
from tests.support.shipped_mosquitto import copy_shipped_dir, start_shipped_broker
from tests.support.wait import wait_for

from .test_exposer_devices import accessories_with

TEMPERATURE = "HomeKit/esp/TemperatureSensor/CurrentTemperature"


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    runner = Podman(tmp_path_factory.mktemp("podman"))
    runner.check_usable()
    runner.ensure_base_image()
    return runner


@pytest.fixture(scope="session")
def bridge_image(podman: Podman) -> str:
    """Built once per test session (Podman's layer cache keeps later builds short)."""
    return podman.build_image()


@pytest.fixture
def make_container(
    podman: Podman, bridge_image: str, tmp_path: Path
) -> Iterator[Callable[..., BridgeContainer]]:
    containers: list[BridgeContainer] = []

    def make(mqtt_port: int, **options: object) -> BridgeContainer:
        container = BridgeContainer(
            podman, bridge_image, tmp_path / f"container-{len(containers)}", mqtt_port, **options
        )
        containers.append(container)
        return container

    yield make
    for container in containers:
        container.remove()


def stored(container: BridgeContainer, text: str) -> bool:
    path = container.data_dir / "accessory-devices.json"
    return path.exists() and text in path.read_text()


async def test_image_serves_home_app_and_mqtt_and_stops_cleanly_on_sigterm(
    make_container: Callable[..., BridgeContainer], mosquitto: Mosquitto
) -> None:
    # Values reach disk only at the shutdown save: the periodic flush is an hour away.
    container = make_container(mosquitto.port, timing={"state_flush_interval": 3600})
    container.start()
    async with MqttProbe(mosquitto.host, mosquitto.port) as probe:
        await probe.subscribe("HomeKit/#")
        await probe.publish("HomeKit/TEST/Switch/On", "1")
        await probe.publish(TEMPERATURE, "20")
        home = await HapClient.pair(
            container.host, container.hap_port, container.device_id, container.setup_code
        )
        try:
            await accessories_with(home, "TEST")
            accessories = await accessories_with(home, "esp")
            esp, switch = aid_of(accessories, "esp"), aid_of(accessories, "TEST")
            temperature = char_of(accessories, esp, "8A", "11")["iid"]
            on = char_of(accessories, switch, "49", "25")["iid"]
            await home.subscribe([(esp, temperature)])
            await probe.publish(TEMPERATURE, "21.5")
            await home.wait_event(esp, temperature, 21.5)
            assert await home.put([(switch, on, False)]) == {(switch, on): 0}
            command = await probe.wait_message("HomeKit/TEST/Switch/On/set")
            assert command.payload == b"0"
        finally:
            await home.close()

        exit_code, seconds = container.stop(grace=5)
        assert exit_code == 0, container.logs()  # it ended itself; a SIGKILL would be 137
        assert seconds < 5
        await probe.wait_message("HomeKit/bridge/state", lambda m: m.payload == b"offline")
    async with MqttProbe(mosquitto.host, mosquitto.port) as late:
        await late.subscribe("HomeKit/bridge/state")
        retained = await late.wait_message("HomeKit/bridge/state")
        assert (retained.payload, retained.retain) == (b"offline", True)
    assert stored(container, "21.5")  # saved on the way out


async def test_data_volume_keeps_the_pairing_for_a_new_container(
    make_container: Callable[..., BridgeContainer], mosquitto: Mosquitto
) -> None:
    container = make_container(mosquitto.port)
    container.start()
    async with MqttProbe(mosquitto.host, mosquitto.port) as probe:
        await probe.publish("HomeKit/TEST/Switch/On", "1", retain=True)
    home = await HapClient.pair(
        container.host, container.hap_port, container.device_id, container.setup_code
    )
    try:
        before = aid_of(await accessories_with(home, "TEST"), "TEST")
        pairing = home.pairing_data
    finally:
        await home.close()
    device_id = container.device_id
    assert container.stop()[0] == 0

    container.start()  # a new container (as after an image update) on the same /data
    assert container.device_id == device_id
    home = HapClient.from_pairing_data(pairing)  # pair-verify with the keys from before
    try:
        assert aid_of(await accessories_with(home, "TEST"), "TEST") == before
    finally:
        await home.close()


async def test_healthcheck_follows_the_broker(
    make_container: Callable[..., BridgeContainer], mosquitto: Mosquitto
) -> None:
    container = make_container(mosquitto.port)
    container.start()  # returns once the HEALTHCHECK passes
    mosquitto.stop()
    await wait_for(lambda: container.healthcheck() == 1, timeout=15, interval=0.2)
    assert container.health_output() == "not connected to the MQTT broker"
    mosquitto.start()
    await wait_for(lambda: container.healthcheck() == 0, timeout=15, interval=0.2)


async def test_logins_made_in_the_image_work_with_the_shipped_mosquitto(
    podman: Podman,
    bridge_image: str,
    make_container: Callable[..., BridgeContainer],
    make_mosquitto: Callable[..., Mosquitto],
    tmp_path: Path,
) -> None:
    """The compose set-up without compose: logins from `mqtt-user add` run in the image
    (as the README shows), the shipped Mosquitto config, the bridge's login from the
    environment."""
    config_dir = copy_shipped_dir(tmp_path / "mosquitto-config")
    mounts = {config_dir: "/mosquitto/config"}
    passwd = "/mosquitto/config/passwd"
    bridge_password = run_tool(
        podman, bridge_image, "mqtt-user", "add", "--bridge", "--password-file", passwd,
        mounts=mounts,
    ).strip()  # fmt: skip
    esp_password = run_tool(
        podman, bridge_image, "mqtt-user", "add", "esp", "--password-file", passwd, mounts=mounts
    ).strip()
    broker = start_shipped_broker(make_mosquitto, config_dir)
    container = make_container(
        broker.port,
        environment={
            "MQTT_HK_BRIDGE_MQTT_USERNAME": "mqtt-hk-bridge",
            "MQTT_HK_BRIDGE_MQTT_PASSWORD": bridge_password,
        },
    )
    container.start()  # healthy: logged in to the broker
    async with (
        broker.probe(username="mqtt-hk-bridge", password=bridge_password) as observer,
        broker.probe(username="esp", password=esp_password) as esp,
    ):
        await observer.subscribe("HomeKit/bridge/devices")
        await esp.publish(TEMPERATURE, "19.5")
        devices = await observer.wait_message(
            "HomeKit/bridge/devices", lambda m: b'"esp"' in m.payload
        )
        [entry] = [d for d in json.loads(devices.payload) if d["id"] == "esp"]
        assert entry["available"] is True


def test_image_carries_its_healthcheck_and_runs_as_its_own_user(
    podman: Podman, bridge_image: str
) -> None:
    """An OCI-format build would drop HEALTHCHECK silently; the image must keep it."""
    image = json.loads(podman.run_podman("image", "inspect", bridge_image).stdout)[0]
    assert image["Healthcheck"]["Test"] == [
        "CMD",
        "mqtt-hk-bridge",
        "-c",
        "/config/bridge.yaml",
        "healthcheck",
    ]
    assert image["Config"]["User"] == "bridge"
    assert "/data" in image["Config"]["Volumes"]
