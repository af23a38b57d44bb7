"""bridge.yaml: a voluptuous schema turned into frozen dataclasses.

Keys are a public contract (README, bridge.yaml.example, docs/configuration.md). Secrets may
come from the environment instead of the file, so a compose file need not hold them.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import voluptuous as vol
import yaml

from . import const, mapping_config
from .controller.ha_settings import SCHEMA as HOMEASSISTANT_SCHEMA
from .controller.ha_settings import HomeAssistantSettings
from .controller.settings import SCHEMA as CONTROLLER_SCHEMA
from .controller.settings import ControllerSettings
from .durations import duration
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
TRANSPORT_TCP = "tcp"
TRANSPORT_WEBSOCKETS = "websockets"
#: Where most brokers serve MQTT over WebSockets (EMQX, HiveMQ; Mosquitto takes any path).
DEFAULT_WEBSOCKET_PATH = "/mqtt"


def setup_code(value: Any) -> str:
    """A HomeKit setup code: `XXX-XX-XXX` digits, not one HomeKit refuses as trivial."""
    text = str(value)
    if not SETUP_CODE_RE.match(text):
        raise vol.Invalid("must look like 482-91-735 (three digits, two, three)")
    if text in const.TRIVIAL_SETUP_CODES:
        raise vol.Invalid(f"{text} is a trivial code that HomeKit refuses; choose another")
    return text


def _is_topic_level(text: str) -> bool:
    return bool(text) and not any(c in text for c in "/+#\x00")


def topic_level(value: Any) -> str:
    text = str(value)
    if not _is_topic_level(text):
        raise vol.Invalid("must be one topic level: non-empty, without / + # or NUL")
    return text


def url_path(value: Any) -> str:
    text = str(value)
    if not text.startswith("/") or any(c.isspace() or c in "?#" for c in text):
        raise vol.Invalid("must be a URL path such as /mqtt: from /, without spaces, ? or #")
    return text


def device_id(value: Any) -> str:
    text = str(value)
    if not DEVICE_ID_RE.match(text) or text == const.BRIDGE_DEVICE_ID:
        raise vol.Invalid(
            f"device id {text!r} must be 1-{const.MAX_DEVICE_ID_LENGTH} characters without "
            f"/ + # and not {const.BRIDGE_DEVICE_ID!r}"
        )
    return text


def instance_name(value: Any) -> str:
    """The level naming this process's own topics, `<base>/bridge/<instance>/...`."""
    text = topic_level(value)
    if text in const.BRIDGE_WORDS:
        raise vol.Invalid(f"{text!r} is a topic word of the bridge's own; choose another name")
    return text


def device_pattern(value: Any) -> str:
    """A device-id glob of `device_filter`: `*` any characters, `?` one, `[ab]` one of."""
    text = str(value)
    if not _is_topic_level(text):
        raise vol.Invalid(
            f"{text!r}: a pattern matches device ids (one topic level), such as kitchen_*; "
            "use * and ?, not / + or #"
        )
    return text


