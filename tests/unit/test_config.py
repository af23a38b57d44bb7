"""bridge.yaml as a user writes it: keys are a public contract (issue 2, "Design points")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mqtt_hk_bridge import const
from mqtt_hk_bridge.config import (
    Config,
    DeviceOptions,
    HomeKitConfig,
    MqttConfig,
    Timing,
    TlsConfig,
    load,
    parse,
)
from mqtt_hk_bridge.controller.ha_settings import HomeAssistantSettings
from mqtt_hk_bridge.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

ISSUE_2_EXAMPLE = """\
base_topic: HomeKit
data_dir: ./data            # state files, QR code
mqtt: {host: localhost, port: 1883}
homekit: {name: MQTT Bridge, address: 0.0.0.0, port: 51826, setup_code: "482-91-735"}
zeroconf: {interfaces: [127.0.0.1]}   # default: all; tests keep mDNS on loopback
"""


def write(tmp_path: Path, text: str, name: str = "bridge.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_issue_2_example(tmp_path: Path) -> None:
    config = load(write(tmp_path, ISSUE_2_EXAMPLE), environ={})
    assert config.base_topic == "HomeKit"
    assert config.data_dir == tmp_path / "data"
    assert (config.mqtt.host, config.mqtt.port) == ("localhost", 1883)
    assert config.homekit == HomeKitConfig(
        name="MQTT Bridge", address="0.0.0.0", port=51826, setup_code="482-91-735"
    )
    assert config.zeroconf_interfaces == ("127.0.0.1",)


def test_full_key_set(tmp_path: Path) -> None:
    text = """\
base_topic: home
data_dir: /var/lib/bridge
log_level: DEBUG
mqtt:
  host: broker.lan
  port: 8883
  username: hk
  password: s3cret
  client_id: hk-bridge-1
  keepalive: 60
  protocol: "3.1.1"
  tls: {ca: /etc/ca.pem, cert: /etc/c.pem, key: /etc/c.key}
homekit:
  name: Attic
  address: 192.168.1.2
  advertised_address: 192.168.1.2
  port: 51900
  setup_code: 482-91-735
zeroconf: {interfaces: [192.168.1.2, 10.0.0.1]}
defaults: {command_topic: same, retain_commands: true, expire_after: 600}
devices:
  esp8266_12345678: {name: Living room sensor, expire_after: 900}
  TEST: {command_topic: set}
