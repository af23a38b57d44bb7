"""A device bound to topics of its own: which characteristic reads which state topic and
how, where its Home-app writes go and in what form, and what says it is online. Mapped
devices (bridge.yaml) and Home Assistant discovery both describe devices this way;
`BoundDevices` runs them. Values only: nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

from ..homekit.catalog import INTEGER_FORMATS, CharInfo
from ..mqtt.payloads import HapValue
from ..mqtt.topics import CharKey, ServiceKey
from .narrowing import Narrowing
from .transforms import PayloadView


class Skip(enum.Enum):
    """A reader's answer when the message says nothing about its characteristic (a
    Zigbee2MQTT state without `color_temp`, a button topic with another button's press)."""

    NOTHING = "nothing"


#: Payload -> the device's raw value for one characteristic (coerced to HAP by the caller).
#: Raises PayloadError when the payload should have held a value and does not.
Reader = Callable[[PayloadView], Any]
#: The current value of another characteristic of the same service, by name (a hue write
#: goes out with the saturation the light has).
Siblings = Callable[[str], HapValue | None]
#: HAP value -> the command payload; raises PayloadError when it has no device form.
Writer = Callable[[HapValue, Siblings], str]


@dataclass(frozen=True)
class ResetAfter:
    """The value a characteristic returns to by itself once its state topic has been quiet
    this long after another value (Home Assistant's `off_delay`: a PIR or an RF sensor that
    only ever says ON)."""

    seconds: float
    value: HapValue


@dataclass(frozen=True)
class CharSpec:
    """How one characteristic reads its state topic and writes its command topic; a
    `CharBinding` once its service has its place in the device."""

    characteristic: str
    state_topic: str | None = None
    read: Reader | None = None
    command_topic: str | None = None
    write: Writer | None = None
    retain_command: bool = False
    #: The value shown until the device says otherwise (constants, buttons); None: a
    #: characteristic with a command topic starts at `neutral_value`, others wait for
    #: their first state.
    initial: HapValue | None = None
    #: How the binding reads and writes, for `bridge/devices` (JSON-ready).
    describe: Mapping[str, Any] = field(default_factory=dict)
    reset: ResetAfter | None = None
    #: What the device can do of it, where that is less than HomeKit's range.
    narrowing: Narrowing | None = None

    def bound(self, service: ServiceKey) -> CharBinding:
        return CharBinding(**{f.name: getattr(self, f.name) for f in fields(self)}, service=service)


@dataclass(frozen=True, kw_only=True)
class CharBinding(CharSpec):
    service: ServiceKey

    @cached_property
    def key(self) -> CharKey:  # read for every characteristic of every message: made once
        return CharKey(self.service, self.characteristic)


class AvailabilityMode(enum.Enum):
    """How several availability topics combine (Home Assistant's `availability_mode`)."""

    ALL = "all"  # available when every topic says so
    ANY = "any"  # available when one topic says so
    LATEST = "latest"  # the topic that spoke last decides


@dataclass(frozen=True)
class AvailabilityBinding:
    topic: str
    #: Payload -> True (online), False (offline), or Skip.NOTHING (neither word).
    read: Callable[[PayloadView], bool | Skip]
    describe: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceBinding:
    device_id: str
    source: str
    characteristics: tuple[CharBinding, ...]
    availability: tuple[AvailabilityBinding, ...] = ()
    availability_mode: AvailabilityMode = AvailabilityMode.LATEST
    #: What the device is, for `bridge/devices` (discovery: its entities; mapped: its key).
    describe: Mapping[str, Any] = field(default_factory=dict)
    #: Silent this long, the device shows "No Response", unless its options say otherwise
    #: (Home Assistant's `expire_after`); None: the options alone decide.
    expire_after: float | None = None

    def state_topics(self) -> set[str]:
        topics = {char.state_topic for char in self.characteristics if char.state_topic}
        return topics | {avail.topic for avail in self.availability}


def neutral_value(info: CharInfo) -> HapValue:
    """What a controllable characteristic shows before its device first says anything (off,
    the lowest value), so the accessory is there to control."""
    if info.format == "bool":
        return False
    if info.valid_values:
        return info.valid_values[0]
    if info.format == "string":
        return ""
    low = info.min_value if info.min_value is not None else 0
    return int(low) if info.format in INTEGER_FORMATS else float(low)
