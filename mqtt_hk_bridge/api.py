"""The bridge's own topics: `bridge/request/*` -> `bridge/response/*`, `bridge/event`,
`bridge/info` and the `bridge/devices` catalogue.

Features register request handlers and catalogue sources here; none of them builds a
`bridge/...` topic or response payload itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from . import const
from .display import clipped, quoted
from .errors import BridgeError, NotConnectedError, PayloadError
from .mqtt.link import MqttLink
from .mqtt.payloads import payload_text
from .mqtt.topics import bridge_topic
from .request_schemas import SCHEMAS, TRANSACTION, RequestInvalid, validate
from .tasks import TaskSet

_LOGGER = logging.getLogger(__name__)

#: Changes to the catalogue within this many seconds are published together.
CATALOGUE_DELAY = 0.25
#: Events raised while the broker is away (at start-up, before the first connect, too) are
#: sent on the next connect: the newest this many.
EVENTS_KEPT = 100

RequestHandler = Callable[[dict[str, Any]], Awaitable[Any]]
CatalogueSource = Callable[[], list[dict[str, Any]]]


class BridgeApi:
    def __init__(
        self, link: MqttLink, base_topic: str, bridge_levels: tuple[str, ...] = ()
    ) -> None:
        self._link = link
        self._base = base_topic
        #: After `<base>/bridge/`: this process's own subtree (its `instance`, if any).
        self._own = bridge_levels
        self._handlers: dict[str, RequestHandler] = {}
        self._sources: list[CatalogueSource] = []
        self._info: Callable[[], dict[str, Any]] = dict
        self._requests = TaskSet(_LOGGER, "Request")
        self._catalogue_pending = False
        self._last_catalogue: str | None = None
        self._unsent_events: deque[str] = deque(maxlen=EVENTS_KEPT)

    def register(self, action: str, handler: RequestHandler) -> None:
        """`handler(body)` answers `bridge/request/<action>` with the body its schema in
        request_schemas.py has checked; it raises BridgeError to refuse."""
        if action not in SCHEMAS:
            raise ValueError(f"request {action!r} has no schema in request_schemas.py")

        async def checked(body: dict[str, Any]) -> Any:
            return await handler(validate(action, body))

        self._handlers[action] = checked

    def add_catalogue_source(self, source: CatalogueSource) -> None:
        self._sources.append(source)

    def set_info(self, info: Callable[[], dict[str, Any]]) -> None:
        self._info = info

    def _publish(self, topic: str, payload: str, *, retain: bool = False) -> None:
        try:
            self._link.publish(topic, payload, retain=retain)
        except NotConnectedError:
            # Retained bridge topics are all republished on the next connect.
            _LOGGER.debug("Not connected; %s waits for the next connect", topic)

    def event(self, kind: str, message: str, **details: Any) -> None:
        """A problem or notice a user must see: a log line and a JSON `bridge/event`."""
        _LOGGER.warning("%s: %s", kind, message)
        body = {"type": kind, "message": message, "time": round(time.time(), 3), **details}
        self._unsent_events.append(json.dumps(body))
        self._send_events()

    def _send_events(self) -> None:
        """The events not sent yet, oldest first, as long as the broker takes them."""
        topic = bridge_topic(self._base, *self._own, const.BRIDGE_EVENT)
        while self._unsent_events:
            try:
                self._link.publish(topic, self._unsent_events[0])
            except NotConnectedError:
                _LOGGER.debug("Not connected; %s waits for the next connect", topic)
                return
            self._unsent_events.popleft()

    def publish_info(self) -> None:
        info = json.dumps(self._info(), sort_keys=True)
        self._publish(bridge_topic(self._base, *self._own, const.BRIDGE_INFO), info, retain=True)

    def catalogue(self) -> list[dict[str, Any]]:
        devices = [device for source in self._sources for device in source()]
        return sorted(devices, key=lambda device: str(device["id"]))

    def catalogue_changed(self) -> None:
        """Republish `bridge/devices` soon: a burst of changes (a start-up flood of retained
        topics) is sent once, not once per message."""
        if self._catalogue_pending:
            return
        self._catalogue_pending = True
        asyncio.get_running_loop().call_later(CATALOGUE_DELAY, self._publish_catalogue)

    def _publish_catalogue(self, force: bool = False) -> None:
        self._catalogue_pending = False
        text = json.dumps(self.catalogue(), sort_keys=True)
        if text == self._last_catalogue and not force:
            return
        self._last_catalogue = text
        self._publish(bridge_topic(self._base, *self._own, const.BRIDGE_DEVICES), text, retain=True)
        self.publish_info()  # it counts the accessories

    async def republish(self) -> None:
        """After a (re)connect: the retained bridge topics, whatever the broker lost, and
        the events raised while it was away."""
        self._publish_catalogue(force=True)
        self._send_events()

    def handle_request(self, action: str, payload: bytes) -> None:
        self._requests.spawn(self._answer(action, payload))

    async def _answer(self, action: str, payload: bytes) -> None:
        body: dict[str, Any] = {}
        response: dict[str, Any]
        try:
            body = _parse_body(payload)
            handler = self._handlers.get(action)
            if handler is None:
                known = ", ".join(sorted(self._handlers))
                raise BridgeError(f"unknown request {quoted(action)} (known: {known})")
            response = {"status": "ok", "data": await handler(body)}
        except (BridgeError, ValueError) as err:
            response = _refusal(err)
        except Exception as err:
            _LOGGER.exception("Request %s failed", clipped(action))
            response = {"status": "error", "error": f"internal error: {err}"}
        if TRANSACTION in body:
            response[TRANSACTION] = body[TRANSACTION]
        if response["status"] == "error":
            _LOGGER.warning("Request %s refused: %s", clipped(action), response["error"])
        self._publish(
            bridge_topic(self._base, *self._own, const.BRIDGE_RESPONSE, action),
            json.dumps(response),
        )


def _parse_body(payload: bytes) -> dict[str, Any]:
    """A request body: a JSON object (an empty payload is `{}`)."""
    text = payload_text(payload)
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        raise PayloadError(
            f"request payload is not JSON (got {quoted(text[:40])}); send an object such as "
            '{"transaction": 1}, or nothing'
        ) from None
    if not isinstance(parsed, dict):
        raise PayloadError("a request body must be a JSON object")
    return parsed


def _refusal(err: Exception) -> dict[str, Any]:
    """An error answer; one about a field of the body names it in `field` too."""
    response: dict[str, Any] = {"status": "error", "error": str(err)}
    if isinstance(err, RequestInvalid) and err.field is not None:
        response["field"] = err.field
    return response