def whole_number(value: Any) -> int:
    """An integer as written (`1883`, `"1883"`); `1883.5` or `true` is refused, not cut."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise vol.Invalid(f"expected a whole number, got {value!r}")


SECTIONS = (
    "mqtt",
    "homekit",
    "zeroconf",
    "defaults",
    "devices",
    "timing",
    "controller",
    "homeassistant",
    "device_filter",
)
PORT = vol.All(whole_number, vol.Range(min=1, max=65535))
#: Silence before "No Response" or removal: shorter than a second is a typo, not a policy.
SILENCE = duration(1.0, never=True)
COMMAND_TOPIC = vol.In([COMMAND_TOPIC_SET, COMMAND_TOPIC_SAME])
BRIDGE_NUMBER = vol.All(whole_number, vol.Range(min=1, max=const.MAX_HAP_BRIDGES))

DEVICE_OPTIONS = vol.All(
    {
        vol.Optional("name"): vol.All(str, vol.Length(min=1, max=64)),
        vol.Optional("command_topic"): COMMAND_TOPIC,
        vol.Optional("retain_commands"): bool,
        vol.Optional("expire_after"): SILENCE,
        vol.Optional("remove_after"): SILENCE,
        vol.Optional("bridge"): BRIDGE_NUMBER,
        **mapping_config.DEVICE_KEYS,
    },
    mapping_config.with_mapping,
)

SCHEMA = vol.Schema(
    {
        vol.Optional("base_topic", default=const.DEFAULT_BASE_TOPIC): topic_level,
        vol.Optional("data_dir", default="./data"): str,
        vol.Optional("instance"): instance_name,
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
            vol.Optional("transport", default=TRANSPORT_TCP): vol.In(
                [TRANSPORT_TCP, TRANSPORT_WEBSOCKETS]
            ),
            vol.Optional("path"): url_path,
            # `tls:` alone (null) means TLS with the system's CAs.
            vol.Optional("tls"): vol.Any(
                None,
                {
                    vol.Optional("ca"): str,
                    vol.Optional("cert"): str,
                    vol.Optional("key"): str,
                    vol.Optional("insecure", default=False): bool,
                },
            ),
        },
        vol.Optional("homekit", default={}): {
            vol.Optional("name", default="MQTT Bridge"): vol.All(str, vol.Length(min=1, max=64)),
            vol.Optional("address", default="0.0.0.0"): str,  # noqa: S104 - a LAN service
            vol.Optional("advertised_address"): str,
            vol.Optional("port", default=51826): PORT,
            vol.Optional("setup_code"): setup_code,
            vol.Optional("bridges", default=const.DEFAULT_HAP_BRIDGES): BRIDGE_NUMBER,
        },
        vol.Optional("zeroconf", default={}): {
            vol.Optional("interfaces"): vol.Any(None, [str]),
        },
        vol.Optional("homeassistant", default={}): HOMEASSISTANT_SCHEMA,
        vol.Optional("defaults", default={}): {
            vol.Optional("command_topic", default=COMMAND_TOPIC_SET): COMMAND_TOPIC,
            vol.Optional("retain_commands", default=False): bool,
            vol.Optional("expire_after", default=None): SILENCE,
            vol.Optional("remove_after", default=None): SILENCE,
        },
        vol.Optional("devices", default={}): vol.Schema({device_id: DEVICE_OPTIONS}),
        vol.Optional("device_filter", default={}): {
            vol.Optional("include", default=[]): [device_pattern],
            vol.Optional("exclude", default=[]): [device_pattern],
        },
        vol.Optional("controller", default={}): CONTROLLER_SCHEMA,
        **mapping_config.TOP_LEVEL_KEYS,
        # Tuning; the defaults are the documented behaviour, tests shorten them.
        vol.Optional("timing", default={}): {
            vol.Optional("event_window", default=const.DEFAULT_EVENT_WINDOW): duration(0),
            vol.Optional("config_debounce", default=const.DEFAULT_CONFIG_DEBOUNCE): duration(0),
            # A shorter flush interval would spin the loop writing the same file.
            vol.Optional(
                "state_flush_interval", default=const.DEFAULT_STATE_FLUSH_INTERVAL
            ): duration(0.1),
            # The backoff starts at DEFAULT_RECONNECT_MIN; a lower cap would retry in a loop.
            vol.Optional("reconnect_max", default=const.DEFAULT_RECONNECT_MAX): duration(
                const.DEFAULT_RECONNECT_MIN
            ),
        },
    },
    extra=vol.PREVENT_EXTRA,
)


@dataclass(frozen=True)
class TlsConfig:
    """File paths are resolved against the configuration file's folder."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    #: Skip the host-name check (the certificate chain is still verified): unsafe.
    insecure: bool = False


