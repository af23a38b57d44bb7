"""Home Assistant MQTT discovery messages, read: the topic
`<prefix>/<component>/[<node_id>/]<object_id>/config`, the payload's abbreviated keys
(`stat_t`, `dev`: `ids`...) spelled out, `~` put into topics, and the device identity that
decides which accessory an entity joins and its id (docs/mapping.md, "Stable ids").
Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import const
from ..errors import PayloadError
from ..mqtt.payloads import json_document

#: The abbreviations Home Assistant accepts for the keys we read (its abbreviations.py).
ABBREVIATIONS: Mapping[str, str] = {
    "act_t": "action_topic",
    "o": "origin",
    "act_tpl": "action_template",
    "atype": "automation_type",
    "avty": "availability",
    "avty_mode": "availability_mode",
    "avty_t": "availability_topic",
    "avty_tpl": "availability_template",
    "bri_cmd_t": "brightness_command_topic",
    "bri_cmd_tpl": "brightness_command_template",
    "bri_scl": "brightness_scale",
    "bri_stat_t": "brightness_state_topic",
    "bri_val_tpl": "brightness_value_template",
    "clr_temp_cmd_t": "color_temp_command_topic",
    "clr_temp_cmd_tpl": "color_temp_command_template",
    "clr_temp_k": "color_temp_kelvin",
    "clr_temp_stat_t": "color_temp_state_topic",
    "clr_temp_val_tpl": "color_temp_value_template",
    "clrm": "color_mode",
    "cmd_t": "command_topic",
    "cmd_tpl": "command_template",
    "cmps": "components",
    "curr_temp_t": "current_temperature_topic",
    "curr_temp_tpl": "current_temperature_template",
    "dev": "device",
    "dev_cla": "device_class",
    "en": "enabled_by_default",
    "exp_aft": "expire_after",
    "ent_cat": "entity_category",
    "hs_cmd_t": "hs_command_topic",
    "hs_cmd_tpl": "hs_command_template",
    "hs_stat_t": "hs_state_topic",
    "hs_val_tpl": "hs_value_template",
    "max_mirs": "max_mireds",
    "min_mirs": "min_mireds",
    "mode_cmd_t": "mode_command_topic",
    "mode_cmd_tpl": "mode_command_template",
    "mode_stat_t": "mode_state_topic",
    "mode_stat_tpl": "mode_state_template",
    "obj_id": "object_id",
    "off_dly": "off_delay",
    "opt": "optimistic",
    "p": "platform",
    "pct_cmd_t": "percentage_command_topic",
    "pct_cmd_tpl": "percentage_command_template",
    "pct_stat_t": "percentage_state_topic",
    "pct_val_tpl": "percentage_value_template",
    "pl": "payload",
    "pl_avail": "payload_available",
    "pl_cls": "payload_close",
    "pl_lock": "payload_lock",
    "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off",
    "pl_on": "payload_on",
    "pl_open": "payload_open",
    "pl_stop": "payload_stop",
    "pl_unlk": "payload_unlock",
    "pos_clsd": "position_closed",
    "pos_open": "position_open",
    "pos_t": "position_topic",
    "pos_tpl": "position_template",
    "ret": "retain",
    "rgb_cmd_t": "rgb_command_topic",
    "rgb_cmd_tpl": "rgb_command_template",
    "rgb_stat_t": "rgb_state_topic",
    "rgb_val_tpl": "rgb_value_template",
    "set_pos_t": "set_position_topic",
    "set_pos_tpl": "set_position_template",
    "spd_rng_max": "speed_range_max",
    "spd_rng_min": "speed_range_min",
    "stat_clsd": "state_closed",
    "stat_closing": "state_closing",
    "stat_jam": "state_jammed",
    "stat_locked": "state_locked",
    "stat_locking": "state_locking",
    "stat_off": "state_off",
    "stat_on": "state_on",
    "stat_open": "state_open",
    "stat_opening": "state_opening",
    "stat_t": "state_topic",
    "stat_tpl": "state_template",
    "stat_unlocked": "state_unlocked",
    "stat_unlocking": "state_unlocking",
    "stat_val_tpl": "state_value_template",
    "stype": "subtype",
    "sup_clrm": "supported_color_modes",
    "t": "topic",
    "temp_cmd_t": "temperature_command_topic",
    "temp_cmd_tpl": "temperature_command_template",
    "temp_stat_t": "temperature_state_topic",
    "temp_stat_tpl": "temperature_state_template",
    "temp_unit": "temperature_unit",
    "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement",
    "val_tpl": "value_template",
}
DEVICE_ABBREVIATIONS: Mapping[str, str] = {
    "cns": "connections",
    "ids": "identifiers",
    "mf": "manufacturer",
    "mdl": "model",
    "mdl_id": "model_id",
    "sw": "sw_version",
    "hw": "hw_version",
    "sn": "serial_number",
}
#: Home Assistant's topic base: a topic starting or ending with it gets the `~` key's value.
TOPIC_BASE = "~"
#: A `device` component (one message, many entities) names its entities' platform here.
DEVICE_COMPONENT = "device"
#: Largest discovery config we read (a light with its effect list runs to a few kB).
MAX_CONFIG_BYTES = 65536
_LEVEL = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class DiscoveryTopic:
    prefix: str
    component: str
    node_id: str | None
    object_id: str

    @property
    def topic(self) -> str:
        node = f"{self.node_id}/" if self.node_id else ""
        return f"{self.prefix}/{self.component}/{node}{self.object_id}/config"


@dataclass(frozen=True)
class DiscoveredDevice:
    identifiers: tuple[str, ...]
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class Entity:
    """One entity's discovery config, keys spelled out and topics complete."""

    #: Where it was announced (an entity of a `device` message: `<topic>#<component id>`).
    key: str
    component: str
    config: Mapping[str, Any]
    device: DiscoveredDevice | None = None
    object_id: str = ""
    unique_id: str | None = None

    @property
    def device_id(self) -> str:
        """The accessory's id: the device's first identifier, else the entity's unique id,
        else its discovery topic (docs/mapping.md, "Stable ids")."""
        if self.device is not None and self.device.identifiers:
            return safe_device_id(self.device.identifiers[0])
        if self.unique_id:
            return safe_device_id(self.unique_id)
        return safe_device_id(f"{self.component}_{self.object_id}")

    def get(self, key: str, default: Any = None) -> Any:
        value = self.config.get(key)
        return default if value is None else value


