"""The accessory's `_hap._udp.local.` record: where it listens and what state it is in."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from zeroconf import ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

HAP_UDP = "_hap._udp.local."


@dataclass(frozen=True)
class HapTxt:
    """The TXT keys a HAP accessory announces (HAP specification, Bonjour TXT record)."""

    device_id: str  # id: the pairing identifier
    model: str  # md
    config_number: int  # c#: goes up when the database changes
    state_number: int  # s#
    paired: bool  # sf bit 0 is "not paired"
    category: int  # ci
    feature_flags: int = 0  # ff: 0, no MFi authentication coprocessor
    protocol_version: str = "1.2"  # pv

    def properties(self) -> dict[str, str]:
        return {
            "c#": str(self.config_number),
            "s#": str(self.state_number),
            "id": self.device_id,
            "ff": str(self.feature_flags),
            "sf": "0" if self.paired else "1",
            "ci": str(self.category),
            "md": self.model,
            "pv": self.protocol_version,
        }


class HapUdpAnnouncer:
    """Registers, updates and withdraws one `_hap._udp` service on a zeroconf instance that
    the caller bound to loopback; re-announcements still running are awaited on close."""

    def __init__(self, zeroconf: AsyncZeroconf, instance_name: str) -> None:
        self._zeroconf = zeroconf
        self._name = f"{instance_name}.{HAP_UDP}"
        self._host_name = f"{instance_name.replace(' ', '-')}.local."
        self._info: ServiceInfo | None = None
        self._broadcasts: set[asyncio.Future[Any]] = set()

    def _service_info(self, host: str, port: int, txt: HapTxt) -> ServiceInfo:
        return ServiceInfo(
            HAP_UDP,
            self._name,
            port=port,
            properties=txt.properties(),
            server=self._host_name,
            addresses=[ipaddress.ip_address(host).packed],
        )

    def _keep(self, broadcast: Awaitable[Any]) -> None:
        future = asyncio.ensure_future(broadcast)
        self._broadcasts.add(future)
        future.add_done_callback(self._broadcasts.discard)

    async def register(self, host: str, port: int, txt: HapTxt) -> None:
        self._info = self._service_info(host, port, txt)
        # Waits for the probe, so the record is answerable when this returns.
        announcement = await self._zeroconf.async_register_service(self._info)
        await announcement

    async def update(self, host: str, port: int, txt: HapTxt) -> None:
        """Announce new records now; the repeats go on in the background."""
        self._info = self._service_info(host, port, txt)
        self._keep(await self._zeroconf.async_update_service(self._info))

    def update_soon(self, host: str, port: int, txt: HapTxt) -> None:
        """update() from synchronous code; finished or cancelled by close()."""
        self._keep(self.update(host, port, txt))

    async def close(self) -> None:
        for broadcast in list(self._broadcasts):
            broadcast.cancel()
        await asyncio.gather(*self._broadcasts, return_exceptions=True)
        if self._info is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(3):
                    goodbye = await self._zeroconf.async_unregister_service(self._info)
                    await goodbye
            self._info = None
