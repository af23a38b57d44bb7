"""The topic grammar (docs/topics.md): parse and build, pure functions.

<base>/<device_id>/<Service>[/<index>]/<Characteristic>[/set|/get]
<base>/<device_id>/availability
<base>/bridge/<...>
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import const
from ..display import quoted as _shown
from ..errors import TopicError


@dataclass(frozen=True, order=True)
class ServiceKey:
    """One service of a device: its HAP type name and its index among services of that type."""

    service: str
    index: int = 1

    def __str__(self) -> str:
        return self.service if self.index == 1 else f"{self.service}/{self.index}"


@dataclass(frozen=True, order=True)
class CharKey:
    """One characteristic of a device."""

    service_key: ServiceKey
    characteristic: str

    @property
    def service(self) -> str:
        return self.service_key.service

    @property
    def index(self) -> int:
        return self.service_key.index

    def __str__(self) -> str:
        return f"{self.service_key}/{self.characteristic}"


@dataclass(frozen=True)
class StateTopic:
    """A device's value: published by the device (accessory side) or by us (controller side)."""

    device_id: str
    key: CharKey


@dataclass(frozen=True)
class CommandTopic:
    """`.../set` (write) or `.../get` (fresh read) for one characteristic."""

    device_id: str
    key: CharKey
    action: str


@dataclass(frozen=True)
class AvailabilityTopic:
    device_id: str


@dataclass(frozen=True)
class BridgeTopic:
    """`<base>/bridge/<path>`: the bridge's own subtree (requests, responses, state)."""

    path: tuple[str, ...]


ParsedTopic = StateTopic | CommandTopic | AvailabilityTopic | BridgeTopic


def _check_level(level: str, what: str, topic: str) -> None:
    if not level:
        raise TopicError(f"empty {what} level in {_shown(topic)}")


def parse(topic: str, base: str) -> ParsedTopic:
    """Turn a topic under `base` into what it addresses, or raise TopicError saying why."""
    levels = topic.split("/")
    if levels[0] != base:
        raise TopicError(f"{_shown(topic)} is not under {base!r}")
    rest = levels[1:]
    if not rest or not rest[0]:
        raise TopicError(f"{_shown(topic)} names no device")
    device_id = rest[0]
    if device_id == const.BRIDGE_DEVICE_ID:
        return BridgeTopic(tuple(rest[1:]))
    if len(device_id) > const.MAX_DEVICE_ID_LENGTH:
        raise TopicError(
            f"device id in {_shown(topic)} is longer than {const.MAX_DEVICE_ID_LENGTH}"
        )
    rest = rest[1:]
    if rest == [const.AVAILABILITY]:
        return AvailabilityTopic(device_id)
    action = None
    if len(rest) >= 3 and rest[-1] in (const.SET_SUFFIX, const.GET_SUFFIX):
        action = rest[-1]
        rest = rest[:-1]
    if len(rest) == 2:
        service, characteristic = rest
        index = 1
    elif len(rest) == 3:
        service, index_text, characteristic = rest
        if not index_text.isascii() or not index_text.isdigit():
            raise TopicError(
                f"service index {_shown(index_text)} in {_shown(topic)} is not a number"
            )
        # int() raises ValueError past 4,300 digits; no valid index needs more than a few.
        index = int(index_text) if len(index_text) <= 6 else 0
        if not 1 <= index <= const.MAX_SERVICE_INDEX:
            raise TopicError(
                f"service index {_shown(index_text)} in {_shown(topic)} is outside "
                f"1-{const.MAX_SERVICE_INDEX}"
            )
    else:
        raise TopicError(
            f"{_shown(topic)} has {len(levels)} levels; expected "
            f"{base}/<device>/<Service>[/<index>]/<Characteristic>"
        )
    _check_level(service, "service", topic)
    _check_level(characteristic, "characteristic", topic)
    key = CharKey(ServiceKey(service, index), characteristic)
    if action is not None:
        return CommandTopic(device_id, key, action)
    return StateTopic(device_id, key)


def state_topic(base: str, device_id: str, key: CharKey) -> str:
    return f"{base}/{device_id}/{key}"


def command_topic(base: str, device_id: str, key: CharKey, action: str = const.SET_SUFFIX) -> str:
    return f"{state_topic(base, device_id, key)}/{action}"


def availability_topic(base: str, device_id: str) -> str:
    return f"{base}/{device_id}/{const.AVAILABILITY}"


def bridge_topic(base: str, *path: str) -> str:
    return "/".join((base, const.BRIDGE_DEVICE_ID, *path))


def subscriptions(base: str) -> list[str]:
    """What the bridge subscribes to: every device's topics and the bridge's requests."""
    return [f"{base}/#"]


def matches(topic_filter: str, topic: str) -> bool:
    """Whether an MQTT topic filter (`+` one level, `#` the rest) matches a topic."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False  # $SYS and friends never match a wildcard at the first level
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for position, level in enumerate(filter_levels):
        if level == "#":
            return True
        if position >= len(topic_levels):
            return False
        if level not in ("+", topic_levels[position]):
            return False
    return len(filter_levels) == len(topic_levels)


def filter_overlaps_base(topic_filter: str, base: str) -> bool:
    """Whether a filter could match topics under `<base>/`, the tree the router parses."""
    first = topic_filter.split("/", 1)[0]
    return first in (base, "+", "#")
