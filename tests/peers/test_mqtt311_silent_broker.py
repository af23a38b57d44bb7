"""The MQTT 3.1.1 test broker that is silent to MQTT 5, driven by aiomqtt (3.1.1 and 5) and
by raw sockets where a test needs bytes no client library would send or must see that
nothing at all comes back."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Iterator

import aiomqtt
import pytest

from tests.peers.mqtt311_silent_broker import (
    CONNACK,
    CONNECT,
    DISCONNECT,
    MQTT_5,
    MQTT_311,
    PINGREQ,
    PINGRESP,
    SilentMqtt5Broker,
    encode_string,
    packet,
    topic_matches,
)
from tests.support.wait import wait_for

#: How long "no answer" is watched for; RabbitMQ waits 10 s before it closes.
QUIET = 1.0


@pytest.fixture
def broker() -> Iterator[SilentMqtt5Broker]:
    with SilentMqtt5Broker() as running:
        yield running


def connect_packet(level: int, client_id: str, *, will: tuple[str, bytes] | None = None) -> bytes:
    """A CONNECT with a clean session (and a Will for 3.1.1), keep-alive 30 s."""
    flags, payload = 0x02, encode_string(client_id)
    if will is not None:
        assert level == MQTT_311
        flags |= 0x04
        payload += encode_string(will[0]) + struct.pack("!H", len(will[1])) + will[1]
    properties = b"\x00" if level == MQTT_5 else b""  # MQTT 5: an empty property list
    header = encode_string("MQTT") + bytes([level, flags]) + struct.pack("!H", 30)
    return packet(CONNECT, 0, header + properties + payload)


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def expect(self, data: bytes) -> None:
        assert await asyncio.wait_for(self.reader.readexactly(len(data)), 5) == data

    async def nothing_within(self, seconds: float) -> bool:
        """True when no byte came and the connection stayed open for `seconds`."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"expected silence, got {data!r}")


@pytest.fixture
async def raw(broker: SilentMqtt5Broker) -> AsyncIterator[RawClient]:
    reader, writer = await asyncio.open_connection(broker.host, broker.port)
    yield RawClient(reader, writer)
    writer.close()


async def client(broker: SilentMqtt5Broker, identifier: str) -> aiomqtt.Client:
    """An aiomqtt client (MQTT 3.1.1, its default), connected."""
    connected = aiomqtt.Client(broker.host, broker.port, identifier=identifier)
    await connected.__aenter__()
    return connected


