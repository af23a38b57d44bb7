"""A small MQTT 3.1.1 broker that says nothing at all to an MQTT 5 CONNECT, the way
RabbitMQ's MQTT plugin before 3.13 behaves ("cannot parse a frame" in its log, no CONNACK).

    with SilentMqtt5Broker() as broker:      # listens on 127.0.0.1:broker.port
        ...                                  # point clients at it
        broker.connects                      # (client id, protocol level) of every CONNECT
        broker.levels_of("bridge")           # the protocol levels one client offered
        broker.refuse_code = 5               # answer 3.1.1 CONNECTs with this return code
        broker.drop_connections()            # close every client connection (no Will)

Written from the MQTT 3.1.1 specification (OASIS, 2014), enough for the bridge and a test
client: CONNECT/CONNACK (clean sessions only: "session present" is always 0), PUBLISH at
QoS 0 and 1 with PUBACK, SUBSCRIBE/SUBACK (QoS granted up to 1), UNSUBSCRIBE/UNSUBACK,
PINGREQ/PINGRESP, DISCONNECT, topic filters with `+` and `#` (not matching `$` topics at
their first level), the Will of a connection lost without DISCONNECT, and a client id
taken over by a newer connection. Retained messages are kept and, like RabbitMQ, sent only
to subscriptions without wildcards. Not implemented: QoS 2 (such a PUBLISH closes the
connection), persistent sessions, keep-alive enforcement, redelivery.

It runs its own event loop on a thread, so a test may block (a bridge started with a
synchronous wait) while the broker keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

# Control packet types (3.1.1 section 2.2.1).
CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14

PROTOCOL_NAME = b"MQTT"
MQTT_311 = 4
MQTT_5 = 5
#: CONNACK return code for a protocol level the server does not support (3.2.2.3).
UNACCEPTABLE_PROTOCOL_VERSION = 1
SUBACK_FAILURE = 0x80
#: Larger packets close the connection: a test broker stays bounded.
MAX_PACKET = 1 << 20


class ProtocolViolation(Exception):
    """The client sent something this broker does not accept; its connection is closed."""


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class Session:
    client_id: str
    writer: asyncio.StreamWriter
    will: Message | None
    #: Topic filter -> granted QoS.
    subscriptions: dict[str, int] = field(default_factory=dict)
    next_packet_id: int = 1

    def packet_id(self) -> int:
        packet_id = self.next_packet_id
        self.next_packet_id = packet_id % 0xFFFF + 1
        return packet_id


def topic_matches(topic_filter: str, topic: str) -> bool:
    """3.1.1 section 4.7: `+` one level, `#` this level and all below; a filter starting
    with a wildcard never matches a topic starting with `$`."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    levels, filter_levels = topic.split("/"), topic_filter.split("/")
    for index, part in enumerate(filter_levels):
        if part == "#":
            return True
        if index >= len(levels) or part not in ("+", levels[index]):
            return False
    return len(levels) == len(filter_levels)


def has_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


def packet(packet_type: int, flags: int, body: bytes) -> bytes:
    """Fixed header (type, flags, remaining length as a variable byte integer) and body."""
    header = bytearray([packet_type << 4 | flags])
    length = len(body)
    while True:
        byte, length = length % 128, length // 128
        header.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(header) + body


def encode_string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def publish_packet(message: Message, qos: int, packet_id: int, retain: bool) -> bytes:
    body = encode_string(message.topic)
    if qos:
        body += struct.pack("!H", packet_id)
    return packet(PUBLISH, qos << 1 | int(retain), body + message.payload)