def parse_topic(topic: str, prefix: str) -> DiscoveryTopic | None:
    """The parts of a discovery config topic; None for any other topic under the prefix."""
    if not topic.startswith(f"{prefix}/"):
        return None
    levels = topic[len(prefix) + 1 :].split("/")
    if len(levels) not in (3, 4) or levels[-1] != "config":
        return None
    parts = levels[:-1]
    if not all(_LEVEL.match(level) for level in parts):
        return None
    component, *node, object_id = parts
    return DiscoveryTopic(prefix, component, node[0] if node else None, object_id)


def safe_device_id(identifier: str) -> str:
    """An identifier as a device id: no / + # NUL, at most MAX_DEVICE_ID_LENGTH characters
    (a longer one keeps its start and a hash of the whole)."""
    text = re.sub(r"[/+#\x00]", "_", identifier.strip()) or "_"
    if text == const.BRIDGE_DEVICE_ID:
        text = f"{text}_"
    limit = const.MAX_DEVICE_ID_LENGTH
    if len(text) > limit:
        digest = hashlib.sha256(identifier.encode()).hexdigest()[:8]
        text = f"{text[: limit - 9]}-{digest}"
    return text


def _expand(raw: Mapping[str, Any], table: Mapping[str, str]) -> dict[str, Any]:
    return {table.get(key, key): value for key, value in raw.items()}


def _with_base(config: dict[str, Any]) -> dict[str, Any]:
    base = config.pop(TOPIC_BASE, None)
    if not isinstance(base, str):
        return config
    for key, value in config.items():
        if (
            key.endswith("topic")
            and isinstance(value, str)
            and (value.startswith(TOPIC_BASE) or value.endswith(TOPIC_BASE))
        ):
            config[key] = value.replace(TOPIC_BASE, base)
    availability = config.get("availability")
    if isinstance(availability, list):
        config["availability"] = [
            {
                **item,
                "topic": item["topic"].replace(TOPIC_BASE, base)
                if isinstance(item.get("topic"), str)
                and (item["topic"].startswith(TOPIC_BASE) or item["topic"].endswith(TOPIC_BASE))
                else item.get("topic"),
            }
            if isinstance(item, dict)
            else item
            for item in availability
        ]
    return config


def _device(raw: Any) -> DiscoveredDevice | None:
    if not isinstance(raw, dict):
        return None
    device = _expand(raw, DEVICE_ABBREVIATIONS)
    identifiers = device.get("identifiers")
    if isinstance(identifiers, str | int):
        identifiers = [identifiers]
    if not isinstance(identifiers, list):
        identifiers = []
    return DiscoveredDevice(
        identifiers=tuple(str(item) for item in identifiers if isinstance(item, str | int)),
        name=_text(device.get("name")),
        manufacturer=_text(device.get("manufacturer")),
        model=_text(device.get("model")),
    )


def _text(value: Any) -> str | None:
    return None if value is None or isinstance(value, dict | list) else str(value)


def _spelled_out(raw: Mapping[str, Any]) -> dict[str, Any]:
    config = _expand(raw, ABBREVIATIONS)
    availability = config.get("availability")
    if isinstance(availability, list):
        config["availability"] = [
            _expand(item, ABBREVIATIONS) if isinstance(item, dict) else item
            for item in availability
        ]
    return _with_base(config)


def parse_config(topic: DiscoveryTopic, payload: bytes) -> list[Entity]:
    """The entities a (non-empty) discovery payload announces: one, or several for a
    `device` message. PayloadError when it is not a JSON object."""
    if len(payload) > MAX_CONFIG_BYTES:
        raise PayloadError(f"config of {len(payload)} bytes is over {MAX_CONFIG_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PayloadError(f"config is not UTF-8 ({err.reason})") from err
    document = json_document(text)
    if not isinstance(document, dict):
        raise PayloadError("a discovery config must be a JSON object")
    config = _spelled_out(document)
    if topic.component != DEVICE_COMPONENT:
        return [_entity(topic.topic, topic.component, topic.object_id, config)]
    components = config.pop("components", None)
    if not isinstance(components, dict) or not components:
        raise PayloadError("a device discovery config needs its components (cmps)")
    entities = []
    for component_id, raw in sorted(components.items()):
        if not isinstance(raw, dict):
            raise PayloadError(f"component {component_id!r} is not a JSON object")
        # Keys of the device message (state_topic, availability, ~...) are shared.
        merged = _spelled_out({**document, **raw})
        merged.pop("components", None)
        platform = str(merged.get("platform", ""))
        entities.append(
            _entity(f"{topic.topic}#{component_id}", platform, str(component_id), merged)
        )
    return entities


def _entity(key: str, component: str, object_id: str, config: dict[str, Any]) -> Entity:
    unique_id = config.get("unique_id")
    return Entity(
        key=key,
        component=component,
        config=config,
        device=_device(config.get("device")),
        object_id=object_id,
        unique_id=str(unique_id) if unique_id is not None else None,
    )
