"""The one MQTT connection: reconnect with jittered backoff, Last Will, resubscribe,
republish on connect, and a filter so the bridge never takes its own publications as input.
TCP or WebSockets, with or without TLS; a failed connect is named (failures.py) in one log
line, and reported once the broker is reached again. With `mqtt.protocol: auto` it tries
MQTT 5 and falls back to 3.1.1 when the broker refuses 5 or never answers it, and keeps to
the protocol the broker answered in (across restarts too: protocol_memory.py).

Only this module imports aiomqtt (and paho). The rest of the bridge sees `IncomingMessage`
and `MqttLink.publish`, which never blocks (a HAP-python setter calls it inside a Home-app
request). What it changes of paho's reading, and why, is in docs/libraries.md.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt import _packet as paho_packets
from paho.mqtt.client import WebsocketConnectionError, connack_string
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .. import const
from ..config import TRANSPORT_WEBSOCKETS, MqttConfig
from ..display import MAX_SHOWN, clipped
from ..errors import NotConnectedError
from .failures import Attempt, ConnectFailure, Outage, ProtocolAnswer, classify, protocol_answer
from .protocol_memory import ProtocolMemory
from .tls import TlsFileError, tls_context

_LOGGER = logging.getLogger(__name__)
#: aiomqtt's and paho's own log (paho names a socket's failure only there).
_CLIENT_LOGGER = logging.getLogger(f"{__name__}.paho")

_V5, _V311 = aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311
_PROTOCOL_NAMES = {_V5: "5", _V311: "3.1.1"}
#: How many of our own recent publications we remember on MQTT 3.1.1 (no no-local there).
_OWN_PUBLICATIONS_MEMORY = 10_000
#: In-flight publications past which aiomqtt warns (a full republish is hundreds).
_PENDING_PUBLISH_WARNING = 10_000
#: Seconds to wait for the TCP/TLS/WebSockets connect and then for CONNACK.
_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class IncomingMessage:
    topic: str
    payload: bytes
    retain: bool


MessageHandler = Callable[[IncomingMessage], None]
ConnectHook = Callable[[], Awaitable[None]]
RecoveryHandler = Callable[[Outage], None]


_PAHO_TABLES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]


class SharedTableProperties(Properties):
    """paho's MQTT 5 properties of a packet it reads, read by paho's own code at a fraction
    of the cost. paho 2.2 builds its tables of the 27 property names and types anew for every
    packet, each MQTT 5 PUBLISH included, and clears a new object by looking every name up
    again: 10 of the 13 us it takes to decode a PUBLISH. Here the tables, which paho only
    reads, are built once, and clearing visits only the properties an object holds."""

    types = _PAHO_TABLES.types
    names = _PAHO_TABLES.names
    properties = _PAHO_TABLES.properties

    def __init__(self, packetType: int) -> None:  # paho's parameter name
        self.packetType = packetType

    def clear(self) -> None:
        for name in [name for name in vars(self) if name != "packetType"]:
            delattr(self, name)


def read_properties_cheaply() -> None:
    """Have paho read received packets' properties with `SharedTableProperties` (it makes
    them through its packet module's `Properties`; nothing else in this process reads MQTT)."""
    paho_packets.Properties = SharedTableProperties  # type: ignore[attr-defined]


def _code(rc: int | ReasonCode | None) -> int | None:
    """paho reports MQTT 5 reason codes as ReasonCode objects, 3.1.1 codes as ints."""
    return rc.value if isinstance(rc, ReasonCode) else rc


class _SocketErrors(logging.Filter):
    """paho tells why a socket failed only in a log line, with the error as its argument:
    a broker's TLS alert after the handshake (TLS 1.3 refuses a client certificate that
    way) is then a mere CONNACK timeout to aiomqtt. Keep the error to name the failure,
    and let the line through at DEBUG only, since the link logs the failure itself."""

    def __init__(self) -> None:
        super().__init__()
        self.last: OSError | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        errors = [arg for arg in args if isinstance(arg, OSError)]
        if not errors:
            # paho's packet lines at DEBUG quote whole topics, which anyone may make long.
            record.args = tuple(_clip(arg) for arg in args)
            return True
        self.last = errors[-1]
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return _CLIENT_LOGGER.isEnabledFor(logging.DEBUG)


