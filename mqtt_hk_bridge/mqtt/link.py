"""The one MQTT connection: reconnect with jittered backoff, Last Will, resubscribe,
republish on connect, and a filter so the bridge never takes its own publications as input.

Only this module imports aiomqtt. The rest of the bridge sees `IncomingMessage` and
`MqttLink.publish`, which never blocks (a HAP-python setter calls it inside a Home-app request).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .. import const
from ..config import MqttConfig
from ..errors import NotConnectedError

_LOGGER = logging.getLogger(__name__)

#: CONNACK codes meaning "this broker does not speak MQTT 5" (3.1.1 rc 1, v5 reason 0x84).
_UNSUPPORTED_PROTOCOL_CODES = frozenset({1, 0x84})
#: How many of our own recent publications we remember on MQTT 3.1.1 (no no-local there).
_OWN_PUBLICATIONS_MEMORY = 10_000
#: In-flight publications past which aiomqtt warns (a full republish is hundreds).
_PENDING_PUBLISH_WARNING = 10_000


@dataclass(frozen=True)
class IncomingMessage:
    topic: str
    payload: bytes
    retain: bool


MessageHandler = Callable[[IncomingMessage], None]
ConnectHook = Callable[[], Awaitable[None]]


def _code(rc: int | ReasonCode | None) -> int | None:
    """paho reports MQTT 5 reason codes as ReasonCode objects, 3.1.1 codes as ints."""
    return rc.value if isinstance(rc, ReasonCode) else rc


def _tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    if config.tls is None:
        return None
    context = ssl.create_default_context(cafile=config.tls.ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.tls.cert:
        context.load_cert_chain(config.tls.cert, config.tls.key)
    return context


class MqttLink:
    """Owns the connection; `run()` keeps it up until cancelled."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        subscriptions: list[str],
        will_topic: str,
        on_message: MessageHandler,
        reconnect_max: float = const.DEFAULT_RECONNECT_MAX,
    ) -> None:
        self._config = config
        self._subscriptions = subscriptions
        self._will_topic = will_topic
        self._on_message = on_message
        self._reconnect_max = reconnect_max
        self._connect_hooks: list[ConnectHook] = []
        self._client: aiomqtt.Client | None = None
        self._protocol = (
            aiomqtt.ProtocolVersion.V311
            if config.protocol == "3.1.1"
            else aiomqtt.ProtocolVersion.V5
        )
        self._client_id = config.client_id or f"mqtt-hk-bridge-{uuid.uuid4().hex[:8]}"
        self._pending: set[asyncio.Task[None]] = set()
        self._own: OrderedDict[tuple[str, bytes], int] = OrderedDict()

    @property
    def connected(self) -> bool:
        return self._client is not None

    @property
    def protocol(self) -> str:
        return "5" if self._protocol == aiomqtt.ProtocolVersion.V5 else "3.1.1"

    def add_connect_hook(self, hook: ConnectHook) -> None:
        """`hook` runs after every (re)connect, once subscriptions are in place."""
        self._connect_hooks.append(hook)

    def publish(
        self, topic: str, payload: str | bytes, *, retain: bool = False, qos: int = 1
    ) -> None:
        """Send without waiting; raises NotConnectedError when the broker is away."""
        client = self._client
        if client is None:
            raise NotConnectedError(f"not connected to the MQTT broker; {topic} not sent")
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        if self._protocol != aiomqtt.ProtocolVersion.V5:
            self._remember_own(topic, data)
        # Tasks start in creation order and paho queues the packet synchronously at the
        # start of each, so publications keep their order without waiting on each PUBACK.
        task = asyncio.get_running_loop().create_task(
            client.publish(topic, data, qos=qos, retain=retain)
        )
        self._pending.add(task)
        task.add_done_callback(self._publish_done)

    def _publish_done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.warning("Publish failed: %s", task.exception())

    def _remember_own(self, topic: str, data: bytes) -> None:
        key = (topic, data)
        self._own[key] = self._own.get(key, 0) + 1
        self._own.move_to_end(key)
        while len(self._own) > _OWN_PUBLICATIONS_MEMORY:
            self._own.popitem(last=False)

    def _is_own(self, topic: str, data: bytes) -> bool:
        key = (topic, data)
        count = self._own.get(key)
        if not count:
            return False
        if count == 1:
            del self._own[key]
        else:
            self._own[key] = count - 1
        return True

    def _make_client(self) -> aiomqtt.Client:
        config = self._config
        client = aiomqtt.Client(
            config.host,
            config.port,
            username=config.username,
            password=config.password,
            identifier=self._client_id,
            protocol=self._protocol,
            will=aiomqtt.Will(self._will_topic, const.OFFLINE, qos=1, retain=True),
            keepalive=config.keepalive,
            tls_context=_tls_context(config),
            timeout=10,
        )
        # Republishing a whole mirror after a connect puts hundreds of QoS 1 publications in
        # flight at once; that is expected, not worth aiomqtt's warning at its default of 10.
        client.pending_calls_threshold = _PENDING_PUBLISH_WARNING
        return client

    async def run(self) -> None:
        """Connect, serve, and reconnect after any loss, until cancelled."""
        delay = const.DEFAULT_RECONNECT_MIN
        while True:
            try:
                async with self._make_client() as client:
                    delay = const.DEFAULT_RECONNECT_MIN
                    await self._serve(client)
            except aiomqtt.MqttCodeError as err:
                if (
                    self._config.protocol == "auto"
                    and self._protocol == aiomqtt.ProtocolVersion.V5
                    and _code(err.rc) in _UNSUPPORTED_PROTOCOL_CODES
                ):
                    _LOGGER.info("Broker refuses MQTT 5; using MQTT 3.1.1")
                    self._protocol = aiomqtt.ProtocolVersion.V311
                    continue
                _LOGGER.warning(
                    "MQTT connection to %s:%s failed: %s", self._config.host, self._config.port, err
                )
            except aiomqtt.MqttError as err:
                _LOGGER.warning(
                    "MQTT connection to %s:%s lost: %s", self._config.host, self._config.port, err
                )
            except Exception:
                # Whatever goes wrong, the bridge must not be left without its broker.
                _LOGGER.exception("MQTT connection failed unexpectedly; reconnecting")
            finally:
                self._client = None
            # Full jitter keeps a fleet of bridges from reconnecting in lockstep.
            await asyncio.sleep(random.uniform(delay / 2, delay))  # noqa: S311
            delay = min(delay * 2, self._reconnect_max)

    async def _serve(self, client: aiomqtt.Client) -> None:
        for pattern in self._subscriptions:
            await self._subscribe(client, pattern)
        self._client = client
        _LOGGER.info(
            "Connected to MQTT broker %s:%s (MQTT %s)",
            self._config.host,
            self._config.port,
            self.protocol,
        )
        self.publish(self._will_topic, const.ONLINE, retain=True)
        for hook in self._connect_hooks:
            await hook()
        async for message in client.messages:
            self._dispatch(message)

    async def _subscribe(self, client: aiomqtt.Client, pattern: str) -> None:
        # QoS 0: a broker holds at most so many QoS 1 messages per client (Mosquitto: 1000)
        # and drops the rest, so a start-up flood of retained topics would lose devices. QoS
        # 0 to a connected client is not queued that way; what a lost connection loses, the
        # retained topics and our own store bring back on the next connect.
        if self._protocol == aiomqtt.ProtocolVersion.V5:
            await client.subscribe(pattern, options=SubscribeOptions(qos=0, noLocal=True))
        else:
            await client.subscribe(pattern, qos=0)

    def subscribe(self, pattern: str) -> None:
        """Subscribe now to a filter added to the subscription list while connected (it is
        subscribed on every later connect with the rest of the list)."""
        client = self._client
        if client is None:
            return
        task = asyncio.get_running_loop().create_task(self._subscribe(client, pattern))
        self._pending.add(task)
        task.add_done_callback(self._subscribe_done)

    def _subscribe_done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.warning("Subscribe failed: %s", task.exception())

    def _dispatch(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        data = payload if isinstance(payload, bytes) else str(payload or "").encode()
        topic = message.topic.value
        if self._own and self._is_own(topic, data):
            return
        try:
            self._on_message(IncomingMessage(topic, data, bool(message.retain)))
        except Exception:
            # One bad message must never stop the bridge from reading the next.
            _LOGGER.exception("Failed to handle message on %s", topic[:200])

    async def close(self) -> None:
        """Publish `offline` as a clean goodbye (the broker only sends the Will on a loss)."""
        client = self._client
        if client is None:
            return
        try:
            await asyncio.wait_for(
                client.publish(self._will_topic, const.OFFLINE, qos=1, retain=True), 2
            )
        except (aiomqtt.MqttError, TimeoutError) as err:
            _LOGGER.debug("Could not publish offline: %s", err)