class _Reader:
    """Fields of one packet's body, in order."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.offset = 0

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.body):
            raise ProtocolViolation("packet shorter than its fields")
        data = self.body[self.offset : self.offset + size]
        self.offset += size
        return data

    def byte(self) -> int:
        return self.take(1)[0]

    def uint16(self) -> int:
        return int(struct.unpack("!H", self.take(2))[0])

    def binary(self) -> bytes:
        return self.take(self.uint16())

    def string(self) -> str:
        try:
            return self.binary().decode("utf-8")
        except UnicodeDecodeError as err:
            raise ProtocolViolation("a string is not UTF-8") from err

    def variable_integer(self) -> int:
        value = 0
        for shift in range(0, 28, 7):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise ProtocolViolation("variable byte integer longer than four bytes")

    def rest(self) -> bytes:
        data = self.body[self.offset :]
        self.offset = len(self.body)
        return data

    @property
    def done(self) -> bool:
        return self.offset >= len(self.body)


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """(type, flags, body) of the next packet; IncompleteReadError at the end."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 21:
            raise ProtocolViolation("remaining length longer than four bytes")
    if length > MAX_PACKET:
        raise ProtocolViolation(f"packet of {length} bytes")
    return first >> 4, first & 0x0F, await reader.readexactly(length)