async def next_message(mqtt: aiomqtt.Client) -> aiomqtt.Message:
    async def first() -> aiomqtt.Message:
        async for message in mqtt.messages:
            return message
        raise AssertionError("the message stream ended")

    return await asyncio.wait_for(first(), 5)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("HomeKit/#", "HomeKit/TEST/Switch/On", True),
        ("HomeKit/#", "HomeKit", True),
        ("HomeKit/+/Switch/On", "HomeKit/TEST/Switch/On", True),
        ("HomeKit/+/Switch/On", "HomeKit/TEST/Switch/On/set", False),
        ("HomeKit/+", "HomeKit/TEST/Switch", False),
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("#", "$SYS/broker", False),
        ("+/broker", "$SYS/broker", False),
        ("$SYS/#", "$SYS/broker", True),
    ],
)
def test_topic_filters_match_as_the_spec_says(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_matches(topic_filter, topic) is matches


async def test_an_mqtt5_connect_gets_no_answer_and_stays_open(
    broker: SilentMqtt5Broker, raw: RawClient
) -> None:
    await raw.send(connect_packet(MQTT_5, "five"))
    assert await raw.nothing_within(QUIET)
    assert broker.connects == [("five", MQTT_5)]
    assert broker.open_connections == 1


async def test_an_mqtt5_client_times_out_waiting_for_connack(broker: SilentMqtt5Broker) -> None:
    five = aiomqtt.Client(
        broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5, timeout=QUIET
    )
    with pytest.raises(aiomqtt.MqttError, match="timed out"):
        await five.__aenter__()
    assert broker.levels_of(five.identifier) == [MQTT_5]


async def test_another_protocol_level_is_refused_and_closed(
    broker: SilentMqtt5Broker, raw: RawClient
) -> None:
    await raw.send(connect_packet(3, "old"))
    await raw.expect(packet(CONNACK, 0, bytes([0, 1])))
    assert await asyncio.wait_for(raw.reader.read(1), 5) == b""


async def test_a_311_connect_is_accepted_and_pinged(raw: RawClient) -> None:
    await raw.send(connect_packet(MQTT_311, "four"))
    await raw.expect(packet(CONNACK, 0, bytes([0, 0])))
    await raw.send(packet(PINGREQ, 0, b""))
    await raw.expect(packet(PINGRESP, 0, b""))


async def test_publications_reach_matching_subscriptions(broker: SilentMqtt5Broker) -> None:
    sub = await client(broker, "sub")
    pub = await client(broker, "pub")
    try:
        await sub.subscribe("HomeKit/+/Switch/On", qos=1)
        await sub.subscribe("HomeKit/#", qos=0)  # overlapping: one delivery, the higher QoS
        await pub.publish("HomeKit/TEST/Switch/On", b"1", qos=1, retain=True)
        message = await next_message(sub)
        assert (message.topic.value, message.payload, message.qos) == (
            "HomeKit/TEST/Switch/On",
            b"1",
            1,
        )
        assert not message.retain  # to an established subscription, RETAIN is 0
        await pub.publish("HomeKit/TEST/Switch/On/set", b"0", qos=0)
        message = await next_message(sub)
        assert (message.topic.value, message.payload, message.qos) == (
            "HomeKit/TEST/Switch/On/set",
            b"0",
            0,
        )
        assert broker.connects == [("sub", MQTT_311), ("pub", MQTT_311)]
        assert broker.levels_of("pub") == [MQTT_311]
    finally:
        await pub.__aexit__(None, None, None)
        await sub.__aexit__(None, None, None)


async def test_retained_messages_go_to_exact_subscriptions_only(
    broker: SilentMqtt5Broker,
) -> None:
    pub = await client(broker, "pub")
    await pub.publish("HomeKit/bridge/state", b"online", qos=1, retain=True)
    await pub.publish("HomeKit/gone", b"x", qos=1, retain=True)
    await pub.publish("HomeKit/gone", b"", qos=1, retain=True)  # clears it
    sub = await client(broker, "sub")
    try:
        await sub.subscribe("HomeKit/#")  # like RabbitMQ: no retained message for this
        await sub.subscribe("HomeKit/gone")
        await sub.subscribe("HomeKit/bridge/state")
        message = await next_message(sub)
        assert (message.topic.value, message.payload, message.retain) == (
            "HomeKit/bridge/state",
            b"online",
            True,
        )
        await pub.publish("HomeKit/marker", b"m", qos=1)
        assert (await next_message(sub)).topic.value == "HomeKit/marker"  # nothing between
    finally:
        await pub.__aexit__(None, None, None)
        await sub.__aexit__(None, None, None)


async def test_the_will_goes_out_when_a_client_vanishes(broker: SilentMqtt5Broker) -> None:
    sub = await client(broker, "sub")
    try:
        await sub.subscribe("will/#")
        for name, say_goodbye in [("polite", True), ("vanished", False)]:
            reader, writer = await asyncio.open_connection(broker.host, broker.port)
            writer.write(connect_packet(MQTT_311, name, will=(f"will/{name}", b"offline")))
            assert await asyncio.wait_for(reader.readexactly(4), 5) == packet(
                CONNACK, 0, bytes([0, 0])
            )
            if say_goodbye:
                writer.write(packet(DISCONNECT, 0, b""))
                await writer.drain()
            writer.close()
        message = await next_message(sub)
        assert (message.topic.value, message.payload) == ("will/vanished", b"offline")
    finally:
        await sub.__aexit__(None, None, None)


async def test_a_newer_connection_takes_the_client_id_over(
    broker: SilentMqtt5Broker, raw: RawClient
) -> None:
    await raw.send(connect_packet(MQTT_311, "same"))
    await raw.expect(packet(CONNACK, 0, bytes([0, 0])))
    newer = await client(broker, "same")
    try:
        assert await asyncio.wait_for(raw.reader.read(1), 5) == b""
    finally:
        await newer.__aexit__(None, None, None)


async def test_a_refusal_code_answers_311_connects(
    broker: SilentMqtt5Broker, raw: RawClient
) -> None:
    broker.refuse_code = 5  # not authorised
    await raw.send(connect_packet(MQTT_311, "refused"))
    await raw.expect(packet(CONNACK, 0, bytes([0, 5])))
    assert await asyncio.wait_for(raw.reader.read(1), 5) == b""
    broker.refuse_code = None
    accepted = await client(broker, "accepted")
    await accepted.__aexit__(None, None, None)
    assert broker.protocol_levels == [MQTT_311, MQTT_311]


async def test_dropping_connections_ends_every_session(broker: SilentMqtt5Broker) -> None:
    connected = await client(broker, "dropped")
    await wait_for(lambda: broker.open_connections == 1, message="one connection")
    broker.drop_connections()
    with pytest.raises(aiomqtt.MqttError):
        await next_message(connected)
    assert broker.open_connections == 0
