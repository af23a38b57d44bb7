"""A simulated Bluetooth LE radio inside one process: the air between centrals and peripherals.

A central (bleak, through tests/support/bleak_backend.py) and a peripheral (for example the
HAP-BLE accessory in tests/peers/ble_accessory.py) exchange only what crosses a real radio:
advertisements (local name and manufacturer data), connections, the GATT table the central
discovers on connect, reads and writes of characteristic values and descriptors, indications,
and disconnections from either side. Nothing about HomeKit lives here.

As on a real radio, only an advertising peripheral can be connected to, a write reaches the
peripheral as bytes, and an event from the peripheral (indication, disconnection) reaches
the central on a later turn of the event loop. A `Link` keeps the bytes the central wrote so a
test can replay or corrupt them: the peripheral then sees what a hostile radio would deliver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

# The ATT_MTU a link gets unless the peripheral asks for another: HAP-BLE needs at least 100.
DEFAULT_MTU = 100


class AirError(Exception):
    """Base of what the air reports to a central."""


class PeripheralNotFound(AirError):
    """No peripheral with that address is advertising (so none can be connected to)."""


class ConnectionRefused(AirError):
    """The peripheral did not accept the connection (for example: it has no free slot)."""


class LinkLost(AirError):
    """The link is gone: either side disconnected, or the peripheral dropped it mid-request."""


class AttError(AirError):
    """The peripheral answered a GATT request with an ATT error (Bluetooth Core, Vol 3 F 3.4.1)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"ATT error 0x{code:02x}: {reason}")
        self.code = code


ATT_INVALID_HANDLE = 0x01
ATT_READ_NOT_PERMITTED = 0x02
ATT_WRITE_NOT_PERMITTED = 0x03


@dataclass(frozen=True)
class GattDescriptor:
    handle: int
    uuid: str


@dataclass(frozen=True)
class GattCharacteristic:
    handle: int
    uuid: str
    properties: tuple[str, ...]  # bleak's names: "read", "write", "indicate", ...
    descriptors: tuple[GattDescriptor, ...] = ()


@dataclass(frozen=True)
class GattService:
    handle: int
    uuid: str
    characteristics: tuple[GattCharacteristic, ...]


@dataclass(frozen=True)
class Advertisement:
    local_name: str
    manufacturer_data: Mapping[int, bytes]
    rssi: int = -60


class Peripheral(Protocol):
    """What the air needs from a simulated peripheral; every call is made on the loop."""

    address: str

    def gatt_table(self) -> tuple[GattService, ...]: ...

    def on_connect(self, link: Link) -> None:
        """A central connected; raise ConnectionRefused to turn it away."""

    def on_read(self, link: Link, handle: int) -> bytes: ...

    def on_write(self, link: Link, handle: int, data: bytes) -> None: ...

    def on_read_descriptor(self, link: Link, handle: int) -> bytes: ...

    def on_indications(self, link: Link, handle: int, enabled: bool) -> None:
        """The central wrote the characteristic's Client Characteristic Configuration."""

    def on_disconnect(self, link: Link) -> None:
        """The central disconnected (not called when the peripheral dropped the link)."""


class Central(Protocol):
    """What the air delivers to a connected central, always on a later loop turn."""

    def on_indication(self, handle: int, data: bytes) -> None: ...

    def on_link_lost(self) -> None: ...


class Scanner(Protocol):
    def on_advertisement(self, address: str, advertisement: Advertisement) -> None: ...


@dataclass
class Link:
    """One connection between a central and a peripheral."""

    peripheral: Peripheral
    central: Central
    mtu: int
    connected: bool = True
    central_writes: list[tuple[int, bytes]] = field(default_factory=list)
    _corrupt_next_write: bool = False

    # The central's side: each call awaits one loop turn, as a radio round trip would.

    async def read(self, handle: int) -> bytes:
        await self._round_trip()
        return self.peripheral.on_read(self, handle)

    async def write(self, handle: int, data: bytes) -> None:
        await self._round_trip()
        if self._corrupt_next_write:
            self._corrupt_next_write = False
            data = data[:-1] + bytes([data[-1] ^ 0x01])
        self.central_writes.append((handle, data))
        self.peripheral.on_write(self, handle, data)
        self._raise_if_lost()

    async def read_descriptor(self, handle: int) -> bytes:
        await self._round_trip()
        return self.peripheral.on_read_descriptor(self, handle)

    async def set_indications(self, handle: int, enabled: bool) -> None:
        await self._round_trip()
        self.peripheral.on_indications(self, handle, enabled)

    def disconnect_central(self) -> None:
        if self.connected:
            self.connected = False
            self.peripheral.on_disconnect(self)

    # The peripheral's side.

    def indicate(self, handle: int, data: bytes) -> None:
        if self.connected:
            asyncio.get_running_loop().call_soon(self.central.on_indication, handle, data)

    def drop(self) -> None:
        """The peripheral ends the link; the central learns it on a later loop turn."""
        if self.connected:
            self.connected = False
            asyncio.get_running_loop().call_soon(self.central.on_link_lost)

    # Faults a test injects, as a hostile or broken radio would.

    def corrupt_next_write(self) -> None:
        """Flip one bit in the last byte of the central's next write (for example its tag)."""
        self._corrupt_next_write = True

    async def replay(self, handle: int, data: bytes) -> None:
        """Deliver bytes to the peripheral as if the central had written them again."""
        await self.write(handle, data)

    async def _round_trip(self) -> None:
        self._raise_if_lost()
        await asyncio.sleep(0)
        self._raise_if_lost()

    def _raise_if_lost(self) -> None:
        if not self.connected:
            raise LinkLost("link lost")


class Air:
    """The radio medium: who advertises what, who scans, and who is connected to whom."""

    def __init__(self) -> None:
        self._peripherals: dict[str, Peripheral] = {}
        self._advertising: dict[str, Advertisement] = {}
        self._scanners: set[Scanner] = set()
        self.links: list[Link] = []

    def advertise(self, peripheral: Peripheral, advertisement: Advertisement | None) -> None:
        """Start, change (None: stop) a peripheral's advertisement; scanners hear changes."""
        address = peripheral.address
        self._peripherals[address] = peripheral
        if advertisement is None:
            self._advertising.pop(address, None)
            return
        self._advertising[address] = advertisement
        for scanner in list(self._scanners):
            self._deliver(scanner, address, advertisement)

    def start_scanning(self, scanner: Scanner) -> None:
        """A scanner hears every current advertisement once, then every change."""
        self._scanners.add(scanner)
        for address, advertisement in self._advertising.items():
            self._deliver(scanner, address, advertisement)

    def stop_scanning(self, scanner: Scanner) -> None:
        self._scanners.discard(scanner)

    def connect(self, address: str, central: Central) -> Link:
        if address not in self._advertising:
            raise PeripheralNotFound(f"{address} is not advertising")
        peripheral = self._peripherals[address]
        link = Link(peripheral=peripheral, central=central, mtu=DEFAULT_MTU)
        peripheral.on_connect(link)
        self.links.append(link)
        return link

    def links_to(self, address: str) -> list[Link]:
        return [link for link in self.links if link.peripheral.address == address]

    @staticmethod
    def _deliver(scanner: Scanner, address: str, advertisement: Advertisement) -> None:
        deliver: Callable[[str, Advertisement], None] = scanner.on_advertisement
        asyncio.get_running_loop().call_soon(deliver, address, advertisement)
