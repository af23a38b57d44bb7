"""docker-compose.yml, Dockerfile and deploy/ agree with each other and with the bridge
(issue 14, items 1-2). The image itself is built and run in
tests/integration/test_container.py; compose's own Mosquitto image (from Docker Hub) is not
run by our tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mqtt_hk_bridge.config import ENV_OVERRIDES, load, parse
from mqtt_hk_bridge.mqtt_users import BRIDGE_LOGIN

REPO = Path(__file__).resolve().parents[2]
MOSQUITTO_DIR = REPO / "deploy" / "mosquitto"


def dockerfile() -> dict[str, list[str]]:
    """Instruction -> its arguments, one entry per occurrence (continuations joined)."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    instructions: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            instructions.setdefault(word.upper(), []).append(rest.strip())
    return instructions


def exec_form(argument: str) -> list[str]:
    words = json.loads(argument)
    assert isinstance(words, list)
    return [str(word) for word in words]


@pytest.fixture
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """In-container path -> source, from `source:target[:mode]` entries."""
    targets = {}
    for entry in service["volumes"]:
        source, target = entry.split(":")[:2]
        targets[target] = source
    return targets


def test_services_are_mosquitto_and_the_bridge_built_here(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"mosquitto", "bridge"}
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert services["bridge"]["build"] == "."
    assert services["bridge"]["network_mode"] == "host"  # mDNS and the HAP port need it
    assert "ports" not in services["bridge"]  # meaningless with host networking


def test_bridge_volumes_are_the_images_state_and_config(compose: dict[str, Any]) -> None:
    bridge = volume_targets(compose["services"]["bridge"])
    instructions = dockerfile()
    [volume] = instructions["VOLUME"]
    entrypoint = exec_form(instructions["ENTRYPOINT"][0])
    config_path = entrypoint[entrypoint.index("-c") + 1]
    assert set(bridge) == {volume, config_path}
    assert bridge[volume] in compose["volumes"]  # a named volume: survives `down`/`up`
    mounted = REPO / bridge[config_path]
    assert mounted.is_file()
    config = load(mounted, environ={})  # the shipped file is a valid configuration
    assert config.homekit.name


def test_bridge_environment_is_config_the_bridge_reads(compose: dict[str, Any]) -> None:
    environment = compose["services"]["bridge"]["environment"]
    assert set(environment) <= set(ENV_OVERRIDES)
    env = {key: str(value) for key, value in environment.items() if "${" not in str(value)}
    config = parse({}, environ=env)
    assert config.mqtt.username == BRIDGE_LOGIN
    # Host networking reaches Mosquitto through the port it publishes on the host.
    published = compose["services"]["mosquitto"]["ports"][0].split(":")
    assert (config.mqtt.host, str(config.mqtt.port)) == ("127.0.0.1", published[0])
    assert "MQTT_HK_BRIDGE_MQTT_PASSWORD" in environment  # given, from .env, not written here


def test_image_defaults_match_compose_and_config(compose: dict[str, Any]) -> None:
    instructions = dockerfile()
    assert instructions["ARG"][0] == "BASE=python:3.12-slim"
    assert instructions["FROM"] == ["${BASE}"]
    env = " ".join(instructions["ENV"])
    [volume] = instructions["VOLUME"]
    assert f"MQTT_HK_BRIDGE_DATA_DIR={volume}" in env
    assert instructions["USER"] != ["root"]
    entrypoint = exec_form(instructions["ENTRYPOINT"][0])
    assert entrypoint[0] == "mqtt-hk-bridge" and entrypoint[-1] == "run"
    healthcheck = instructions["HEALTHCHECK"][0]
    command = exec_form(healthcheck.split("CMD", 1)[1])
    assert command == [*entrypoint[:-1], "healthcheck"]  # the same configuration as the bridge
    assert instructions["EXPOSE"] == [str(parse({}, environ={}).homekit.port)]
    install = " ".join(instructions["RUN"])
    assert "--require-hashes" in install and "requirements.lock" in install


def test_dockerignore_lets_no_state_or_secret_into_the_build() -> None:
    rules = [
        line for line in (REPO / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    assert rules[0] == "*"  # nothing unless listed
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = {
        word.rstrip("/")
        for line in dockerfile()["COPY"]
        for word in line.split()[:-1]
        if not word.startswith("--")
    }
    assert copied <= allowed
    assert not {"data", "bridge.yaml", "deploy/mosquitto", ".env"} & allowed


def test_mosquitto_config_is_mounted_where_it_points(compose: dict[str, Any]) -> None:
    mosquitto = volume_targets(compose["services"]["mosquitto"])
    mounted = {target for target, source in mosquitto.items() if source == "./deploy/mosquitto"}
    [config_dir] = mounted
    settings = dict(
        line.split(maxsplit=1)
        for line in (MOSQUITTO_DIR / "mosquitto.conf").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert settings["allow_anonymous"] == "false"
    assert settings["acl_file"] == f"{config_dir}/acl"
    assert settings["password_file"] == f"{config_dir}/passwd"  # written by mqtt-user add
    assert settings["listener"] == compose["services"]["mosquitto"]["ports"][0].split(":")[1]
    assert settings["persistence_location"].rstrip("/") in mosquitto


def test_acl_grants_the_bridges_login_everything_and_devices_their_subtree() -> None:
    lines = [
        line for line in (MOSQUITTO_DIR / "acl").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    assert "pattern readwrite HomeKit/%u/#" in lines
    user = lines.index(f"user {BRIDGE_LOGIN}")
    assert lines[user + 1] == "topic readwrite HomeKit/#"
