"""bridge.yaml: a voluptuous schema turned into frozen dataclasses.

Keys are a public contract (README, bridge.yaml.example, docs/configuration.md). Secrets may
come from the environment instead of the file, so a compose file need not hold them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import voluptuous as vol
import yaml

from . import const
from .controller.ha_settings import SCHEMA as HOMEASSISTANT_SCHEMA
from .controller.ha_settings import HomeAssistantSettings
from .controller.settings import SCHEMA as CONTROLLER_SCHEMA
from .controller.settings import ControllerSettings
from .errors import ConfigError

#: Environment variables that override a key: secrets kept out of bridge.yaml, and what a
#: container sets (its state volume, the broker's address). A key path: section, key.
ENV_OVERRIDES: Mapping[str, tuple[str, ...]] = {
    "MQTT_HK_BRIDGE_DATA_DIR": ("data_dir",),
    "MQTT_HK_BRIDGE_MQTT_HOST": ("mqtt", "host"),
    "MQTT_HK_BRIDGE_MQTT_PORT": ("mqtt", "port"),
    "MQTT_HK_BRIDGE_MQTT_USERNAME": ("mqtt", "username"),
    "MQTT_HK_BRIDGE_MQTT_PASSWORD": ("mqtt", "password"),
    "MQTT_HK_BRIDGE_SETUP_CODE": ("homekit", "setup_code"),
}

SETUP_CODE_RE = re.compile(r"^\d{3}-\d{2}-\d{3}$")
DEVICE_ID_RE = re.compile(rf"^[^/+#\x00]{{1,{const.MAX_DEVICE_ID_LENGTH}}}$")
COMMAND_TOPIC_SET = "set"
COMMAND_TOPIC_SAME = "same"


def setup_code(value: Any) -> str:
    """A HomeKit setup code: `XXX-XX-XXX` digits, not one HomeKit refuses as trivial."""
    text = str(value)
    if not SETUP_CODE_RE.match(text):
        raise vol.Invalid("must look like 482-91-735 (three digits, two, three)")
    if text in const.TRIVIAL_SETUP_CODES:
        raise vol.Invalid(f"{text} is a trivial code that HomeKit refuses; choose another")
    return text


def topic_level(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in "/+#\x00"):
        raise vol.Invalid("must be one topic level: non-empty, without / + # or NUL")
    return text


def device_id(value: Any) -> str:
    text = str(value)
    if not DEVICE_ID_RE.match(text) or text == const.BRIDGE_DEVICE_ID:
        raise vol.Invalid(
            f"device id {text!r} must be 1-{const.MAX_DEVICE_ID_LENGTH} characters without "
            f"/ + # and not {const.BRIDGE_DEVICE_ID!r}"
        )
    return text


SECTIONS = ("mqtt", "homekit", "zeroconf", "defaults", "devices", "timing", "controller")
PORT = vol.All(vol.Coerce(int), vol.Range(min=1, max=65535))
SECONDS = vol.All(vol.Coerce(float), vol.Range(min=0.0))
COMMAND_TOPIC = vol.In([COMMAND_TOPIC_SET, COMMAND_TOPIC_SAME])

DEVICE_OPTIONS = {
    vol.Optional("name"): vol.All(str, vol.Length(min=1, max=64)),
    vol.Optional("command_topic"): COMMAND_TOPIC,
    vol.Optional("retain_commands"): bool,
    vol.Optional("expire_after"): vol.Any(None, SECONDS),
    vol.Optional("remove_after"): vol.Any(None, SECONDS),
}

SCHEMA = vol.Schema(
    {
        vol.Optional("base_topic", default=const.DEFAULT_BASE_TOPIC): topic_level,
        vol.Optional("data_dir", default="./data"): str,
        vol.Optional("log_level", default="info"): vol.All(
            str, vol.Lower, vol.In(["debug", "info", "warning", "error"])
        ),
        vol.Optional("mqtt", default={}): {
            vol.Optional("host", default="localhost"): str,
            vol.Optional("port", default=1883): PORT,
            vol.Optional("username"): str,
            vol.Optional("password"): str,
            vol.Optional("password_file"): str,
            vol.Optional("client_id"): vol.All(str, vol.Length(min=1, max=64)),
            vol.Optional("keepalive", default=30): vol.All(vol.Coerce(int), vol.Range(5, 3600)),
            vol.Optional("protocol", default="auto"): vol.In(["auto", "5", "3.1.1"]),
            vol.Optional("tls"): {
                vol.Optional("ca"): str,
                vol.Optional("cert"): str,
                vol.Optional("key"): str,
            },
        },
        vol.Optional("homekit", default={}): {
            vol.Optional("name", default="MQTT Bridge"): vol.All(str, vol.Length(min=1, max=64)),
            vol.Optional("address", default="0.0.0.0"): str,  # noqa: S104 - a LAN service
            vol.Optional("advertised_address"): str,
            vol.Optional("port", default=51826): PORT,
            vol.Optional("setup_code"): setup_code,
        },
        vol.Optional("zeroconf", default={}): {
            vol.Optional("interfaces"): vol.Any(None, [str]),
        },
        vol.Optional("homeassistant", default={}): vol.Any(None, HOMEASSISTANT_SCHEMA),
        vol.Optional("defaults", default={}): {
            vol.Optional("command_topic", default=COMMAND_TOPIC_SET): COMMAND_TOPIC,
            vol.Optional("retain_commands", default=False): bool,
            vol.Optional("expire_after", default=None): vol.Any(None, SECONDS),
            vol.Optional("remove_after", default=None): vol.Any(None, SECONDS),
        },
        vol.Optional("devices", default={}): vol.Schema({device_id: DEVICE_OPTIONS}),
        vol.Optional("controller", default={}): CONTROLLER_SCHEMA,
        # Tuning; the defaults are the documented behaviour, tests shorten them.
        vol.Optional("timing", default={}): {
            vol.Optional("event_window", default=const.DEFAULT_EVENT_WINDOW): SECONDS,
            vol.Optional("config_debounce", default=const.DEFAULT_CONFIG_DEBOUNCE): SECONDS,
            vol.Optional(
                "state_flush_interval", default=const.DEFAULT_STATE_FLUSH_INTERVAL
            ): SECONDS,
            vol.Optional("reconnect_max", default=const.DEFAULT_RECONNECT_MAX): SECONDS,
        },
    },
    extra=vol.PREVENT_EXTRA,
)


@dataclass(frozen=True)
class TlsConfig:
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class MqttConfig:
    host: str = "localhost"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str | None = None
    keepalive: int = 30
    protocol: str = "auto"
    tls: TlsConfig | None = None


@dataclass(frozen=True)
class HomeKitConfig:
    name: str = "MQTT Bridge"
    address: str = "0.0.0.0"  # noqa: S104 - the Home app reaches the bridge over the LAN
    advertised_address: str | None = None
    port: int = 51826
    setup_code: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DeviceOptions:
    """Per-device behaviour; unset fields fall back to `defaults`."""

    name: str | None = None
    #: The keys bridge.yaml sets for this very device (`devices.<id>`); a request may not
    #: change them (docs/api.md, `device/options`).
    configured: frozenset[str] = frozenset()
    command_topic: str = COMMAND_TOPIC_SET
    retain_commands: bool = False
    expire_after: float | None = None
    #: Silent this long, the device leaves the bridge (and its retained topics are cleared).
    remove_after: float | None = None


@dataclass(frozen=True)
class Timing:
    event_window: float = const.DEFAULT_EVENT_WINDOW
    config_debounce: float = const.DEFAULT_CONFIG_DEBOUNCE
    state_flush_interval: float = const.DEFAULT_STATE_FLUSH_INTERVAL
    reconnect_max: float = const.DEFAULT_RECONNECT_MAX


@dataclass(frozen=True)
class Config:
    base_topic: str = const.DEFAULT_BASE_TOPIC
    data_dir: Path = Path("./data")
    log_level: str = "info"
    mqtt: MqttConfig = MqttConfig()
    homekit: HomeKitConfig = HomeKitConfig()
    zeroconf_interfaces: tuple[str, ...] | None = None
    homeassistant: HomeAssistantSettings = field(default_factory=HomeAssistantSettings)
    defaults: DeviceOptions = DeviceOptions()
    devices: Mapping[str, DeviceOptions] = field(default_factory=dict)
    timing: Timing = Timing()
    controller: ControllerSettings = field(default_factory=ControllerSettings)

    def device_options(self, device_id: str) -> DeviceOptions:
        return self.devices.get(device_id, self.defaults)


def _format_invalid(source: str, err: vol.Invalid) -> str:
    path = ".".join(str(part) for part in err.path) or "(top level)"
    return f"{source}: {path}: {err.msg}"


def parse(
    raw: Any,
    source: str = "bridge.yaml",
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Validate a loaded YAML document (plus environment overrides) into a Config.

    A relative `data_dir` is taken from `base_dir` (the config file's folder).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    # A section whose keys are all commented out (`zeroconf:`) reads as null: same as absent.
    raw = {
        key: (dict(value) if isinstance(value, dict) else value)
        for key, value in raw.items()
        if value is not None or key not in SECTIONS
    }
    for variable, (*sections, key) in ENV_OVERRIDES.items():
        value = (environ if environ is not None else os.environ).get(variable)
        if not value:
            continue
        target: Any = raw
        for section in sections:
            target = target.setdefault(section, {}) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target[key] = value
    try:
        data = SCHEMA(raw)
    except vol.MultipleInvalid as err:
        raise ConfigError(
            "\n".join(_format_invalid(source, error) for error in err.errors)
        ) from err
    except vol.Invalid as err:
        raise ConfigError(_format_invalid(source, err)) from err
    return _build(data, source, base_dir)


def _build(data: dict[str, Any], source: str, base_dir: Path | None) -> Config:
    mqtt = data["mqtt"]
    password = mqtt.get("password")
    if password is None and "password_file" in mqtt:
        try:
            password = Path(mqtt["password_file"]).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigError(f"{source}: mqtt.password_file: {err}") from err
    tls = TlsConfig(**mqtt["tls"]) if "tls" in mqtt else None
    defaults = DeviceOptions(**data["defaults"])
    devices = {
        device_id: DeviceOptions(**{**data["defaults"], **options}, configured=frozenset(options))
        for device_id, options in data["devices"].items()
    }
    interfaces = data["zeroconf"].get("interfaces")
    if base_dir is None:
        base_dir = Path(source).parent if source.endswith((".yaml", ".yml")) else Path()
    data_dir = Path(data["data_dir"])
    return Config(
        base_topic=data["base_topic"],
        data_dir=data_dir if data_dir.is_absolute() else base_dir / data_dir,
        log_level=data["log_level"],
        mqtt=MqttConfig(
            host=mqtt["host"],
            port=mqtt["port"],
            username=mqtt.get("username"),
            password=password,
            client_id=mqtt.get("client_id"),
            keepalive=mqtt["keepalive"],
            protocol=mqtt["protocol"],
            tls=tls,
        ),
        homekit=HomeKitConfig(**data["homekit"]),
        zeroconf_interfaces=tuple(interfaces) if interfaces else None,
        homeassistant=HomeAssistantSettings(**(data["homeassistant"] or {})),
        defaults=defaults,
        devices=devices,
        timing=Timing(**data["timing"]),
        controller=ControllerSettings(**data["controller"]),
    )


def load(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate bridge.yaml; every problem is a ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the configuration: {err.strerror}") from err
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    # The file's folder whatever its name: `-c /etc/bridge/config` must not put the state
    # (the HAP keys) in whatever directory the service happened to start in.
    return parse(raw, str(path), environ, base_dir=path.parent)
