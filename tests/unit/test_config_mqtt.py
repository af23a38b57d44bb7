"""The `mqtt:` section's transport, TLS and secret-file keys (docs/mqtt-tls.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqtt_hk_bridge.config import MqttConfig, TlsConfig, load, parse
from mqtt_hk_bridge.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_plain_tcp_without_tls() -> None:
    mqtt = parse({}, environ={}).mqtt
    assert (mqtt.transport, mqtt.path, mqtt.tls) == ("tcp", "/mqtt", None)


def test_websockets_with_a_path() -> None:
    mqtt = parse({"mqtt": {"transport": "websockets", "path": "/ws/mqtt"}}, environ={}).mqtt
    assert (mqtt.transport, mqtt.path) == ("websockets", "/ws/mqtt")


def test_websockets_path_defaults_to_slash_mqtt() -> None:
    assert parse({"mqtt": {"transport": "websockets"}}, environ={}).mqtt.path == "/mqtt"


def test_a_path_without_websockets_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.path: only used with `transport: websockets`"):
        parse({"mqtt": {"path": "/mqtt"}}, environ={})


@pytest.mark.parametrize("path", ["mqtt", "/a b", "/mqtt?x=1", ""])
def test_a_path_must_be_a_url_path(path: str) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.path: must be a URL path"):
        parse({"mqtt": {"transport": "websockets", "path": path}}, environ={})


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.transport"):
        parse({"mqtt": {"transport": "quic"}}, environ={})


def test_tls_insecure_is_off_unless_asked() -> None:
    assert parse({"mqtt": {"tls": {"ca": "/ca.pem"}}}, environ={}).mqtt.tls == TlsConfig(
        ca="/ca.pem"
    )
    tls = parse({"mqtt": {"tls": {"insecure": True}}}, environ={}).mqtt.tls
    assert tls == TlsConfig(insecure=True)


def test_empty_tls_section_means_tls_with_the_system_cas(tmp_path: Path) -> None:
    config = load(write(tmp_path, "mqtt:\n  port: 8883\n  tls:\n"), environ={})
    assert config.mqtt.tls == TlsConfig()


def test_a_key_needs_its_certificate() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.tls\.key: needs mqtt\.tls\.cert"):
        parse({"mqtt": {"tls": {"key": "/c.key"}}}, environ={})


def test_relative_files_are_next_to_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "mqtt_password").write_text("pw-from-file\n")
    text = """\
mqtt:
  password_file: secrets/mqtt_password
  tls: {ca: certs/ca.crt, cert: certs/bridge.crt, key: /etc/bridge.key}
"""
    mqtt = load(write(tmp_path, text), environ={}).mqtt
    assert mqtt == MqttConfig(
        password="pw-from-file",
        password_file=str(tmp_path / "secrets" / "mqtt_password"),
        tls=TlsConfig(
            ca=str(tmp_path / "certs" / "ca.crt"),
            cert=str(tmp_path / "certs" / "bridge.crt"),
            key="/etc/bridge.key",
        ),
    )


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mqtt_password").write_text("\n")
    with pytest.raises(ConfigError, match=r"mqtt\.password_file: .*mqtt_password is empty"):
        load(write(tmp_path, "mqtt: {password_file: mqtt_password}\n"), environ={})


def test_the_environment_wins_over_the_password_file(tmp_path: Path) -> None:
    (tmp_path / "mqtt_password").write_text("from-file\n")
    path = write(tmp_path, "mqtt: {password_file: mqtt_password}\n")
    config = load(path, environ={"MQTT_HK_BRIDGE_MQTT_PASSWORD": "from-env"})
    assert config.mqtt.password == "from-env"