timing: {event_window: 0.2, config_debounce: 0.1, state_flush_interval: 0.5, reconnect_max: 5}
"""
    config = load(write(tmp_path, text), environ={})
    assert config.base_topic == "home"
    assert config.data_dir == Path("/var/lib/bridge")
    assert config.log_level == "debug"
    assert config.mqtt == MqttConfig(
        host="broker.lan",
        port=8883,
        username="hk",
        password="s3cret",
        client_id="hk-bridge-1",
        keepalive=60,
        protocol="3.1.1",
        tls=TlsConfig(ca="/etc/ca.pem", cert="/etc/c.pem", key="/etc/c.key"),
    )
    assert config.homekit.setup_code == "482-91-735"  # unquoted in YAML is still a string
    assert config.homekit.port == 51900
    assert config.zeroconf_interfaces == ("192.168.1.2", "10.0.0.1")
    assert config.defaults == DeviceOptions(
        command_topic="same", retain_commands=True, expire_after=600.0
    )
    # A device's own keys win; the rest come from `defaults`.
    assert config.device_options("esp8266_12345678") == DeviceOptions(
        name="Living room sensor",
        command_topic="same",
        retain_commands=True,
        expire_after=900.0,
        configured=frozenset({"name", "expire_after"}),
    )
    assert config.device_options("TEST") == DeviceOptions(
        command_topic="set",
        retain_commands=True,
        expire_after=600.0,
        configured=frozenset({"command_topic"}),
    )
    assert config.device_options("unlisted") == config.defaults
    assert config.timing == Timing(0.2, 0.1, 0.5, 5.0)


def test_defaults() -> None:
    config = parse({}, environ={})
    assert config == Config(
        base_topic="HomeKit",
        data_dir=Path("data"),
        log_level="info",
        mqtt=MqttConfig(),
        homekit=HomeKitConfig(),
        zeroconf_interfaces=None,
        defaults=DeviceOptions(),
        devices={},
        timing=Timing(),
    )
    assert config.mqtt.host == "localhost"
    assert config.mqtt.port == 1883
    assert config.mqtt.keepalive == 30
    assert config.mqtt.protocol == "auto"
    assert config.homekit.port == 51826
    assert config.homekit.setup_code is None  # random per install (setup_code.py)
    assert config.defaults.command_topic == "set"
    assert config.defaults.retain_commands is False
    assert config.defaults.expire_after is None
    assert config.timing.event_window == const.DEFAULT_EVENT_WINDOW == 1.0


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_means_defaults(tmp_path: Path, text: str) -> None:
    config = load(write(tmp_path, text), environ={})
    assert config.mqtt == MqttConfig()
    assert config.data_dir == tmp_path / "data"


def test_the_shipped_example_loads(tmp_path: Path) -> None:
    example = REPO / "bridge.yaml.example"
    copy = write(tmp_path, example.read_text(encoding="utf-8"))
    config = load(copy, environ={})
    assert config.base_topic == const.DEFAULT_BASE_TOPIC
    assert config.data_dir == tmp_path / "data"


# --- environment overrides for secrets ---------------------------------------------------
def test_environment_overrides_secrets() -> None:
    environ = {
        "MQTT_HK_BRIDGE_MQTT_USERNAME": "env-user",
        "MQTT_HK_BRIDGE_MQTT_PASSWORD": "env-pass",
        "MQTT_HK_BRIDGE_SETUP_CODE": "518-37-264",
    }
    config = parse({"mqtt": {"username": "file-user", "password": "file-pass"}}, environ=environ)
    assert config.mqtt.username == "env-user"
    assert config.mqtt.password == "env-pass"
    assert config.homekit.setup_code == "518-37-264"


def test_environment_override_keeps_the_rest_of_the_section() -> None:
    config = parse(
        {"mqtt": {"host": "broker", "port": 1884}},
        environ={"MQTT_HK_BRIDGE_MQTT_PASSWORD": "pw"},
    )
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.password) == ("broker", 1884, "pw")


def test_environment_sets_broker_address_and_state_dir_as_a_container_does(
    tmp_path: Path,
) -> None:
    environ = {
        "MQTT_HK_BRIDGE_MQTT_HOST": "127.0.0.1",
        "MQTT_HK_BRIDGE_MQTT_PORT": "1884",
        "MQTT_HK_BRIDGE_DATA_DIR": "/data",
    }
    config = load(write(tmp_path, "data_dir: ./state\nmqtt: {host: broker}\n"), environ=environ)
    assert (config.mqtt.host, config.mqtt.port) == ("127.0.0.1", 1884)
    assert config.data_dir == Path("/data")
    with pytest.raises(ConfigError, match=r"mqtt\.port"):
        parse({}, environ={"MQTT_HK_BRIDGE_MQTT_PORT": "not-a-port"})


def test_empty_environment_variable_is_ignored() -> None:
    config = parse(
        {"mqtt": {"password": "file-pass"}}, environ={"MQTT_HK_BRIDGE_MQTT_PASSWORD": ""}
    )
    assert config.mqtt.password == "file-pass"


def test_environ_argument_replaces_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MQTT_HK_BRIDGE_MQTT_PASSWORD", "from-process")
    assert parse({}, environ={}).mqtt.password is None
    assert parse({}).mqtt.password == "from-process"


def test_parse_does_not_change_the_callers_document() -> None:
    raw = {"mqtt": {"host": "broker"}}
    parse(raw, environ={"MQTT_HK_BRIDGE_MQTT_PASSWORD": "pw"})
    assert raw == {"mqtt": {"host": "broker"}}


def test_trivial_setup_code_from_the_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match="trivial"):
        parse({}, environ={"MQTT_HK_BRIDGE_SETUP_CODE": "123-45-678"})


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt_password"
    secret.write_text("from-file\n", encoding="utf-8")
    config = parse({"mqtt": {"password_file": str(secret)}}, environ={})
    assert config.mqtt.password == "from-file"


def test_missing_password_file_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, f"mqtt: {{password_file: {tmp_path / 'absent'}}}\n")
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert "mqtt.password_file" in str(caught.value)
    assert str(path) in str(caught.value)


def test_secrets_are_not_in_repr() -> None:
    config = parse(
        {"mqtt": {"password": "hunter2-pw"}, "homekit": {"setup_code": "518-37-264"}},
        environ={},
    )
    assert "hunter2-pw" not in repr(config)
    assert "518-37-264" not in repr(config)


# --- setup codes -------------------------------------------------------------------------
@pytest.mark.parametrize("code", sorted(const.TRIVIAL_SETUP_CODES))
def test_trivial_setup_codes_are_refused(code: str) -> None:
    with pytest.raises(ConfigError, match=r"homekit\.setup_code"):
        parse({"homekit": {"setup_code": code}}, environ={})


def test_the_twelve_codes_homekit_refuses() -> None:
    assert len(const.TRIVIAL_SETUP_CODES) == 12
    assert {"000-00-000", "999-99-999", "123-45-678", "876-54-321"} <= const.TRIVIAL_SETUP_CODES


@pytest.mark.parametrize(
    "code", ["48291735", "482-917-35", "482-91-73", "abc-de-fgh", "482 91 735", 48291735, ""]
)
def test_malformed_setup_codes_are_refused(code: object) -> None:
    with pytest.raises(ConfigError, match=r"homekit\.setup_code"):
        parse({"homekit": {"setup_code": code}}, environ={})


# --- errors name the key path and the file -----------------------------------------------
@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        ("mqtt: {port: 70000}\n", "mqtt.port"),
        ("mqtt: {port: 0}\n", "mqtt.port"),
        ("mqtt: {port: not-a-port}\n", "mqtt.port"),
        ("homekit: {port: -1}\n", "homekit.port"),
        ("mqtt: {keepalive: 1}\n", "mqtt.keepalive"),
        ("mqtt: {protocol: '4'}\n", "mqtt.protocol"),
        ("log_level: loud\n", "log_level"),
        ("base_topic: home/kit\n", "base_topic"),
        ("base_topic: ''\n", "base_topic"),
        ("defaults: {command_topic: sometimes}\n", "defaults.command_topic"),
        ("defaults: {expire_after: -5}\n", "defaults.expire_after"),
        ("devices: {esp1: {expire_after: soon}}\n", "devices.esp1.expire_after"),
        ("devices: {bridge: {}}\n", "devices.bridge"),
        ("devices: {'a/b': {}}\n", "devices.a/b"),
        ("timing: {event_window: -1}\n", "timing.event_window"),
        ("mqtt: localhost\n", "mqtt"),
    ],
)
def test_invalid_value_names_key_path_and_file(tmp_path: Path, text: str, key_path: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    message = str(caught.value)
    assert f"{path}: {key_path}: " in message


def test_bad_port_message_says_what_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt:\n  host: localhost\n  port: 70000\n")
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert str(caught.value) == f"{path}: mqtt.port: value must be at most 65535"


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        ("mqtt: {hots: localhost}\n", "mqtt.hots"),
        ("homekit: {pincode: 482-91-735}\n", "homekit.pincode"),
        ("base: HomeKit\n", "base"),
        ("devices: {esp1: {colour: red}}\n", "devices.esp1.colour"),
    ],
)
def test_unknown_key_is_named(tmp_path: Path, text: str, key_path: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert f"{path}: {key_path}: unknown key" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mqtt: {hots: localhost}\n", "mqtt.hots: unknown key; did you mean 'host'?"),
        ("homekit: {adress: 0.0.0.0}\n", "homekit.adress: unknown key; did you mean 'address'?"),
        ("devices: {esp1: {expire: 60}}\n", "devices.esp1.expire: unknown key; did you mean"),
        ("controller: {pol_interval: 60}\n", "did you mean 'poll_interval'?"),
        ("mqtt: {tls: {cafile: a}}\n", "mqtt.tls.cafile: unknown key; the keys here are ca, "),
    ],
)
def test_unknown_key_suggests_the_nearest_known_one(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(write(tmp_path, text), environ={})


@pytest.mark.parametrize("key", ["defaults.expire_after", "devices.esp1.remove_after"])
@pytest.mark.parametrize("value", ["-5", "0", "0.5", "soon", "true"])
def test_a_bad_duration_says_what_is_allowed(tmp_path: Path, key: str, value: str) -> None:
    *sections, name = key.split(".")
    text = "".join(f"{'  ' * i}{part}:\n" for i, part in enumerate(sections))
    path = write(tmp_path, f"{text}{'  ' * len(sections)}{name}: {value}\n")
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert f'{key}: expected a duration >= 1 s, e.g. 300 or "5m"' in str(caught.value)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("300", 300.0),
        ("'300'", 300.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("90s", 90.0),
        ("1.5", 1.5),
        ("null", None),
    ],
)
def test_durations_as_people_write_them(tmp_path: Path, value: str, seconds: float) -> None:
    config = load(write(tmp_path, f"defaults: {{expire_after: {value}}}\n"), environ={})
    assert config.defaults.expire_after == seconds


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        ("timing: {state_flush_interval: 0}\n", "timing.state_flush_interval"),
        ("timing: {reconnect_max: 0}\n", "timing.reconnect_max"),
        ("controller: {poll_interval: 0.01}\n", "controller.poll_interval"),
        ("controller: {reconnect_min: 0}\n", "controller.reconnect_min"),
    ],
)
def test_a_value_that_would_spin_a_loop_is_refused(
    tmp_path: Path, text: str, key_path: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{key_path}: expected a duration >= ")):
        load(write(tmp_path, text), environ={})


@pytest.mark.parametrize("value", ["1883.5", "true", "1e3", "[1883]"])
def test_a_port_is_a_whole_number(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"mqtt: {{port: {value}}}\n")
    with pytest.raises(ConfigError, match=r"mqtt\.port: expected a whole number"):
        load(path, environ={})


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt: {port: 70000}\nhomekit: {port: 0}\nbogus: 1\n")
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    message = str(caught.value)
    for key_path in ("mqtt.port", "homekit.port", "bogus"):
        assert key_path in message


@pytest.mark.parametrize(
    "text", ["mqtt: {host: localhost\n", "mqtt:\n  host: a\n port: 1\n", "key: [unclosed\n"]
)
def test_broken_yaml_names_the_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert str(path) in str(caught.value)
    assert "not valid YAML" in str(caught.value)
    assert "<unicode string>" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("mqtt:\n  host: a\n port: 1\n", ":3:2: ", "expected <block end>"),
        ("homekit:\n  name: a: b\n", ":2:10: ", "mapping values are not allowed here"),
        ("mqtt:\n\thost: a\n", ":2:1: ", "found character '\\t'"),
    ],
)
def test_broken_yaml_names_line_and_column(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert str(caught.value).startswith(f"{path}{where}not valid YAML: {problem}")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="mapping"):
        load(path, environ={})


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "bridge.yaml"
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert str(path) in str(caught.value)


def test_directory_instead_of_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load(tmp_path, environ={})


# --- data_dir ----------------------------------------------------------------------------
def test_relative_data_dir_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load(write(etc, "data_dir: state\n"), environ={})
    assert config.data_dir == etc / "state"
    assert load(write(etc, "data_dir: ../var/state\n"), environ={}).data_dir == (
        etc / "../var/state"
    )


def test_relative_data_dir_whatever_the_file_is_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `-c /etc/mqtt-hk-bridge/config`: the HAP keys must not land in the service's cwd.
    etc = tmp_path / "etc"
    etc.mkdir()
    monkeypatch.chdir(tmp_path)
    config = load(write(etc, "data_dir: ./data\n", name="config"), environ={})
    assert config.data_dir == etc / "data"


def test_absolute_data_dir_is_kept(tmp_path: Path) -> None:
    config = load(write(tmp_path, "data_dir: /srv/bridge\n"), environ={})
    assert config.data_dir == Path("/srv/bridge")


# --- homeassistant: discovery for the controller side --------------------------------------
def test_homeassistant_discovery_is_off_by_default() -> None:
    assert parse({}).homeassistant == HomeAssistantSettings(discovery=False, prefix="homeassistant")
    assert parse({"homeassistant": None}).homeassistant.discovery is False


def test_homeassistant_section() -> None:
    config = parse({"homeassistant": {"discovery": True, "prefix": "ha/discovery"}})
    assert config.homeassistant == HomeAssistantSettings(discovery=True, prefix="ha/discovery")
    for prefix in ("ha/#", "", "/ha", "ha/"):
        with pytest.raises(ConfigError, match=r"homeassistant\.prefix"):
            parse({"homeassistant": {"prefix": prefix}})
    with pytest.raises(ConfigError, match=r"homeassistant\.discover"):
        parse({"homeassistant": {"discover": True}})
