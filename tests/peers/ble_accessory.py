"""A HAP-BLE accessory on the simulated air: a lightbulb (On, Brightness) and a temperature
sensor, written from the HAP specification's Bluetooth LE chapter so that it checks the
controller (aiohomekit's BLE transport) rather than mirroring it.

    air = Air()
    accessory = HapBleAccessory(air)
    accessory.start()                                   # advertises, unpaired
    accessory.set_value(accessory.temperature, 21.5)   # a change on the device itself
    accessory.reboot()                                  # links and resumable sessions gone

Behaviour, as the specification asks of an accessory:
- It advertises while nobody is connected and takes one connection at a time.
- Before a secure session it answers only signature reads, Pairing Features, pair-setup,
  pair-verify and (while unpaired) Identify; anything else gets Insufficient Authentication.
- After pair-verify every HAP PDU fragment is sealed with ChaCha20-Poly1305, one key and counter
  per direction; a fragment whose tag does not verify (tampered, replayed) ends the link.
- Events: a zero-length indication to a connected controller that enabled indications (not to
  the writer); the global state number (GSN) moves on once per connection with changes, and
  on each change of a disconnected-event characteristic while nobody is connected; a
  characteristic a controller enabled for broadcast goes out in an encrypted advertisement.
- A reboot drops the link and forgets resumable sessions; keys, pairings, GSN, configuration
  number and values are what a real accessory keeps in flash.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.peers.hap_ble_advertising import AccessoryAdvertising
from tests.peers.hap_ble_crypto import TAG_LENGTH, AuthTagError, SessionCipher, broadcast_key
from tests.peers.hap_ble_gatt import (
    SERVICE_SIGNATURE,
    AttributeDatabase,
    Format,
    HapCharacteristic,
    HapService,
    InvalidValue,
    Prop,
    ServiceProp,
    Unit,
    hap_uuid,
)
from tests.peers.hap_ble_pairing import (
    AccessoryIdentity,
    ControllerPairing,
    PairingsAdmin,
    PairSetup,
    PairVerify,
    ResumeCache,
    VerifiedSession,
)
from tests.peers.hap_ble_pdu import (
    PduError,
    Request,
    RequestAssembler,
    Response,
    tlv_dict,
)
from tests.peers.pdu_codes import OpCode, PduParam, PduStatus
from tests.peers.tlv8 import Tlv8
from tests.support.ble_air import (
    ATT_INVALID_HANDLE,
    ATT_READ_NOT_PERMITTED,
    ATT_WRITE_NOT_PERMITTED,
    Air,
    AttError,
    GattService,
    Link,
)

CATEGORY_LIGHTBULB = 5
MAX_GSN = 0xFFFF
ATT_HEADER = 3

PAIR_SETUP = hap_uuid("4C")
PAIR_VERIFY = hap_uuid("4E")
PAIRING_FEATURES = hap_uuid("4F")
PAIRING_PAIRINGS = hap_uuid("50")
IDENTIFY = hap_uuid("14")
PROTOCOL_INFORMATION = hap_uuid("A2")

# Characteristic Configuration parameters (HAP-BLE), and the Protocol Configuration ones.
CONFIG_PROPERTIES = 0x01
CONFIG_BROADCAST_INTERVAL = 0x02
CONFIG_ENABLE_BROADCAST = 0x0001
PROTOCOL_GENERATE_BROADCAST_KEY = 0x01
PROTOCOL_GET_ALL_PARAMS = 0x02
PARAM_STATE_NUMBER = 0x01
PARAM_CONFIG_NUMBER = 0x02
PARAM_ADVERTISING_ID = 0x03


def _string(short: str, value: str) -> HapCharacteristic:
    return HapCharacteristic(hap_uuid(short), Format.STRING, Prop.SECURE_READ, value)


def _signature() -> HapCharacteristic:
    return HapCharacteristic(SERVICE_SIGNATURE, Format.DATA, Prop.READ | Prop.WRITE, b"")


def lightbulb_and_sensor(name: str) -> list[HapService]:
    """Accessory Information, Protocol Information, Pairing, a Lightbulb, a sensor."""
    events = Prop.SECURE_READ | Prop.EVENTS_CONNECTED | Prop.EVENTS_DISCONNECTED
    return [
        HapService(
            hap_uuid("3E"),
            [
                HapCharacteristic(IDENTIFY, Format.BOOL, Prop.WRITE | Prop.SECURE_WRITE),
                _string("20", "mqtt-hk-bridge tests"),
                _string("21", "Simulated BLE bulb"),
                _string("23", name),
                _string("30", "BLE-0001"),
                _string("52", "1.0.0"),
            ],
        ),
        HapService(
            PROTOCOL_INFORMATION,
            [_signature(), _string("37", "2.2.0")],
            ServiceProp.SUPPORTS_CONFIGURATION,
        ),
        HapService(
            hap_uuid("55"),
            [
                HapCharacteristic(PAIR_SETUP, Format.DATA, Prop.READ | Prop.WRITE),
                HapCharacteristic(PAIR_VERIFY, Format.DATA, Prop.READ | Prop.WRITE),
                HapCharacteristic(PAIRING_FEATURES, Format.UINT8, Prop.READ, 0),
                HapCharacteristic(
                    PAIRING_PAIRINGS, Format.DATA, Prop.SECURE_READ | Prop.SECURE_WRITE
                ),
            ],
        ),
        HapService(
            hap_uuid("43"),
            [
                _signature(),
                _string("23", f"{name} light"),
                HapCharacteristic(
                    hap_uuid("25"),
                    Format.BOOL,
                    events | Prop.SECURE_WRITE | Prop.BROADCAST,
                    False,
                ),
                HapCharacteristic(
                    hap_uuid("08"),
                    Format.INT,
                    events | Prop.SECURE_WRITE,
                    50,
                    Unit.PERCENTAGE,
                    (0, 100),
                    1,
                ),
            ],
            ServiceProp.PRIMARY,
        ),
        HapService(
            hap_uuid("8A"),
            [
                _string("23", f"{name} temperature"),
                HapCharacteristic(
                    hap_uuid("11"), Format.FLOAT, events, 20.0, Unit.CELSIUS, (0, 100), 0.1
                ),
            ],
        ),
    ]


@dataclass
class AccessoryStats:
    """What happened, for tests to assert on."""

    connections: int = 0
    full_verifies: int = 0
    resumed_sessions: int = 0
    resumes_refused: int = 0
    rejected_fragments: int = 0  # sealed fragments whose tag did not verify
    identifies: int = 0
    writes: list[tuple[int, Any]] = field(default_factory=list)  # (iid, value)


@dataclass
class _Queued:
    fragment: bytes
    sealed: bool  # sealed with the session when read (False: the clear pair-verify M4)


class HapBleConnection:
    """One controller's connection: transactions per characteristic, session, indications."""

    def __init__(self, link: Link, pair_setup: PairSetup, pair_verify: PairVerify) -> None:
        self.link = link
        self.pair_setup = pair_setup
        self.pair_verify = pair_verify
        self.session: SessionCipher | None = None
        self.controller: ControllerPairing | None = None
        self.verified: VerifiedSession | None = None  # becomes the session after its response
        self.drop_after_response = False
        self.indications: set[int] = set()
        self.state_changed = False  # the GSN moved on during this connection
        self._assemblers: dict[int, RequestAssembler] = {}
        self._responses: dict[int, deque[_Queued]] = {}

    def assembler(self, handle: int) -> RequestAssembler:
        return self._assemblers.setdefault(handle, RequestAssembler())

    def queue(self, handle: int, response: Response) -> None:
        """Hold a response for the controller's reads; a pair-verify that just succeeded
        turns the session on only now, after its own response was queued in the clear."""
        overhead = ATT_HEADER + (TAG_LENGTH if self.session else 0)
        fragments = response.fragments(self.link.mtu - overhead)
        sealed = self.session is not None
        self._responses[handle] = deque(_Queued(f, sealed) for f in fragments)
        if self.verified is not None:
            self.session = SessionCipher(self.verified.shared_secret)
            self.controller = self.verified.controller
            self.verified = None

    def next_fragment(self, handle: int) -> tuple[bytes, bool] | None:
        """The next response fragment (sealed if due), and whether it was the last one."""
        queue = self._responses.get(handle)
        if not queue:
            return None
        queued = queue.popleft()
        data = queued.fragment
        if queued.sealed:
            assert self.session is not None
            data = self.session.seal_to_controller(data)
        return data, not queue