class SilentMqtt5Broker:
    host = "127.0.0.1"

    def __init__(self) -> None:
        self.port = 0
        #: (client id, protocol level) of each CONNECT received, in order (4: 3.1.1, 5: MQTT 5).
        self.connects: list[tuple[str, int]] = []
        #: When set, every 3.1.1 CONNECT is answered with this return code and closed.
        self.refuse_code: int | None = None
        self._sessions: dict[str, Session] = {}
        self._retained: dict[str, Message] = {}
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None

    # -- running on its own thread -------------------------------------------------------

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="silent-mqtt5-broker", daemon=True)
        self._thread.start()
        if not self._started.wait(10) or self._server is None:
            raise AssertionError("the MQTT 3.1.1 test broker did not start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._server = await asyncio.start_server(self._connection, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            self._server.close()
            self._close_all()
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=5)
            await self._server.wait_closed()

    @property
    def protocol_levels(self) -> list[int]:
        """The protocol level of each CONNECT received, in order."""
        return [level for _client_id, level in self.connects]

    def levels_of(self, client_id: str) -> list[int]:
        """The protocol level of each CONNECT from `client_id`, in order."""
        return [level for each, level in self.connects if each == client_id]

    @property
    def open_connections(self) -> int:
        """Client connections open right now, whether or not they got a CONNACK."""
        return len(self._writers)

    def drop_connections(self, timeout: float = 5.0) -> None:
        """Close every client connection at once, as a broker restart would (no Wills)."""
        assert self._loop is not None
        done = threading.Event()

        def drop() -> None:
            self._close_all()
            done.set()

        self._loop.call_soon_threadsafe(drop)
        if not done.wait(timeout):
            raise AssertionError("the MQTT 3.1.1 test broker did not drop its connections")

    def _close_all(self) -> None:
        for session in self._sessions.values():
            session.will = None
        for writer in list(self._writers):
            writer.close()

    # -- one connection ------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        session: Session | None = None
        try:
            packet_type, _flags, body = await read_packet(reader)
            if packet_type != CONNECT:
                raise ProtocolViolation("the first packet is not CONNECT")
            session = self._connect(_Reader(body), writer)
            if session is None:
                # MQTT 5 (or a refusal): read and drop whatever comes until the client leaves.
                while await reader.read(4096):
                    pass
                return
            while True:
                packet_type, flags, body = await read_packet(reader)
                if packet_type == DISCONNECT:
                    session.will = None
                    return
                self._handle(session, packet_type, flags, _Reader(body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolViolation):
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(handler)
            if session is not None and self._sessions.get(session.client_id) is session:
                del self._sessions[session.client_id]
                if session.will is not None:
                    self._publish(session.will)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _connect(self, fields: _Reader, writer: asyncio.StreamWriter) -> Session | None:
        """Answer a CONNECT (3.1): the new session, or None when there is none."""
        name, level = fields.binary(), fields.byte()
        if name != PROTOCOL_NAME or level not in (MQTT_311, MQTT_5):
            self.connects.append(("", level))
            writer.write(packet(CONNACK, 0, bytes([0, UNACCEPTABLE_PROTOCOL_VERSION])))
            writer.close()
            return None
        flags = fields.byte()
        fields.uint16()  # keep alive: not enforced
        if level == MQTT_5:
            fields.take(fields.variable_integer())  # CONNECT properties (MQTT 5, 3.1.2.11)
            self.connects.append((fields.string(), level))
            return None  # no CONNACK, no close: what RabbitMQ 3.10 does
        client_id = fields.string()
        self.connects.append((client_id, level))
        will = None
        if flags & 0x04:
            will_qos = flags >> 3 & 0x03
            will = Message(fields.string(), fields.binary(), will_qos, bool(flags & 0x20))
        if flags & 0x80:
            fields.string()  # user name: any is accepted
        if flags & 0x40:
            fields.binary()  # password
        if self.refuse_code is not None:
            writer.write(packet(CONNACK, 0, bytes([0, self.refuse_code])))
            writer.close()
            return None
        previous = self._sessions.get(client_id)
        if previous is not None:
            previous.writer.close()  # taken over (3.1.4); its Will goes out as it ends
        session = Session(client_id, writer, will)
        self._sessions[client_id] = session
        writer.write(packet(CONNACK, 0, bytes([0, 0])))
        return session

    def _handle(self, session: Session, packet_type: int, flags: int, fields: _Reader) -> None:
        writer = session.writer
        if packet_type == PUBLISH:
            qos, retain = flags >> 1 & 0x03, bool(flags & 0x01)
            if qos > 1:
                raise ProtocolViolation("QoS 2 is not implemented")
            topic = fields.string()
            if qos:
                writer.write(packet(PUBACK, 0, struct.pack("!H", fields.uint16())))
            self._publish(Message(topic, fields.rest(), qos, retain))
        elif packet_type == SUBSCRIBE:
            packet_id, granted, new_filters = fields.uint16(), bytearray(), []
            while not fields.done:
                topic_filter, requested = fields.string(), fields.byte() & 0x03
                if not topic_filter:
                    granted.append(SUBACK_FAILURE)
                    continue
                session.subscriptions[topic_filter] = min(requested, 1)
                granted.append(min(requested, 1))
                new_filters.append(topic_filter)
            writer.write(packet(SUBACK, 0, struct.pack("!H", packet_id) + bytes(granted)))
            for topic_filter in new_filters:
                retained = self._retained.get(topic_filter)
                if retained is not None and not has_wildcard(topic_filter):
                    qos = min(retained.qos, session.subscriptions[topic_filter])
                    self._deliver(session, retained, qos, retain=True)
        elif packet_type == UNSUBSCRIBE:
            packet_id = fields.uint16()
            while not fields.done:
                session.subscriptions.pop(fields.string(), None)
            writer.write(packet(UNSUBACK, 0, struct.pack("!H", packet_id)))
        elif packet_type == PINGREQ:
            writer.write(packet(PINGRESP, 0, b""))
        elif packet_type != PUBACK:  # a client's PUBACK for our QoS 1 delivery: nothing to do
            raise ProtocolViolation(f"packet type {packet_type} is not implemented")

    def _publish(self, message: Message) -> None:
        """Keep (or clear, with an empty payload) a retained message, and route it."""
        if message.retain:
            if message.payload:
                self._retained[message.topic] = message
            else:
                self._retained.pop(message.topic, None)
        for session in self._sessions.values():
            granted = [
                qos
                for topic_filter, qos in session.subscriptions.items()
                if topic_matches(topic_filter, message.topic)
            ]
            if granted:
                # Once per client, at the highest QoS its matching subscriptions were granted;
                # the RETAIN flag is 0 on a delivery to an established subscription (3.3.1.3).
                self._deliver(session, message, min(message.qos, max(granted)), retain=False)

    @staticmethod
    def _deliver(session: Session, message: Message, qos: int, *, retain: bool) -> None:
        packet_id = session.packet_id() if qos else 0
        session.writer.write(publish_packet(message, qos, packet_id, retain))