def _clip(arg: object) -> object:
    if isinstance(arg, bytes):
        return arg if len(arg) <= MAX_SHOWN else arg[:MAX_SHOWN] + b"..."
    return clipped(arg) if isinstance(arg, str) else arg


def _attempt(err: aiomqtt.MqttError, socket_error: OSError | None) -> Attempt:
    """What a failed `async with Client` showed, for failures.classify."""
    if isinstance(err, MqttConnectError) and err.rc is not None:
        rc = err.rc
        words = str(rc) if isinstance(rc, ReasonCode) else connack_string(rc)
        return Attempt(f"CONNACK {_code(rc)}: {words}", connack=_code(rc))
    # aiomqtt raises its own error `from None`; the OS or TLS error stays as the context.
    cause = err.__context__
    if socket_error is not None and (cause is None or isinstance(cause, TimeoutError)):
        # Connected, then paho saw the socket fail while aiomqtt waited for CONNACK.
        return Attempt(str(socket_error), cause=socket_error, closed_by_broker=True)
    if isinstance(cause, TimeoutError):
        return Attempt(
            f"nothing within {_CONNECT_TIMEOUT:.0f} s",
            cause=cause,
            no_connack=_waited_for_connack(cause),
        )
    return Attempt(
        str(cause or err),
        cause=cause,
        websocket_refused=isinstance(cause, WebsocketConnectionError),
    )