class HapBleAccessory:
    """The peripheral: advertising, GATT, HAP-BLE procedures, pairing and events."""

    def __init__(
        self,
        air: Air,
        *,
        address: str = "C0:FF:EE:00:00:01",
        device_id: str = "5A:1B:7C:3D:9E:0F",
        setup_code: str = "482-91-735",
        setup_id: str = "7OSX",
        name: str = "Sim Bulb",
    ) -> None:
        self.address = address
        self.setup_code = setup_code
        self.identity = AccessoryIdentity(device_id)
        self.database = AttributeDatabase(lightbulb_and_sensor(name))
        self.advertising = AccessoryAdvertising(name, device_id, CATEGORY_LIGHTBULB, setup_id)
        self.gsn = 1
        self.config_number = 1
        self.stats = AccessoryStats()
        self.on = self.database.find(hap_uuid("43"), hap_uuid("25"))
        self.brightness = self.database.find(hap_uuid("43"), hap_uuid("08"))
        self.temperature = self.database.find(hap_uuid("8A"), hap_uuid("11"))
        self._air = air
        self._resume_cache = ResumeCache()
        self._broadcast_key: bytes | None = None
        self._broadcast_iids: set[int] = set()
        self._connection: HapBleConnection | None = None

    # What a test does to the device.

    def start(self) -> None:
        self._advertise()

    def set_value(self, char: HapCharacteristic, value: Any) -> None:
        """A change made on the device itself (a button, a new measurement)."""
        self._change(char, value, origin=None)

    def disconnect(self) -> None:
        """The accessory ends the connection (as it does when idle)."""
        if self._connection is not None:
            self._end(self._connection)

    def reboot(self) -> None:
        """Power cycle: the link drops, resumable sessions are forgotten, advertising resumes."""
        self.disconnect()
        self._resume_cache.clear()
        self._advertise()

    @property
    def connected(self) -> bool:
        return self._connection is not None

    @property
    def indications_enabled(self) -> set[int]:
        """The iids the connected controller asked indications for."""
        if self._connection is None:
            return set()
        by_handle = {c.handle: c.iid for c in self.database.characteristics()}
        return {by_handle[h] for h in self._connection.indications}

    @property
    def broadcast_iids(self) -> set[int]:
        return set(self._broadcast_iids)

    # Peripheral, as the air calls it.

    def gatt_table(self) -> tuple[GattService, ...]:
        return self.database.gatt_table()

    def on_connect(self, link: Link) -> None:
        self._air.advertise(self, None)
        self._connection = HapBleConnection(
            link,
            PairSetup(self.identity, self.setup_code),
            PairVerify(self.identity, self._resume_cache),
        )
        self.stats.connections += 1

    def on_disconnect(self, link: Link) -> None:
        if self._connection is not None and self._connection.link is link:
            self._connection = None
            self._advertise()

    def on_read_descriptor(self, link: Link, handle: int) -> bytes:
        char = self.database.instance_id_descriptors.get(handle)
        if char is None:
            raise AttError(ATT_INVALID_HANDLE, "no such descriptor")
        return struct.pack("<H", char.iid)

    def on_indications(self, link: Link, handle: int, enabled: bool) -> None:
        char = self.database.by_handle(handle)
        connection = self._connection_of(link)
        if char is None or not char.props & Prop.EVENTS_CONNECTED:
            raise AttError(ATT_WRITE_NOT_PERMITTED, "characteristic does not indicate")
        if enabled:
            connection.indications.add(handle)
        else:
            connection.indications.discard(handle)

    def on_read(self, link: Link, handle: int) -> bytes:
        connection = self._connection_of(link)
        if service := self.database.service_by_instance_id_handle(handle):
            return struct.pack("<H", service.iid)
        if self.database.by_handle(handle) is None:
            raise AttError(ATT_INVALID_HANDLE, "no such characteristic")
        next_fragment = connection.next_fragment(handle)
        if next_fragment is None:
            raise AttError(ATT_READ_NOT_PERMITTED, "no HAP response pending")
        data, last = next_fragment
        if last and connection.drop_after_response:
            # The controller removed its own pairing: it gets the answer, then the link ends.
            asyncio.get_running_loop().call_soon(self._end, connection)
        return data

    def on_write(self, link: Link, handle: int, data: bytes) -> None:
        connection = self._connection_of(link)
        char = self.database.by_handle(handle)
        if char is None:
            raise AttError(ATT_WRITE_NOT_PERMITTED, "not a HAP characteristic")
        try:
            if connection.session is not None:
                data = connection.session.open_from_controller(data)
            request = connection.assembler(handle).feed(data)
        except AuthTagError:
            self.stats.rejected_fragments += 1
            self._end(connection)
            return
        except PduError:
            self._end(connection)
            return
        if request is not None:
            connection.queue(handle, self._respond(connection, char, request))

    # HAP procedures.

    def _respond(
        self, conn: HapBleConnection, char: HapCharacteristic, request: Request
    ) -> Response:
        status, body = self._procedure(conn, char, request)
        return Response(request.tid, status, body)

    def _procedure(
        self, conn: HapBleConnection, char: HapCharacteristic, request: Request
    ) -> tuple[PduStatus, bytes | None]:
        assert char.service is not None
        opcode = request.opcode
        if opcode in (OpCode.SERVICE_SIGNATURE_READ, OpCode.PROTOCOL_CONFIGURATION):
            if char.uuid != SERVICE_SIGNATURE or request.iid != char.service.iid:
                return PduStatus.INVALID_INSTANCE_ID, None
        elif request.iid != char.iid:
            return PduStatus.INVALID_INSTANCE_ID, None

        if opcode == OpCode.CHARACTERISTIC_SIGNATURE_READ:
            return PduStatus.SUCCESS, char.signature()
        if opcode == OpCode.SERVICE_SIGNATURE_READ:
            return PduStatus.SUCCESS, char.service.signature()
        if opcode == OpCode.CHARACTERISTIC_READ:
            return self._read(conn, char)
        if opcode == OpCode.CHARACTERISTIC_WRITE:
            return self._write(conn, char, request.body)
        if conn.session is None:
            return PduStatus.INSUFFICIENT_AUTHENTICATION, None
        if opcode == OpCode.CHARACTERISTIC_CONFIGURATION:
            return self._configure(char, request.body)
        if opcode == OpCode.PROTOCOL_CONFIGURATION:
            return self._protocol_configuration(conn, char.service, request.body)
        return PduStatus.UNSUPPORTED_PDU, None

    def _read(
        self, conn: HapBleConnection, char: HapCharacteristic
    ) -> tuple[PduStatus, bytes | None]:
        readable = Prop.READ | (Prop.SECURE_READ if conn.session else Prop(0))
        if not char.props & readable:
            if char.props & Prop.SECURE_READ:
                return PduStatus.INSUFFICIENT_AUTHENTICATION, None
            return PduStatus.INVALID_REQUEST, None
        return PduStatus.SUCCESS, Tlv8.encode([(PduParam.VALUE, char.encode(char.value))])

    def _write(
        self, conn: HapBleConnection, char: HapCharacteristic, body: bytes
    ) -> tuple[PduStatus, bytes | None]:
        writable = Prop.WRITE | (Prop.SECURE_WRITE if conn.session else Prop(0))
        unpaired_only = char.uuid == IDENTIFY and conn.session is None
        if not char.props & writable or (unpaired_only and self.identity.paired):
            if char.props & Prop.SECURE_WRITE:
                return PduStatus.INSUFFICIENT_AUTHENTICATION, None
            return PduStatus.INVALID_REQUEST, None
        try:
            params = tlv_dict(body)
        except PduError:
            return PduStatus.INVALID_REQUEST, None
        if PduParam.VALUE not in params:
            return PduStatus.INVALID_REQUEST, None
        value = params[PduParam.VALUE]
        result = self._pairing_write(conn, char, value)
        if result is None:
            try:
                decoded = char.decode(value)
            except InvalidValue:
                return PduStatus.INVALID_REQUEST, None
            if char.uuid == IDENTIFY:
                self.stats.identifies += 1
            else:
                self.stats.writes.append((char.iid, decoded))
                self._change(char, decoded, origin=conn)
            result = char.encode(char.value) if char.props & Prop.SECURE_READ else b""
        if params.get(PduParam.RETURN_RESPONSE) != b"\x01":
            return PduStatus.SUCCESS, None
        return PduStatus.SUCCESS, Tlv8.encode([(PduParam.VALUE, result)])

    def _pairing_write(
        self, conn: HapBleConnection, char: HapCharacteristic, value: bytes
    ) -> bytes | None:
        """The response TLV when `char` is a pairing characteristic, else None."""
        if char.uuid == PAIR_SETUP:
            return Tlv8.encode(conn.pair_setup.handle(value))
        if char.uuid == PAIR_VERIFY:
            items, verified = conn.pair_verify.handle(value)
            if conn.pair_verify.resume_refused:
                conn.pair_verify.resume_refused = False
                self.stats.resumes_refused += 1
            if verified is not None:
                conn.verified = verified
                if verified.resumed:
                    self.stats.resumed_sessions += 1
                else:
                    self.stats.full_verifies += 1
            return Tlv8.encode(items)
        if char.uuid == PAIRING_PAIRINGS:
            assert conn.controller is not None
            items, removed = PairingsAdmin(self.identity).handle(value, conn.controller)
            if removed:
                self._forget_controllers(conn, removed)
            return Tlv8.encode(items)
        return None

    def _forget_controllers(self, conn: HapBleConnection, removed: set[str]) -> None:
        if not self.identity.paired:
            self._broadcast_key = None
            self._broadcast_iids.clear()
        assert conn.controller is not None
        if conn.controller.pairing_id in removed:
            conn.drop_after_response = True

    def _configure(self, char: HapCharacteristic, body: bytes) -> tuple[PduStatus, bytes | None]:
        if not char.props & Prop.BROADCAST:
            return PduStatus.INVALID_REQUEST, None
        try:
            params = tlv_dict(body)
        except PduError:
            return PduStatus.INVALID_REQUEST, None
        properties = int.from_bytes(params.get(CONFIG_PROPERTIES, b"\x00\x00"), "little")
        interval = params.get(CONFIG_BROADCAST_INTERVAL, b"\x01")
        if properties & CONFIG_ENABLE_BROADCAST:
            self._broadcast_iids.add(char.iid)
        else:
            self._broadcast_iids.discard(char.iid)
        return PduStatus.SUCCESS, Tlv8.encode(
            [
                (CONFIG_PROPERTIES, struct.pack("<H", properties & CONFIG_ENABLE_BROADCAST)),
                (CONFIG_BROADCAST_INTERVAL, interval),
            ]
        )

    def _protocol_configuration(
        self, conn: HapBleConnection, service: HapService, body: bytes
    ) -> tuple[PduStatus, bytes | None]:
        if not service.props & ServiceProp.SUPPORTS_CONFIGURATION:
            return PduStatus.INVALID_REQUEST, None
        try:
            params = tlv_dict(body)
        except PduError:
            return PduStatus.INVALID_REQUEST, None
        assert conn.session is not None and conn.controller is not None
        if PROTOCOL_GENERATE_BROADCAST_KEY in params:
            self._broadcast_key = broadcast_key(conn.session.shared_secret, conn.controller.ltpk)
        if PROTOCOL_GET_ALL_PARAMS not in params:
            return PduStatus.SUCCESS, None
        return PduStatus.SUCCESS, Tlv8.encode(
            [
                (PARAM_STATE_NUMBER, struct.pack("<H", self.gsn)),
                (PARAM_CONFIG_NUMBER, bytes((self.config_number,))),
                (PARAM_ADVERTISING_ID, self.advertising.device_id_bytes),
            ]
        )

    # Events.

    def _change(self, char: HapCharacteristic, value: Any, origin: HapBleConnection | None) -> None:
        if char.value == value:
            return
        char.value = value
        if not char.props & (Prop.EVENTS_CONNECTED | Prop.EVENTS_DISCONNECTED):
            return
        conn = self._connection
        if conn is not None:
            if not conn.state_changed:
                conn.state_changed = True
                self._next_gsn()
            if conn is not origin and conn.session and char.handle in conn.indications:
                conn.link.indicate(char.handle, b"")
            return
        if not char.props & Prop.EVENTS_DISCONNECTED:
            return
        self._next_gsn()
        if char.iid in self._broadcast_iids and self._broadcast_key is not None:
            notification = self.advertising.encrypted_notification(
                self._broadcast_key, self.gsn, char.iid, char.encode(value)
            )
            self._air.advertise(self, notification)
        self._advertise()

    def _next_gsn(self) -> None:
        self.gsn = self.gsn + 1 if self.gsn < MAX_GSN else 1
        if self.gsn == 1:
            # The broadcast key is only good until the GSN wraps.
            self._broadcast_key = None

    # Links.

    def _advertise(self) -> None:
        if self._connection is None:
            self._air.advertise(
                self,
                self.advertising.regular(
                    paired=self.identity.paired, gsn=self.gsn, config_number=self.config_number
                ),
            )

    def _connection_of(self, link: Link) -> HapBleConnection:
        if self._connection is None or self._connection.link is not link:
            raise AttError(ATT_INVALID_HANDLE, "not connected")
        return self._connection

    def _end(self, conn: HapBleConnection) -> None:
        conn.link.drop()
        if self._connection is conn:
            self._connection = None
        self._advertise()
