"""Home Assistant MQTT discovery for the accessories the controller side mirrors.

Each mirrored accessory (`<alias>` or `<alias>-<aid>`) becomes one Home Assistant device;
each service Home Assistant has a platform for becomes an entity pointing at our state and
`/set` topics, with the accessory's and the bridge's availability. The configs are retained
on `<prefix>/<component>/hk_<accessory id>_<aid>/<object>/config`, cleared when the
accessory goes (unpair), and published again on every MQTT connect and whenever Home
Assistant says `online` on `<prefix>/status`. docs/homeassistant.md lists the mapping;
`configs_for` is a pure function a contract test pins for recorded accessory databases.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import const
from ..errors import ConfigError
from ..mqtt.link import IncomingMessage, MqttLink
from ..mqtt.topics import CharKey, ServiceKey, availability_topic, bridge_topic, command_topic
from ..routing import Router
from .ha_settings import HomeAssistantSettings
from .mirror import AccessoryMirror, CharId, MirroredChar, MirroredDevice, RetainedTopics

_LOGGER = logging.getLogger(__name__)

#: How our payloads say true and false (mqtt/payloads.py `encode`).
_ON, _OFF = "1", "0"
#: Names `origin` gives Home Assistant for every config.
_ORIGIN = {"name": const.DISCOVERY_ORIGIN}

#: Numeric characteristics shown as a `sensor`: device_class, unit.
SENSORS: Mapping[str, tuple[str, str]] = {
    "CurrentTemperature": ("temperature", "°C"),
    "CurrentRelativeHumidity": ("humidity", "%"),
    "CurrentAmbientLightLevel": ("illuminance", "lx"),
    "CarbonDioxideLevel": ("carbon_dioxide", "ppm"),
    "CarbonMonoxideLevel": ("carbon_monoxide", "ppm"),
    "PM2.5Density": ("pm25", "µg/m³"),
    "PM10Density": ("pm10", "µg/m³"),
    "VOCDensity": ("volatile_organic_compounds", "µg/m³"),
    "NitrogenDioxideDensity": ("nitrogen_dioxide", "µg/m³"),
    "OzoneDensity": ("ozone", "µg/m³"),
    "SulphurDioxideDensity": ("sulphur_dioxide", "µg/m³"),
    "BatteryLevel": ("battery", "%"),
}
#: Characteristics shown as a `binary_sensor`: device_class (None: none fits), and the
#: payload meaning "on" (a door open, motion seen; ContactSensorState 1 is "no contact").
BINARY_SENSORS: Mapping[str, str | None] = {
    "MotionDetected": "motion",
    "OccupancyDetected": "occupancy",
    "ContactSensorState": "opening",
    "LeakDetected": "moisture",
    "SmokeDetected": "smoke",
    "CarbonMonoxideDetected": "carbon_monoxide",
    "CarbonDioxideDetected": None,
    "StatusLowBattery": "battery",
    "OutletInUse": "power",
}
#: Services whose characteristics a climate or cover entity already shows.
_OWN_SENSORS = frozenset({"Thermostat", "HeaterCooler"})
_COVER_CLASSES = {"WindowCovering": "shade", "Window": "window", "Door": "door"}
_THERMOSTAT_MODES = {0: "off", 1: "heat", 2: "cool", 3: "auto"}
_THERMOSTAT_ACTIONS = {0: "off", 1: "heating", 2: "cooling"}
_DOOR_STATES = {0: "open", 1: "closed", 2: "opening", 3: "closing", 4: "stopped"}


@dataclass(frozen=True)
class Entity:
    component: str
    object_id: str
    config: dict[str, Any]


def node_id(accessory_id: str, aid: int) -> str:
    """A Home Assistant device's id: the accessory's pairing id and aid, so it stays the same
    whatever alias the accessory is paired under."""
    return f"hk_{re.sub(r'[^0-9a-z]', '', accessory_id.lower())}_{aid}"


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).replace(".", "_").lower()


def _label(key: ServiceKey, what: str) -> str:
    return what if key.index == 1 else f"{what} {key.index}"


def _jinja_map(mapping: Mapping[Any, str], default: str) -> str:
    """A template mapping our payload (the value's text) to a word of Home Assistant's."""
    pairs = ", ".join(f"'{key}': '{word}'" for key, word in mapping.items())
    return f"{{{{ {{{pairs}}}.get(value, '{default}') }}}}"


def _jinja_reverse(mapping: Mapping[int, str]) -> str:
    """A command template: Home Assistant's word -> our payload."""
    pairs = ", ".join(f"'{word}': {key}" for key, word in mapping.items())
    return f"{{{{ {{{pairs}}}[value] }}}}"


class _Service:
    """The characteristics of one service, by name, with the topics they map to."""

    def __init__(self, base: str, device_id: str, key: ServiceKey, chars: list[MirroredChar]):
        self.base = base
        self.device_id = device_id
        self.key = key
        self.chars = {char.key.characteristic: char for char in chars}

    def readable(self, name: str) -> MirroredChar | None:
        char = self.chars.get(name)
        return char if char is not None and char.info.readable else None

    def writable(self, name: str) -> MirroredChar | None:
        char = self.readable(name)
        return char if char is not None and char.info.writable else None

    def state(self, name: str) -> str:
        return self.chars[name].topic

    def set(self, name: str) -> str:
        return command_topic(self.base, self.device_id, CharKey(self.key, name))


def _light(service: _Service) -> list[Entity]:
    if service.writable("On") is None:
        return []
    config: dict[str, Any] = {
        "name": _label(service.key, "Light"),
        "state_topic": service.state("On"),
        "command_topic": service.set("On"),
        "payload_on": _ON,
        "payload_off": _OFF,
    }
    if service.writable("Brightness") is not None:
        config |= {
            "brightness_state_topic": service.state("Brightness"),
            "brightness_command_topic": service.set("Brightness"),
            "brightness_scale": 100,
        }
    temperature = service.writable("ColorTemperature")
    if temperature is not None:
        config |= {
            "color_temp_state_topic": service.state("ColorTemperature"),
            "color_temp_command_topic": service.set("ColorTemperature"),
        }
        if temperature.info.min_value is not None and temperature.info.max_value is not None:
            config |= {
                "min_mireds": int(temperature.info.min_value),
                "max_mireds": int(temperature.info.max_value),
            }
    entities = [Entity("light", _snake(str(service.key).replace("/", "_")), config)]
    # Home Assistant's colour wheel sends hue and saturation as one "h,s" payload to one
    # topic; HomeKit has one characteristic each, so each is a number of its own.
    for name, unit in (("Hue", "°"), ("Saturation", "%")):
        char = service.writable(name)
        if char is not None:
            entities.append(_number(service, char, unit, _label(service.key, f"Light {name}")))
    return entities


def _number(service: _Service, char: MirroredChar, unit: str, label: str) -> Entity:
    name = char.key.characteristic
    config: dict[str, Any] = {
        "name": label,
        "state_topic": service.state(name),
        "command_topic": service.set(name),
        "unit_of_measurement": unit,
        "mode": "slider",
    }
    for ours, theirs in (("min_value", "min"), ("max_value", "max"), ("min_step", "step")):
        value = getattr(char.info, ours)
        if value is not None:
            config[theirs] = value
    object_id = _snake(f"{service.key}_{name}".replace("/", "_"))
    return Entity("number", object_id, config)


def _switch(service: _Service, device_class: str | None) -> list[Entity]:
    if service.writable("On") is None:
        return []
    config: dict[str, Any] = {
        "name": _label(service.key, "Outlet" if device_class else "Switch"),
        "state_topic": service.state("On"),
        "command_topic": service.set("On"),
        "payload_on": _ON,
        "payload_off": _OFF,
        "state_on": _ON,
        "state_off": _OFF,
    }
    if device_class:
        config["device_class"] = device_class
    return [Entity("switch", _snake(str(service.key).replace("/", "_")), config)]


def _fan(service: _Service) -> list[Entity]:
    power = "Active" if service.writable("Active") is not None else "On"
    if service.writable(power) is None:
        return []
    config: dict[str, Any] = {
        "name": _label(service.key, "Fan"),
        "state_topic": service.state(power),
        "command_topic": service.set(power),
        "payload_on": _ON,
        "payload_off": _OFF,
    }
    speed = service.writable("RotationSpeed")
    if speed is not None:
        config |= {
            "percentage_state_topic": service.state("RotationSpeed"),
            "percentage_command_topic": service.set("RotationSpeed"),
            "speed_range_min": 1,
            "speed_range_max": int(speed.info.max_value or 100),
        }
    return [Entity("fan", _snake(str(service.key).replace("/", "_")), config)]


def _climate(service: _Service) -> list[Entity]:
    target = service.writable("TargetTemperature")
    mode = service.writable("TargetHeatingCoolingState")
    if target is None or mode is None:
        return []
    valid = mode.info.valid_values or tuple(_THERMOSTAT_MODES)
    modes = {value: _THERMOSTAT_MODES[value] for value in valid if value in _THERMOSTAT_MODES}
    config: dict[str, Any] = {
        "name": _label(service.key, "Thermostat"),
        "temperature_unit": "C",
        "temperature_state_topic": service.state("TargetTemperature"),
        "temperature_command_topic": service.set("TargetTemperature"),
        "mode_state_topic": service.state("TargetHeatingCoolingState"),
        "mode_state_template": _jinja_map(modes, "off"),
        "mode_command_topic": service.set("TargetHeatingCoolingState"),
        "mode_command_template": _jinja_reverse(modes),
        "modes": list(modes.values()),
    }
    for ours, theirs in (("min_value", "min_temp"), ("max_value", "max_temp")):
        value = getattr(target.info, ours)
        if value is not None:
            config[theirs] = value
    if target.info.min_step is not None:
        config["temp_step"] = target.info.min_step
    if service.readable("CurrentTemperature") is not None:
        config["current_temperature_topic"] = service.state("CurrentTemperature")
    if service.readable("CurrentHeatingCoolingState") is not None:
        config["action_topic"] = service.state("CurrentHeatingCoolingState")
        config["action_template"] = _jinja_map(_THERMOSTAT_ACTIONS, "idle")
    if service.readable("CurrentRelativeHumidity") is not None:
        config["current_humidity_topic"] = service.state("CurrentRelativeHumidity")
    if service.writable("TargetRelativeHumidity") is not None:
        config["target_humidity_state_topic"] = service.state("TargetRelativeHumidity")
        config["target_humidity_command_topic"] = service.set("TargetRelativeHumidity")
    for name, side in (
        ("HeatingThresholdTemperature", "low"),
        ("CoolingThresholdTemperature", "high"),
    ):
        if service.writable(name) is not None:
            config[f"temperature_{side}_state_topic"] = service.state(name)
            config[f"temperature_{side}_command_topic"] = service.set(name)
    return [Entity("climate", _snake(str(service.key).replace("/", "_")), config)]


def _cover(service: _Service) -> list[Entity]:
    if service.writable("TargetPosition") is None:
        return []
    config: dict[str, Any] = {
        "name": _label(service.key, service.key.service),
        "device_class": _COVER_CLASSES[service.key.service],
        "command_topic": service.set("TargetPosition"),
        "payload_open": "100",
        "payload_close": "0",
        "payload_stop": None,
        "set_position_topic": service.set("TargetPosition"),
        "position_open": 100,
        "position_closed": 0,
    }
    if service.readable("CurrentPosition") is not None:
        config["position_topic"] = service.state("CurrentPosition")
    return [Entity("cover", _snake(str(service.key).replace("/", "_")), config)]


def _garage_door(service: _Service) -> list[Entity]:
    if service.writable("TargetDoorState") is None:
        return []
    config: dict[str, Any] = {
        "name": _label(service.key, "Garage door"),
        "device_class": "garage",
        "command_topic": service.set("TargetDoorState"),
        "payload_open": "0",
        "payload_close": "1",
        "payload_stop": None,
    }
    if service.readable("CurrentDoorState") is not None:
        config["state_topic"] = service.state("CurrentDoorState")
        config["value_template"] = _jinja_map(_DOOR_STATES, "stopped")
    return [Entity("cover", _snake(str(service.key).replace("/", "_")), config)]


def _lock(service: _Service) -> list[Entity]:
    if service.writable("LockTargetState") is None:
        return []
    config: dict[str, Any] = {
        "name": _label(service.key, "Lock"),
        "command_topic": service.set("LockTargetState"),
        "payload_lock": "1",
        "payload_unlock": "0",
    }
    if service.readable("LockCurrentState") is not None:
        config |= {
            "state_topic": service.state("LockCurrentState"),
            "state_locked": "1",
            "state_unlocked": "0",
            "state_jammed": "2",
        }
    return [Entity("lock", _snake(str(service.key).replace("/", "_")), config)]


def _sensors(service: _Service) -> list[Entity]:
    """Readings of a service without a platform of its own (a climate entity shows its own)."""
    if service.key.service in _OWN_SENSORS:
        return []
    entities = []
    for name, char in service.chars.items():
        if not char.info.readable:
            continue
        object_id = _snake(f"{service.key}_{name}".replace("/", "_"))
        if name in SENSORS:
            device_class, unit = SENSORS[name]
            config: dict[str, Any] = {
                "name": _label(service.key, _snake(name).replace("_", " ").capitalize()),
                "state_topic": char.topic,
                "device_class": device_class,
                "unit_of_measurement": unit,
                "state_class": "measurement",
            }
            entities.append(Entity("sensor", object_id, config))
        elif name in BINARY_SENSORS:
            config = {
                "name": _label(service.key, _snake(name).replace("_", " ").capitalize()),
                "state_topic": char.topic,
                "payload_on": _ON,
                "payload_off": _OFF,
            }
            binary_class = BINARY_SENSORS[name]
            if binary_class is not None:
                config["device_class"] = binary_class
            entities.append(Entity("binary_sensor", object_id, config))
    return entities


def _entities(service: _Service) -> list[Entity]:
    kind = service.key.service
    if kind == "Lightbulb":
        main = _light(service)
    elif kind == "Switch":
        main = _switch(service, None)
    elif kind == "Outlet":
        main = _switch(service, "outlet")
    elif kind in ("Fan", "Fanv2"):
        main = _fan(service)
    elif kind == "Thermostat":
        main = _climate(service)
    elif kind in _COVER_CLASSES:
        main = _cover(service)
    elif kind == "GarageDoorOpener":
        main = _garage_door(service)
    elif kind == "LockMechanism":
        main = _lock(service)
    else:
        main = []
    return main + _sensors(service)


def _device_block(
    device: MirroredDevice, information: Mapping[str, Any], accessory_id: str
) -> dict[str, Any]:
    block: dict[str, Any] = {
        "identifiers": [node_id(accessory_id, device.aid)],
        "name": device.name,
    }
    for ours, theirs in (
        ("Manufacturer", "manufacturer"),
        ("Model", "model"),
        ("SerialNumber", "serial_number"),
        ("FirmwareRevision", "sw_version"),
        ("HardwareRevision", "hw_version"),
    ):
        value = information.get(ours)
        if isinstance(value, str) and value:
            block[theirs] = value
    if device.aid != 1:  # an accessory behind a paired bridge
        block["via_device"] = node_id(accessory_id, 1)
    return block


def configs_for(
    *,
    devices: Iterable[MirroredDevice],
    values: Mapping[CharId, Any],
    accessory_id: str,
    base_topic: str,
    prefix: str,
) -> dict[str, dict[str, Any]]:
    """Every discovery config of one pairing's accessories: config topic -> payload."""
    configs: dict[str, dict[str, Any]] = {}
    for device in devices:
        information = {
            char.key.characteristic: values[char.char_id]
            for char in device.chars
            if char.key.service == const.INFO_SERVICE and char.char_id in values
        }
        block = _device_block(device, information, accessory_id)
        node = node_id(accessory_id, device.aid)
        availability = [
            {"topic": availability_topic(base_topic, device.device_id)},
            {"topic": bridge_topic(base_topic, const.BRIDGE_STATE)},
        ]
        by_service: dict[ServiceKey, list[MirroredChar]] = {}
        for char in device.chars:
            by_service.setdefault(char.key.service_key, []).append(char)
        for key, chars in by_service.items():
            for entity in _entities(_Service(base_topic, device.device_id, key, chars)):
                config = {
                    **entity.config,
                    "unique_id": f"{node}_{entity.object_id}",
                    "device": block,
                    "availability": availability,
                    "availability_mode": "all",
                    "payload_available": const.ONLINE,
                    "payload_not_available": const.OFFLINE,
                    "origin": _ORIGIN,
                }
                configs[f"{prefix}/{entity.component}/{node}/{entity.object_id}/config"] = config
    return configs


class DiscoveryPublisher:
    """Keeps the retained discovery configs in step with the mirrored accessories."""

    def __init__(
        self, settings: HomeAssistantSettings, base_topic: str, link: MqttLink, router: Router
    ) -> None:
        self._prefix = settings.prefix
        self._base = base_topic
        self._retained = RetainedTopics(link)
        status = f"{settings.prefix}/status"
        try:
            router.add_filter(status, self._on_status)
        except ValueError:
            raise ConfigError(
                f"homeassistant.prefix {settings.prefix!r} lies inside base_topic "
                f"{base_topic!r}; choose another"
            ) from None

    def update(self, pairings: Iterable[tuple[AccessoryMirror, str]]) -> None:
        """Publish what is new or changed, clear what is gone; `pairings` are the mirrors
        with the accessory (pairing) id of each."""
        wanted: dict[str, str] = {}
        for mirror, accessory_id in pairings:
            configs = configs_for(
                devices=mirror.devices.values(),
                values=mirror.values,
                accessory_id=accessory_id,
                base_topic=self._base,
                prefix=self._prefix,
            )
            wanted |= {
                topic: json.dumps(config, sort_keys=True) for topic, config in configs.items()
            }
        for topic in set(self._retained.topics()) - set(wanted):
            self._retained.clear(topic)
        for topic, payload in wanted.items():
            self._retained.publish(topic, payload, only_if_changed=True)

    def republish(self) -> None:
        self._retained.republish()

    def _on_status(self, message: IncomingMessage) -> None:
        """Home Assistant (re)started and lost what it knew: tell it again."""
        if message.payload.strip().lower() == const.ONLINE.encode():
            _LOGGER.info("Home Assistant is online; publishing discovery again")
            self.republish()
