"""The accessory's CoAP side: the resources a HAP-over-Thread accessory serves, the HAP
PDUs run against its database, events to subscribed controllers, and the UDP endpoint.

    POST /0  identify (unpaired accessories only)
    POST /1  pair-setup M1-M6 (TLV8 bodies)
    POST /2  pair-verify M1-M4; the controller's address is its session from then on
    POST /   HAP PDUs sealed with the session keys; 4.04 when there is no such session
    PUT  /   (to the controller) events: sealed records [0, iid u16, length u16, value TLV]
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiocoap import Context, Message, resource
from aiocoap.error import Error as CoapError
from aiocoap.numbers.codes import Code
from cryptography.exceptions import InvalidTag

from tests.peers.coap.database import AccessoryDatabase, Characteristic, Value, hap_uuid
from tests.peers.coap.pairing import (
    AccessoryIdentity,
    PairingsRequests,
    PairingStore,
    PairSetup,
    PairVerify,
)
from tests.peers.coap.session import SecureSession
from tests.peers.coap.wire import PduCodec, PduRequest
from tests.peers.pdu_codes import OpCode, PduParam, PduStatus
from tests.peers.tlv8 import Tlv8

_LOGGER = logging.getLogger(__name__)

EVENT_TIMEOUT = 5.0  # seconds an event PUT may wait for the controller's acknowledgement
_IDENTIFY = hap_uuid("14")
_PAIRINGS = hap_uuid("50")


@dataclass(eq=False)
class ControllerConnection:
    """A verified controller at one address: its session, subscriptions and event queue."""

    session: SecureSession
    client: Any  # the aiocoap remote the controller's requests come from
    subscriptions: set[int] = field(default_factory=set)
    pairings_reply: bytes = b""  # the M2 the next read of Pairings returns
    events: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    sender: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class PduResult:
    status: PduStatus
    body: bytes = b""
    removed_controllers: tuple[str, ...] = ()


class HapProcessor:
    """Runs one controller's HAP PDUs against the database, as a HAP-BLE accessory would:
    reads, writes (checked), subscriptions, signatures and the whole-database read."""

    def __init__(
        self,
        database: AccessoryDatabase,
        pairings: PairingsRequests,
        on_identify: Callable[[], None],
    ) -> None:
        self._database = database
        self._pairings = pairings
        self._on_identify = on_identify
        self.writes: list[tuple[int, int, Value]] = []  # (aid, iid, value) as written
        self._handlers: dict[int, Callable[[ControllerConnection, PduRequest], PduResult]] = {
            OpCode.DATABASE_READ: self._read_database,
            OpCode.CHARACTERISTIC_SIGNATURE_READ: self._read_characteristic_signature,
            OpCode.SERVICE_SIGNATURE_READ: self._read_service_signature,
            OpCode.CHARACTERISTIC_READ: self._read,
            OpCode.CHARACTERISTIC_WRITE: self._write,
            OpCode.SUBSCRIBE: self._subscribe,
            OpCode.UNSUBSCRIBE: self._unsubscribe,
        }

    def process(self, connection: ControllerConnection, body: bytes) -> tuple[bytes, list[str]]:
        """The response body (one response PDU per request PDU, in order) and the
        controllers whose pairing a Pairings write removed."""
        try:
            requests = PduCodec.decode_requests(body)
        except ValueError:
            return PduCodec.encode_response(0, PduStatus.INVALID_REQUEST), []
        responses = []
        removed: list[str] = []
        for request in requests:
            handler = self._handlers.get(request.opcode)
            if not request.is_plain_request:
                result = PduResult(PduStatus.INVALID_REQUEST)
            elif handler is None:
                result = PduResult(PduStatus.UNSUPPORTED_PDU)
            else:
                result = handler(connection, request)
            responses.append(PduCodec.encode_response(request.tid, result.status, result.body))
            removed += result.removed_controllers
        return b"".join(responses), removed

    def _characteristic(self, request: PduRequest) -> Characteristic | PduResult:
        char = self._database.characteristic(request.iid)
        return char if char is not None else PduResult(PduStatus.INVALID_INSTANCE_ID)

    def _read_database(self, _: ControllerConnection, __: PduRequest) -> PduResult:
        return PduResult(PduStatus.SUCCESS, self._database.tlv())

    def _read_characteristic_signature(
        self, _: ControllerConnection, request: PduRequest
    ) -> PduResult:
        char = self._characteristic(request)
        if isinstance(char, PduResult):
            return char
        service = self._database.service_of(char.iid)
        assert service is not None
        return PduResult(PduStatus.SUCCESS, char.signature(service))

    def _read_service_signature(self, _: ControllerConnection, request: PduRequest) -> PduResult:
        service = self._database.service(request.iid)
        if service is None:
            return PduResult(PduStatus.INVALID_INSTANCE_ID)
        return PduResult(PduStatus.SUCCESS, service.signature())

    def _read(self, connection: ControllerConnection, request: PduRequest) -> PduResult:
        char = self._characteristic(request)
        if isinstance(char, PduResult):
            return char
        if not char.readable():
            return PduResult(PduStatus.INVALID_REQUEST)
        if char.type == _PAIRINGS:
            # Only the reply to a Pairings write can be read (the Nanoleaf recording has no
            # value for Pairings: its read failed).
            reply, connection.pairings_reply = connection.pairings_reply, b""
            if not reply:
                return PduResult(PduStatus.INVALID_REQUEST)
            return PduResult(PduStatus.SUCCESS, Tlv8.encode([(PduParam.VALUE, reply)]))
        return PduResult(PduStatus.SUCCESS, char.value_tlv())

    def _write(self, connection: ControllerConnection, request: PduRequest) -> PduResult:
        char = self._characteristic(request)
        if isinstance(char, PduResult):
            return char
        try:
            raw = Tlv8.as_dict(request.body)[PduParam.VALUE]
        except (ValueError, KeyError):
            return PduResult(PduStatus.INVALID_REQUEST)
        if not char.writable():
            return PduResult(PduStatus.INVALID_REQUEST)
        aid = self._database.aid_of(char.iid)
        if char.type == _PAIRINGS:
            reply, removed = self._pairings.handle(connection.session.controller_id, raw)
            connection.pairings_reply = reply
            return PduResult(PduStatus.SUCCESS, removed_controllers=tuple(removed))
        try:
            value = char.format.unpack(raw)
            self._database.set_value(char.iid, value, origin=connection)
        except ValueError as err:
            _LOGGER.info("refused write %d.%d: %s", aid, char.iid, err)
            return PduResult(PduStatus.INVALID_REQUEST)
        self.writes.append((aid, char.iid, char.value))
        if char.type == _IDENTIFY and value:
            self._on_identify()
        return PduResult(PduStatus.SUCCESS)

    def _subscribe(self, connection: ControllerConnection, request: PduRequest) -> PduResult:
        char = self._characteristic(request)
        if isinstance(char, PduResult):
            return char
        if not char.notifies():
            return PduResult(PduStatus.INVALID_REQUEST)
        connection.subscriptions.add(char.iid)
        return PduResult(PduStatus.SUCCESS)

    def _unsubscribe(self, connection: ControllerConnection, request: PduRequest) -> PduResult:
        char = self._characteristic(request)
        if isinstance(char, PduResult):
            return char
        connection.subscriptions.discard(char.iid)
        return PduResult(PduStatus.SUCCESS)


class _PostResource(resource.Resource):  # type: ignore[misc]  # aiocoap is untyped
    def __init__(self, handler: Callable[[Message], Message]) -> None:
        super().__init__()
        self._handler = handler

    async def render_post(self, request: Message) -> Message:
        return self._handler(request)


class AccessoryServer:
    """Pairing, sessions and HAP for one accessory, behind the four CoAP resources.

    Sessions are keyed by the controller's address (aiohomekit keeps one socket per
    session). `context` gives the aiocoap context events are sent from, None when silent.
    """

    def __init__(
        self,
        database: AccessoryDatabase,
        identity: AccessoryIdentity,
        setup_code: str,
        *,
        context: Callable[[], Context | None],
        on_pairing_change: Callable[[], None],
    ) -> None:
        self.store = PairingStore(on_pairing_change)
        self.pair_setup = PairSetup(identity, self.store, setup_code)
        self._pair_verify = PairVerify(identity, self.store)
        self.processor = HapProcessor(database, PairingsRequests(self.store), self._identified)
        self._context = context
        self._connections: dict[Any, ControllerConnection] = {}
        self._senders: set[asyncio.Task[None]] = set()  # running or being cancelled
        self.identify_count = 0
        self.sessions_established = 0
        self.refusals: list[str] = []  # why each sealed request was refused, in order
        self.events_sent = 0
        database.add_listener(self._value_changed)

    @property
    def session_count(self) -> int:
        return len(self._connections)

    def site(self) -> resource.Site:
        site = resource.Site()
        site.add_resource(["0"], _PostResource(self._identify))
        site.add_resource(["1"], _PostResource(self._setup))
        site.add_resource(["2"], _PostResource(self._verify))
        site.add_resource([], _PostResource(self._sealed))
        return site

    def _identified(self) -> None:
        self.identify_count += 1

    def _identify(self, _: Message) -> Message:
        if self.store.is_paired:
            return Message(code=Code.UNAUTHORIZED)  # paired: write the Identify characteristic
        self._identified()
        return Message(code=Code.CHANGED)

    def _setup(self, request: Message) -> Message:
        reply = self.pair_setup.handle(request.remote, request.payload)
        return Message(code=Code.CHANGED, payload=reply)

    def _verify(self, request: Message) -> Message:
        reply, verified = self._pair_verify.handle(request.remote, request.payload)
        if verified is not None:
            old = self._connections.pop(request.remote, None)
            if old is not None:
                self._close(old)
            connection = ControllerConnection(SecureSession(verified), request.remote)
            connection.sender = asyncio.create_task(self._send_events(connection))
            self._senders.add(connection.sender)
            connection.sender.add_done_callback(self._senders.discard)
            self._connections[request.remote] = connection
            self.sessions_established += 1
        return Message(code=Code.CHANGED, payload=reply)

    def _sealed(self, request: Message) -> Message:
        connection = self._connections.get(request.remote)
        if connection is None:
            return self._refuse("no session")
        try:
            body = connection.session.open_request(request.payload)
        except InvalidTag:
            # A tampered, replayed or out-of-order message: the session is over.
            self._close(self._connections.pop(request.remote))
            return self._refuse("authentication failed")
        reply, removed = self.processor.process(connection, body)
        sealed = connection.session.seal_response(reply)
        for controller_id in removed:
            self.drop_controller(controller_id)
        return Message(code=Code.CHANGED, payload=sealed)

    def _refuse(self, reason: str) -> Message:
        self.refusals.append(reason)
        _LOGGER.info("refused a sealed request: %s", reason)
        return Message(code=Code.NOT_FOUND)

    def drop_controller(self, controller_id: str) -> None:
        for client, connection in list(self._connections.items()):
            if connection.session.controller_id == controller_id:
                self._close(self._connections.pop(client))

    def forget_sessions(self) -> None:
        """What a reboot loses: sessions, subscriptions, half-done pairing exchanges."""
        for connection in self._connections.values():
            self._close(connection)
        self._connections.clear()
        self._pair_verify.forget()
        self.pair_setup.forget()

    @staticmethod
    def _close(connection: ControllerConnection) -> None:
        if connection.sender is not None:
            connection.sender.cancel()

    async def close(self) -> None:
        self.forget_sessions()
        await asyncio.gather(*self._senders, return_exceptions=True)

    # --- events ---------------------------------------------------------------------------

    def _value_changed(self, char: Characteristic, origin: object) -> None:
        record = PduCodec.encode_event(char.iid, char.value_tlv())
        for connection in self._connections.values():
            # The controller that wrote a value gets no event for its own write.
            if connection is not origin and char.iid in connection.subscriptions:
                connection.events.put_nowait(record)

    async def _send_events(self, connection: ControllerConnection) -> None:
        """One PUT at a time, so events arrive in counter order; records queued meanwhile
        travel together in the next one."""
        while True:
            records = [await connection.events.get()]
            while not connection.events.empty():
                records.append(connection.events.get_nowait())
            context = self._context()
            if context is None:
                continue  # silent: nothing leaves the accessory
            payload = connection.session.seal_event(b"".join(records))
            event = Message(
                code=Code.PUT, payload=payload, uri=f"coap://{connection.client.hostinfo}/"
            )
            try:
                async with asyncio.timeout(EVENT_TIMEOUT):
                    response = await context.request(event).response
            except (CoapError, TimeoutError) as err:
                _LOGGER.info("event to %s not delivered: %r", connection.client, err)
                continue
            self.events_sent += 1
            if not response.code.is_successful():
                _LOGGER.info("controller answered an event with %s", response.code)


class _BlackHole(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.dropped += 1


def free_udp_port(host: str) -> int:
    """A UDP port free on host right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class CoapEndpoint:
    """One UDP address of the accessory: an aiocoap server, or, once silenced, a socket that
    reads every datagram and answers none (a device gone from the network, not a closed
    port that would answer with ICMP)."""

    def __init__(self, host: str, port: int, site: resource.Site) -> None:
        self.host = host
        self.port = port
        self._site = site
        self.context: Context | None = None
        self._hole: asyncio.DatagramTransport | None = None
        self._hole_protocol = _BlackHole()

    @property
    def dropped(self) -> int:
        """Datagrams that arrived while silent."""
        return self._hole_protocol.dropped

    async def serve(self) -> None:
        await self._close_hole()
        self.context = await Context.create_server_context(
            self._site, bind=(self.host, self.port), transports=["udp6"]
        )

    async def silence(self) -> None:
        await self._shutdown_context()
        if self._hole is None:
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: self._hole_protocol, local_addr=(self.host, self.port)
            )
            self._hole = transport

    async def close(self) -> None:
        await self._shutdown_context()
        await self._close_hole()

    async def _shutdown_context(self) -> None:
        context, self.context = self.context, None
        if context is not None:
            await context.shutdown()

    async def _close_hole(self) -> None:
        hole, self._hole = self._hole, None
        if hole is not None:
            hole.close()
            await asyncio.sleep(0)  # let the transport release the port