@dataclass(frozen=True)
class MqttConfig:
    host: str = "localhost"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: Where the password came from, kept to check the file's permissions.
    password_file: str | None = None
    client_id: str | None = None
    keepalive: int = 30
    protocol: str = "auto"
    transport: Literal["tcp", "websockets"] = "tcp"
    #: URL path of the broker's WebSockets endpoint (websockets transport only).
    path: str = DEFAULT_WEBSOCKET_PATH
    tls: TlsConfig | None = None


@dataclass(frozen=True)
class HomeKitConfig:
    name: str = "MQTT Bridge"
    address: str = "0.0.0.0"  # noqa: S104 - the Home app reaches the bridge over the LAN
    advertised_address: str | None = None
    port: int = 51826
    setup_code: str | None = field(default=None, repr=False)
    #: Most HAP bridges that may open; bridge n serves on `port + n - 1`.
    bridges: int = const.DEFAULT_HAP_BRIDGES


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
    #: Its own topics and payloads (docs/mapping.md); None: our topic layout.
    mapping: mapping_config.DeviceMapping | None = None
    #: The HAP bridge it must be shown on; None: where it was placed (and stays).
    bridge: int | None = None


@dataclass(frozen=True)
class DeviceFilter:
    """Which MQTT device ids this process shows (`device_filter`): those matching an
    `include` pattern (every id when there is none) and no `exclude` pattern."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


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
    sources: tuple[str, ...] = mapping_config.DEFAULT_SOURCES
    device_filter: DeviceFilter = DeviceFilter()
    #: Names this process's own topics `<base>/bridge/<instance>/...` (None: `<base>/bridge/`).
    instance: str | None = None

    @property
    def bridge_levels(self) -> tuple[str, ...]:
        """The topic levels after `<base>/bridge/` that are this process's own."""
        return () if self.instance is None else (self.instance,)

    def device_options(self, device_id: str) -> DeviceOptions:
        return self.devices.get(device_id, self.defaults)


def mapping_in(schema: Any) -> dict[Any, Any] | None:
    """The mapping a schema validates, looking inside `Schema`, `Any` (`tls: {...}` or
    nothing) and `All` (a device's keys, then its checks); None when it validates none."""
    if isinstance(schema, vol.Schema):
        schema = schema.schema
    if isinstance(schema, (vol.Any, vol.All)):
        found = [mapping_in(choice) for choice in schema.validators]
        return next((mapping for mapping in found if mapping is not None), None)
    return schema if isinstance(schema, dict) else None


def _keys_at(schema: Any, path: list[Any]) -> list[str]:
    """The keys the schema allows in the mapping at `path` (a device id stands for any)."""
    for part in path:
        schema = mapping_in(schema)
        if schema is None:
            return []
        named = {key.schema: value for key, value in schema.items() if isinstance(key, vol.Marker)}
        if part in named:
            schema = named[part]
        else:
            others = [value for key, value in schema.items() if not isinstance(key, vol.Marker)]
            if not others:
                return []
            schema = others[0]
    schema = mapping_in(schema)
    if schema is None:
        return []
    return sorted(str(key.schema) for key in schema if isinstance(key, vol.Marker))


def _format_invalid(source: str, err: vol.Invalid) -> str:
    path = ".".join(str(part) for part in err.path) or "(top level)"
    message = err.msg
    if message == "extra keys not allowed" and err.path:
        known = _keys_at(SCHEMA, err.path[:-1])
        close = difflib.get_close_matches(str(err.path[-1]), known, n=1)
        if close:
            message = f"unknown key; did you mean {close[0]!r}?"
        elif known:
            message = f"unknown key; the keys here are {', '.join(known)}"
        else:
            message = "unknown key"
    return f"{source}: {path}: {message}"


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