def _waited_for_connack(timeout: TimeoutError) -> bool:
    """aiomqtt's wait for CONNACK (asyncio.wait_for) timed out, not the TCP connect: an
    asyncio timeout is raised from the cancellation of what it waited for."""
    return isinstance(timeout.__cause__, asyncio.CancelledError)


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
        on_recovered: RecoveryHandler | None = None,
        protocol_file: Path | None = None,
    ) -> None:
        """`protocol_file`: where `protocol: auto` keeps the protocol a broker needs."""
        read_properties_cheaply()
        self._config = config
        self._subscriptions = subscriptions
        self._will_topic = will_topic
        self._on_message = on_message
        self._on_recovered = on_recovered
        self._reconnect_max = reconnect_max
        self._connect_hooks: list[ConnectHook] = []
        self._client: aiomqtt.Client | None = None
        self._protocol = _V311 if config.protocol == "3.1.1" else _V5
        # protocol: auto. Each round of connect attempts starts with the protocol the broker
        # last answered in, and may try the other one at once (_other_protocol).
        self._preferred = self._protocol
        self._connected_with: set[aiomqtt.ProtocolVersion] = set()
        self._protocol_lines: set[str] = set()
        self._memory = (
            ProtocolMemory(protocol_file, f"{config.host}:{config.port}")
            if protocol_file is not None and config.protocol == "auto"
            else None
        )
        self._client_id = config.client_id or f"mqtt-hk-bridge-{uuid.uuid4().hex[:8]}"
        self._pending: set[asyncio.Task[None]] = set()
        #: Messages are handled as paho reads them (`_incoming_queue`) once the connect
        #: hooks are done; until then they wait in aiomqtt's queue, as before.
        self._handing_over = False
        self._own: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        self._socket_errors = _SocketErrors()
        # Failed connect attempts since the last connection: the last failure, how many,
        # and since when (monotonic: the start of the first of them).
        self._failure: ConnectFailure | None = None
        self._failed_attempts = 0
        self._failing_since = self._attempt_started = 0.0

    @property
    def connected(self) -> bool:
        return self._client is not None

    @property
    def protocol(self) -> str:
        return _PROTOCOL_NAMES[self._protocol]

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
        if self._protocol != _V5:
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
        websockets = config.transport == TRANSPORT_WEBSOCKETS
        client = aiomqtt.Client(
            config.host,
            config.port,
            username=config.username,
            password=config.password,
            logger=_CLIENT_LOGGER,
            identifier=self._client_id,
            protocol=self._protocol,
            will=aiomqtt.Will(self._will_topic, const.OFFLINE, qos=1, retain=True),
            keepalive=config.keepalive,
            transport=config.transport,
            websocket_path=config.path if websockets else None,
            tls_context=tls_context(config.tls) if config.tls is not None else None,
            timeout=_CONNECT_TIMEOUT,
            queue_type=self._incoming_queue(),
        )
        # Republishing a whole mirror after a connect puts hundreds of QoS 1 publications in
        # flight at once; that is expected, not worth aiomqtt's warning at its default of 10.
        client.pending_calls_threshold = _PENDING_PUBLISH_WARNING
        return client

    def _incoming_queue(self) -> type[asyncio.Queue[aiomqtt.Message]]:
        """aiomqtt's queue of incoming messages, made to hand each message on as paho reads
        it. Taking messages from aiomqtt's iterator costs a task, an `asyncio.wait` and
        three more loop turns per message: in a storm, a fifth of a message's CPU. Order is
        kept: a message is handed on at once only when none waits in the queue."""
        dispatch, handing_over = self._dispatch, self._is_handing_over

        class HandOver(asyncio.Queue[aiomqtt.Message]):
            def put_nowait(self, item: aiomqtt.Message) -> None:
                if handing_over() and self.empty():
                    dispatch(item)
                else:
                    super().put_nowait(item)

        return HandOver

    def _is_handing_over(self) -> bool:
        return self._handing_over

    async def run(self) -> None:
        """Connect, serve, and reconnect after any loss, until cancelled."""
        if self._config.tls is not None and self._config.tls.insecure:
            _LOGGER.warning(
                "mqtt.tls.insecure is true: the broker's certificate is not checked against "
                "mqtt.host, so anyone with a certificate from a trusted CA can pose as the "
                "broker"
            )
        if self._memory is not None and self._memory.load() == _PROTOCOL_NAMES[_V311]:
            self._preferred = self._protocol = _V311
            _LOGGER.info(
                "Using MQTT 3.1.1 first: broker %s:%s last connected with it (kept in %s; "
                "delete that file to try MQTT 5 first)",
                self._config.host,
                self._config.port,
                self._memory.path,
            )
        _CLIENT_LOGGER.addFilter(self._socket_errors)
        try:
            await self._keep_connected()
        finally:
            _CLIENT_LOGGER.removeFilter(self._socket_errors)

    async def _keep_connected(self) -> None:
        delay = const.DEFAULT_RECONNECT_MIN
        # This round has tried the other protocol already (at most once: no loop between two).
        switched = False
        while True:
            if not switched:
                self._protocol = self._preferred
                self._attempt_started = time.monotonic()
            self._socket_errors.last = None
            connected = False
            try:
                async with self._make_client() as client:
                    connected = True
                    delay = const.DEFAULT_RECONNECT_MIN
                    self._connected_with_protocol()
                    await self._serve(client)
            except TlsFileError as err:
                self._connect_failed(Attempt(str(err), cause=err))
            except aiomqtt.MqttError as err:
                if not connected:
                    attempt = _attempt(err, self._socket_errors.last)
                    if self._other_protocol(attempt, switched=switched):
                        switched = True
                        continue
                    self._connect_failed(attempt)
                else:
                    cause = self._socket_errors.last
                    _LOGGER.warning(
                        "MQTT connection to %s:%s lost: %s%s",
                        self._config.host,
                        self._config.port,
                        err,
                        f" ({cause})" if cause is not None else "",
                    )
            except Exception:
                # Whatever goes wrong, the bridge must not be left without its broker.
                _LOGGER.exception("MQTT connection failed unexpectedly; reconnecting")
            finally:
                self._client = None
            switched = False
            # Full jitter keeps a fleet of bridges from reconnecting in lockstep.
            await asyncio.sleep(random.uniform(delay / 2, delay))  # noqa: S311
            delay = min(delay * 2, self._reconnect_max)

    def _other_protocol(self, attempt: Attempt, *, switched: bool) -> bool:
        """With `protocol: auto`, whether to try the other protocol at once after `attempt`
        (not when this round has `switched` to it already).

        Yes when the broker refused this protocol version, or gave no answer to an MQTT 5
        CONNECT that has not connected before: brokers without MQTT 5 may never answer it.
        A broker that answered (refused a login, say) keeps the protocol it answered in.
        """
        if self._config.protocol != "auto":
            return False
        answer = protocol_answer(self._config, attempt)
        if answer == ProtocolAnswer.SPOKEN:
            self._preferred = self._protocol
            return False
        tried, other = self._protocol, _V311 if self._protocol == _V5 else _V5
        refused = answer == ProtocolAnswer.REFUSED
        # Silence from a broker that has connected with MQTT 5 is an outage, not a version.
        silent = (
            answer == ProtocolAnswer.SILENT and tried == _V5 and _V5 not in self._connected_with
        )
        if switched or not (refused or silent):
            return False
        if refused:
            line = (
                f"Broker refuses MQTT {_PROTOCOL_NAMES[tried]}; using MQTT {_PROTOCOL_NAMES[other]}"
            )
        else:
            line = (
                f"MQTT broker {self._config.host}:{self._config.port} gave no answer to an "
                f"MQTT 5 CONNECT ({attempt.text}); trying MQTT 3.1.1 (brokers without MQTT 5, "
                "such as RabbitMQ before 3.13, never answer it)"
            )
        # Once each: a broker that answers neither protocol has each round try both.
        first = line not in self._protocol_lines
        self._protocol_lines.add(line)
        _LOGGER.log(logging.INFO if first else logging.DEBUG, "%s", line)
        self._protocol = other
        return True

    def _connected_with_protocol(self) -> None:
        """Keep to the protocol that connected: for reconnects and, kept on disk, restarts."""
        self._connected_with.add(self._protocol)
        self._preferred = self._protocol
        if self._memory is not None:
            self._memory.remember(self.protocol)

    def _connect_failed(self, attempt: Attempt) -> None:
        """One line per failure, at its first attempt; repeats of the same go to DEBUG."""
        failure = classify(self._config, attempt)
        if self._failed_attempts == 0:
            self._failing_since = self._attempt_started
        self._failed_attempts += 1
        host, port = self._config.host, self._config.port
        if failure == self._failure:
            _LOGGER.debug(
                "MQTT connection to %s:%s failed again (attempt %d): %s",
                host,
                port,
                self._failed_attempts,
                failure.reason,
            )
            return
        self._failure = failure
        _LOGGER.log(
            logging.WARNING if failure.transient else logging.ERROR,
            "MQTT connection to %s:%s failed: %s (retrying, up to %s s apart)",
            host,
            port,
            failure,
            f"{self._reconnect_max:g}",
        )

    def _recovered(self) -> None:
        failure, attempts = self._failure, self._failed_attempts
        self._failure, self._failed_attempts = None, 0
        if failure is None or self._on_recovered is None:
            return
        seconds = round(time.monotonic() - self._failing_since, 1)
        self._on_recovered(Outage(failure, attempts, seconds))

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
        self._recovered()
        for hook in self._connect_hooks:
            await hook()
        # What came during the hooks is taken from the queue; later messages are handed
        # on as they are read, and the iterator ends with MqttError when the link is lost.
        self._handing_over = True
        try:
            async for message in client.messages:
                self._dispatch(message)
        finally:
            self._handing_over = False

    async def _subscribe(self, client: aiomqtt.Client, pattern: str) -> None:
        # QoS 0: a broker holds at most so many QoS 1 messages per client (Mosquitto: 1000)
        # and drops the rest, so a start-up flood of retained topics would lose devices. QoS
        # 0 to a connected client is not queued that way; what a lost connection loses, the
        # retained topics and our own store bring back on the next connect.
        if self._protocol == _V5:
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
