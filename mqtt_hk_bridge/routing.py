"""Every MQTT message to the one feature that handles it, with its topic parsed once.

Features register what they handle: the bridge's own requests, the device ids they own in
the base-topic tree (the controller side its aliases; the accessory side every other id),
and topic filters of their own outside it. A topic under the base that is not grammatical
is refused with a `bridge/event`, at most once a minute per topic.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from . import const
from .api import BridgeApi
from .display import clipped
from .errors import TopicError
from .mqtt import topics
from .mqtt.link import IncomingMessage

_LOGGER = logging.getLogger(__name__)

#: A bad topic is reported at most once a minute, so a flood cannot flood the log.
REJECT_REPORT_INTERVAL = 60.0
REJECT_MEMORY = 1024
#: Topics whose parse is kept: devices send the same few topics over and over.
PARSED_MEMORY = 4096

DeviceTopic = topics.StateTopic | topics.CommandTopic | topics.AvailabilityTopic
DeviceHandler = Callable[[DeviceTopic, IncomingMessage], None]
MessageHandler = Callable[[IncomingMessage], None]


@dataclass(frozen=True)
class _Owner:
    owns: Callable[[str], bool]
    handle: DeviceHandler


class Router:
    def __init__(self, base_topic: str, bridge_levels: tuple[str, ...] = ()) -> None:
        self._base = base_topic
        #: `<base>/bridge/<these>/request/...` are this process's requests (its `instance`).
        self._request_prefix = (*bridge_levels, const.BRIDGE_REQUEST)
        self._api: BridgeApi | None = None
        self._owners: list[_Owner] = []
        self._fallback: DeviceHandler | None = None
        #: Filters without wildcards, looked up at once (hundreds of device state topics).
        self._exact: dict[str, MessageHandler] = {}
        self._filters: list[tuple[str, MessageHandler]] = []
        #: Told of each filter added after start-up, so the link subscribes to it at once.
        self.on_filter_added: Callable[[str], None] | None = None
        #: What the MQTT link subscribes to on every connect; filters added later join it.
        self.subscriptions: list[str] = topics.subscriptions(base_topic)
        self.rejected_topics = 0
        self._reject_reported: OrderedDict[str, float] = OrderedDict()
        self._parse = functools.lru_cache(maxsize=PARSED_MEMORY)(
            functools.partial(topics.parse, base=base_topic)
        )

    def serve_api(self, api: BridgeApi) -> None:
        """`bridge/request/*` go to `api`, which also reports refused topics."""
        self._api = api

    def own_devices(self, owns: Callable[[str], bool], handle: DeviceHandler) -> None:
        """`handle` gets the base-tree topics of every device id `owns` says is its own."""
        self._owners.append(_Owner(owns, handle))

    def own_other_devices(self, handle: DeviceHandler) -> None:
        """`handle` gets the base-tree topics of device ids no other feature owns."""
        self._fallback = handle

    def add_filter(self, topic_filter: str, handle: MessageHandler) -> None:
        """`handle` gets messages matching an MQTT filter outside the base-topic tree; a
        topic matching an exact filter goes there, before any wildcard filter."""
        if topics.filter_overlaps_base(topic_filter, self._base):
            raise ValueError(f"{topic_filter!r} overlaps the {self._base!r} tree")
        if "+" in topic_filter or "#" in topic_filter:
            self._filters.append((topic_filter, handle))
        else:
            self._exact[topic_filter] = handle
        if topic_filter not in self.subscriptions:
            self.subscriptions.append(topic_filter)
            if self.on_filter_added is not None:
                self.on_filter_added(topic_filter)

    def dispatch(self, message: IncomingMessage) -> None:
        exact = self._exact.get(message.topic)
        if exact is not None:
            exact(message)
            return
        for topic_filter, handle in self._filters:
            if topics.matches(topic_filter, message.topic):
                handle(message)
                return
        try:
            parsed = self._parse(message.topic)
        except TopicError as err:
            self._reject(message.topic, err)
            return
        if isinstance(parsed, topics.BridgeTopic):
            path, prefix = parsed.path, self._request_prefix
            if self._api is not None and len(path) > len(prefix) and path[: len(prefix)] == prefix:
                self._api.handle_request("/".join(path[len(prefix) :]), message.payload)
            return
        for owner in self._owners:
            if owner.owns(parsed.device_id):
                owner.handle(parsed, message)
                return
        if self._fallback is not None:
            self._fallback(parsed, message)

    def _reject(self, topic: str, err: TopicError) -> None:
        self.rejected_topics += 1
        now = time.monotonic()
        last = self._reject_reported.get(topic)
        if last is not None and now - last < REJECT_REPORT_INTERVAL:
            return
        self._reject_reported[topic] = now
        self._reject_reported.move_to_end(topic)
        while len(self._reject_reported) > REJECT_MEMORY:
            self._reject_reported.popitem(last=False)
        if self._api is not None:
            self._api.event("invalid_topic", str(err), topic=clipped(topic))
            self._api.publish_info()  # its count of refused topics