def _build_mqtt(mqtt: dict[str, Any], source: str, base_dir: Path) -> MqttConfig:
    def resolve(path: str | None) -> str | None:
        return None if path is None else str(base_dir / path)  # an absolute path stays

    if "path" in mqtt and mqtt["transport"] != TRANSPORT_WEBSOCKETS:
        raise ConfigError(f"{source}: mqtt.path: only used with `transport: websockets`")
    password = mqtt.get("password")
    password_file = resolve(mqtt.get("password_file"))
    if password is None and password_file is not None:
        try:
            password = Path(password_file).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigError(f"{source}: mqtt.password_file: {err}") from err
        if not password:
            raise ConfigError(f"{source}: mqtt.password_file: {password_file} is empty")
    tls = None
    if "tls" in mqtt:
        files = mqtt["tls"] or {}
        if "key" in files and "cert" not in files:
            raise ConfigError(f"{source}: mqtt.tls.key: needs mqtt.tls.cert, its certificate")
        tls = TlsConfig(
            ca=resolve(files.get("ca")),
            cert=resolve(files.get("cert")),
            key=resolve(files.get("key")),
            insecure=files.get("insecure", False),
        )
    return MqttConfig(
        host=mqtt["host"],
        port=mqtt["port"],
        username=mqtt.get("username"),
        password=password,
        password_file=password_file,
        client_id=mqtt.get("client_id"),
        keepalive=mqtt["keepalive"],
        protocol=mqtt["protocol"],
        transport=mqtt["transport"],
        path=mqtt.get("path", DEFAULT_WEBSOCKET_PATH),
        tls=tls,
    )


def _build(data: dict[str, Any], source: str, base_dir: Path | None) -> Config:
    defaults = DeviceOptions(**data["defaults"])
    devices = {
        device_id: DeviceOptions(**{**data["defaults"], **options}, configured=frozenset(options))
        for device_id, options in data["devices"].items()
    }
    interfaces = data["zeroconf"].get("interfaces")
    if base_dir is None:
        base_dir = Path(source).parent if source.endswith((".yaml", ".yml")) else Path()
    data_dir = Path(data["data_dir"])
    bridges = data["homekit"]["bridges"]
    for device_id, options in data["devices"].items():
        if options.get("bridge", 1) > bridges:
            raise ConfigError(
                f"{source}: devices.{device_id}.bridge: {options['bridge']} is above "
                f"homekit.bridges ({bridges})"
            )
    if data["homekit"]["port"] + bridges - 1 > 65535:
        raise ConfigError(
            f"{source}: homekit.bridges: bridge {bridges} would serve on port "
            f"{data['homekit']['port'] + bridges - 1}, above 65535; lower homekit.port"
        )
    device_filter = data["device_filter"]
    return Config(
        base_topic=data["base_topic"],
        data_dir=data_dir if data_dir.is_absolute() else base_dir / data_dir,
        log_level=data["log_level"],
        mqtt=_build_mqtt(data["mqtt"], source, base_dir),
        homekit=HomeKitConfig(**data["homekit"]),
        zeroconf_interfaces=tuple(interfaces) if interfaces else None,
        homeassistant=HomeAssistantSettings(**data["homeassistant"]),
        defaults=defaults,
        devices=devices,
        timing=Timing(**data["timing"]),
        controller=ControllerSettings(**data["controller"]),
        sources=tuple(dict.fromkeys(data["sources"])),
        device_filter=DeviceFilter(
            tuple(device_filter["include"]), tuple(device_filter["exclude"])
        ),
        instance=data.get("instance"),
    )


def load(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate bridge.yaml; every problem is a ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the configuration: {err.strerror}") from err
    try:
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        raise ConfigError(_yaml_error(path, err)) from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    # The file's folder whatever its name: `-c /etc/bridge/config` must not put the state
    # (the HAP keys) in whatever directory the service happened to start in.
    return parse(raw, str(path), environ, base_dir=path.parent)


def _yaml_error(path: Path, err: yaml.MarkedYAMLError) -> str:
    """`bridge.yaml:3:7: not valid YAML: <problem> (<context>)`, as compilers say it."""
    mark = err.problem_mark or err.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = err.problem or "cannot parse"
    context = (
        f" ({err.context} at line {err.context_mark.line + 1})"
        if (err.context and err.context_mark is not None)
        else ""
    )
    return f"{where}: not valid YAML: {problem}{context}"
