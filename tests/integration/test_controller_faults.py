"""The controller side reaching its accessory through a faulty network.

The controller side (in-process ControllerHarness, short timings) is paired with a HAP-python
peer (AccessoryProcess, the demo bridge: a light at aid 2, a sensor at aid 3) and reaches it
only through tests/support/tcp_proxy.py: the stored pairing's AccessoryIP/AccessoryPort are
rewritten to the proxy before the harness starts.

Keeping zeroconf from undoing that: aiohomekit follows the mDNS record of the paired device
id, and the peer announces its real port, so on the first record the connection would
bypass the proxy and every fault test would pass vacuously. The `via_proxy` fixture therefore
rewrites that one record's address and port to the proxy as aiohomekit receives it, which is
the picture of a real network: the accessory's advertised endpoint *is* the faulty path.
Everything else zeroconf does stays real (c#/s# changes, the backoff waking on a new record).
Each test also checks that the session's connection really points at the proxy, so a future
change in how aiohomekit takes records fails loudly instead of testing nothing.

Timings are scaled down (reconnect 0.2-1.0 s, request and connect timeouts 1.5 s); every
wait is bounded, everything is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohomekit.controller.ip.pairing import IpPairing

from mqtt_hk_bridge.config import Config
from mqtt_hk_bridge.controller import commands, sessions
from mqtt_hk_bridge.controller.settings import DEFAULT_PAIRING_FILE, ControllerSettings
from mqtt_hk_bridge.store import backup_path
from tests.support.accessory_process import AccessoryProcess
from tests.support.controller_harness import ControllerHarness
from tests.support.mosquitto import Mosquitto, MqttProbe
from tests.support.tcp_proxy import BLACKHOLE, PASS, TcpProxy, rst_after
from tests.support.wait import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

ALIAS = "faulty"
LIGHT = f"HomeKit/{ALIAS}-2/Lightbulb"
BRIGHTNESS_IID = 10  # the demo peer's Brightness (HAP-python numbers in creation order)

SETTINGS = ControllerSettings(
    reconnect_min=0.2,
    reconnect_max=1.0,
    connect_timeout=1.5,
    request_timeout=1.5,
    poll_interval=0.0,
    discover_timeout=5.0,
)

#: aiohomekit 4.0.1's pair-verify requests to 127.0.0.1 are 144 bytes (M1: headers and a
#: 37-byte TLV) and 233 bytes (M3: a 125-byte TLV). 200 lets M1 through, so the accessory
#: answers M2, and resets both sides in the middle of M3.
PAIR_VERIFY_CUT = 200


def max_attempts(settings: ControllerSettings, window: float, wakeups: int = 0) -> int:
    """Most TCP connections PairingSession may cause within `window` seconds of its first:
    after each failure it sleeps at least delay/2 (full jitter in [delay/2, delay]), the delay
    doubling from reconnect_min to reconnect_max. A new zeroconf record is tried at once on
    purpose (a moved accessory is back in seconds): aiohomekit connects by itself and the
    supervisor's sleep ends early, so up to two more per record."""
    attempts, elapsed, delay = 1, 0.0, settings.reconnect_min
    while True:
        elapsed += delay / 2
        if elapsed > window:
            return attempts + 2 * wakeups
        attempts += 1
        delay = min(delay * 2, settings.reconnect_max)


@dataclass
class PairedPeer:
    peer: AccessoryProcess
    pairing_file: Path

    def secrets(self) -> list[str]:
        """What must never appear in a log: the controller's private key, the setup code."""
        data = json.loads(self.pairing_file.read_text())["pairings"][ALIAS]
        pin = self.peer.pin
        return [data["iOSDeviceLTSK"], pin, pin.replace("-", "")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def paired(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PairedPeer]:
    root = tmp_path_factory.mktemp("controller-faults")
    peer = AccessoryProcess(root)
    await peer.start()
    config = Config(data_dir=root / "cli-data", zeroconf_interfaces=("127.0.0.1",))
    await commands.pair(config, str(peer.device_id), peer.pin, ALIAS)
    try:
        yield PairedPeer(peer, config.data_dir / DEFAULT_PAIRING_FILE)
    finally:
        await peer.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def peer(paired: PairedPeer) -> AccessoryProcess:
    if not paired.peer.running:
        await paired.peer.start()
    return paired.peer


@pytest_asyncio.fixture(loop_scope="module")
async def probe(mosquitto: Mosquitto) -> AsyncIterator[MqttProbe]:
    async with mosquitto.probe() as client:
        await client.subscribe("HomeKit/#")
        yield client


@dataclass
class RecordRoutes:
    """device id -> (host, port) the mDNS record is rewritten to; rewrites seen (times)."""

    routes: dict[str, tuple[str, int]] = field(default_factory=dict)
    rewrites: list[float] = field(default_factory=list)

    def route(self, device_id: str, proxy: TcpProxy) -> None:
        self.routes[device_id.lower()] = (proxy.host, proxy.port)

    def since(self, start: float, end: float) -> int:
        return sum(1 for at in self.rewrites if start <= at <= end)


@pytest.fixture
def via_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordRoutes]:
    """See the module docstring: the paired accessory's record leads to the proxy."""
    routes = RecordRoutes()
    original = IpPairing._async_description_update

    def rewritten(self: IpPairing, description: Any) -> None:
        target = routes.routes.get(description.id) if description is not None else None
        if target is not None:
            host, port = target
            description = dataclasses.replace(
                description, address=host, addresses=[host], port=port
            )
            routes.rewrites.append(time.monotonic())
        original(self, description)

    monkeypatch.setattr(IpPairing, "_async_description_update", rewritten)
    yield routes


def data_dir_via(paired: PairedPeer, tmp_path: Path, proxy: TcpProxy) -> Path:
    """A fresh data dir whose copy of the pairing points at the proxy."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    data = json.loads(paired.pairing_file.read_text())
    entry = data["pairings"][ALIAS]
    entry.update(AccessoryIP=proxy.host, AccessoryIPs=[proxy.host], AccessoryPort=proxy.port)
    path = data_dir / DEFAULT_PAIRING_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    return data_dir


def availability(probe: MqttProbe, device: str = ALIAS) -> list[bytes]:
    return [m.payload for m in probe.messages_on(f"HomeKit/{device}/availability")]


def last(probe: MqttProbe, topic: str) -> bytes | None:
    found = probe.messages_on(topic)
    return found[-1].payload if found else None


async def wait_availability(
    probe: MqttProbe, word: bytes, timeout: float, device: str = ALIAS
) -> float:
    """Wait until `device`'s last availability is `word`; returns when it arrived."""
    await wait_for(
        lambda: last(probe, f"HomeKit/{device}/availability") == word,
        timeout=timeout,
        message=f"{device} {word.decode()}",
    )
    return probe.messages_on(f"HomeKit/{device}/availability")[-1].at


def assert_through_proxy(harness: ControllerHarness, proxy: TcpProxy) -> None:
    connection = harness.side.sessions[ALIAS].pairing.connection
    assert (list(connection.hosts), connection.port) == ([proxy.host], proxy.port), (
        "the connection left the proxy: zeroconf took it to the accessory's real port"
    )


def gaps_between(times: list[float]) -> list[float]:
    return [round(b - a, 2) for a, b in itertools.pairwise(times)]


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


async def settled(harness: ControllerHarness) -> None:
    """The zeroconf record is in and its c# read: no read of aiohomekit's own (it reads the
    database in a background task when a record brings a new c#) is left to hit the fault."""
    session = harness.side.sessions[ALIAS]

    def done() -> bool:
        description = session.pairing.description
        return description is not None and session._db_config_num == description.config_num

    await wait_for(done, timeout=5, message="zeroconf record taken")
    await wait_for(lambda: not session._read_lock.locked(), timeout=5, message="reads done")


async def set_and_confirm(probe: MqttProbe, peer: AccessoryProcess, value: int) -> None:
    """A /set reaches the accessory exactly once and comes back on the mirror."""
    before = len(await peer.writes())
    await probe.publish(f"{LIGHT}/Brightness/set", str(value))
    await wait_for(
        lambda: last(probe, f"{LIGHT}/Brightness") == str(value).encode(),
        timeout=5,
        message=f"Brightness {value} mirrored",
    )
    assert (await peer.writes())[before:] == [{"aid": 2, "iid": BRIGHTNESS_IID, "value": value}]


# ---- (c) resets during pair-verify: bounded backoff ---------------------------------------
async def test_resets_during_pair_verify_back_off(
    paired: PairedPeer,
    peer: AccessoryProcess,
    mosquitto: Mosquitto,
    probe: MqttProbe,
    via_proxy: RecordRoutes,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    window = 6.0
    async with TcpProxy("127.0.0.1", peer.port, mode=rst_after(PAIR_VERIFY_CUT)) as proxy:
        via_proxy.route(str(peer.device_id), proxy)
        data_dir = data_dir_via(paired, tmp_path, proxy)
        async with ControllerHarness(data_dir, mosquitto, settings=SETTINGS) as harness:
            await wait_for(lambda: proxy.connections > 0, timeout=5, message="first attempt")
            first = proxy.accepted_at[0]
            await wait_availability(probe, b"offline", timeout=5)
            await wait_for(
                lambda: time.monotonic() >= first + window, timeout=window + 1, interval=0.1
            )
            attempts = proxy.accepted_since(first)
            wakeups = via_proxy.since(first, first + window)
            bound = max_attempts(SETTINGS, window, wakeups)
            gaps = gaps_between(list(proxy.accepted_at))
            session = harness.side.sessions[ALIAS]
            error = session.pairing.connection.last_connector_error
            print(
                f"(c) {attempts} connection attempts in {window:g} s (bound {bound}, "
                f"{wakeups} zeroconf wake-ups); session attempts {session.connect_attempts}; "
                f"gaps {gaps}; resets {proxy.resets}; last error {error!r}"
            )
            # Every attempt died inside pair-verify: the accessory answered M1, then RST.
            assert proxy.bytes_down > 0 and proxy.resets >= attempts - 1
            assert attempts <= bound
            assert availability(probe) and set(availability(probe)) == {b"offline"}
            assert session._task is not None and not session._task.done()
            assert_through_proxy(harness, proxy)

            # Healed: back online and a /set goes through.
            proxy.set_mode(PASS)
            healed = time.monotonic()
            online_at = await wait_availability(probe, b"online", timeout=5, device=f"{ALIAS}-2")
            print(f"(c) online {online_at - healed:.2f} s after the proxy passed again")
            assert online_at - healed <= SETTINGS.reconnect_max + 2.0
            await set_and_confirm(probe, peer, 61)
            assert_through_proxy(harness, proxy)
    assert errors_logged(caplog) == []


# ---- (c') the accessory drops each session as soon as it is up ----------------------------
async def test_sessions_dropped_right_after_coming_up_back_off(
    paired: PairedPeer,
    peer: AccessoryProcess,
    mosquitto: Mosquitto,
    probe: MqttProbe,
    via_proxy: RecordRoutes,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Pair-verify passes and the mirror is read, then the connection is reset (an accessory
    that kicks us for another controller, or reboots in a loop). The backoff must hold here
    too: aiohomekit restarts its own connector at once on every lost connection."""
    window = 6.0
    async with TcpProxy("127.0.0.1", peer.port) as proxy:
        via_proxy.route(str(peer.device_id), proxy)
        data_dir = data_dir_via(paired, tmp_path, proxy)
        async with ControllerHarness(data_dir, mosquitto, settings=SETTINGS) as harness:
            session = harness.side.sessions[ALIAS]
            await wait_availability(probe, b"online", timeout=10, device=f"{ALIAS}-2")
            drops = 0

            async def drop_when_up() -> None:
                nonlocal drops
                while True:
                    if session.connected and session.mirror.available:
                        drops += 1
                        proxy.reset_all()
                    await asyncio.sleep(0.02)

            dropper = asyncio.create_task(drop_when_up())
            try:
                start = time.monotonic()
                await asyncio.sleep(window)
            finally:
                dropper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await dropper
            attempts = proxy.accepted_since(start)
            wakeups = via_proxy.since(start, start + window)
            bound = max_attempts(SETTINGS, window, wakeups)
            gaps = gaps_between([at for at in proxy.accepted_at if at >= start])
            print(
                f"(c') {attempts} connections in {window:g} s (bound {bound}), {drops} drops, "
                f"session attempts {session.connect_attempts}; gaps {gaps}"
            )
            assert attempts <= bound
            assert_through_proxy(harness, proxy)
            # Up again for good: give the last reset time to be seen (the supervisor looks
            # every 0.1 s), then wait for a session that is connected and read.
            await asyncio.sleep(0.3)
            await wait_for(
                lambda: session.connected and session.mirror.available,
                timeout=5,
                message="up again after the drops stopped",
            )
            await wait_availability(probe, b"online", timeout=2, device=f"{ALIAS}-2")
            await set_and_confirm(probe, peer, 62)
    assert errors_logged(caplog) == []


# ---- (a) a silent partition: requests time out, nothing is queued -----------------------
async def test_blackhole_refuses_writes_and_goes_offline(
    paired: PairedPeer,
    peer: AccessoryProcess,
    mosquitto: Mosquitto,
    probe: MqttProbe,
    via_proxy: RecordRoutes,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In production the partition hits a connection that has been up for long, so the
    supervisor tries again at once instead of backing off; scaled down here so that the
    offline figure cannot come from the backoff path."""
    monkeypatch.setattr(sessions, "STABLE_AFTER", 0.5)
    timeout = SETTINGS.request_timeout
    async with TcpProxy("127.0.0.1", peer.port) as proxy:
        via_proxy.route(str(peer.device_id), proxy)
        data_dir = data_dir_via(paired, tmp_path, proxy)
        async with ControllerHarness(data_dir, mosquitto, settings=SETTINGS) as harness:
            await wait_availability(probe, b"online", timeout=10, device=f"{ALIAS}-2")
            assert_through_proxy(harness, proxy)
            await settled(harness)
            session = harness.side.sessions[ALIAS]
            await asyncio.sleep(sessions.STABLE_AFTER)  # a stable connection
            assert session.connected
            writes_before = len(await peer.writes())

            proxy.set_mode(BLACKHOLE)
            blackholed = time.monotonic()
            await probe.publish(f"{LIGHT}/Brightness/set", "33")
            refusal = await probe.wait_message(
                "HomeKit/bridge/event",
                lambda m: b"write_failed" in m.payload,
                timeout=timeout + 2,
            )
            event = json.loads(refusal.payload)
            assert event["device"] == f"{ALIAS}-2"
            offline_at = await wait_availability(
                probe, b"offline", timeout=timeout + 3, device=f"{ALIAS}-2"
            )
            print(
                f"(a) write refused {refusal.at - blackholed:.2f} s and availability offline "
                f"{offline_at - blackholed:.2f} s into the blackhole "
                f"(request_timeout {timeout:g} s)"
            )
            assert refusal.at - blackholed <= timeout + 0.5
            assert offline_at - blackholed <= timeout + 0.5

            # While offline a /set is refused at once.
            asked = time.monotonic()
            await probe.publish(f"{LIGHT}/Brightness/set", "34")
            refused = await probe.wait_message(
                "HomeKit/bridge/event",
                lambda m: b"offline; not sent" in m.payload,
                timeout=2,
            )
            assert refused.at - asked < 1.0

            # Keep the partition well past request_timeout, then heal.
            await wait_for(
                lambda: time.monotonic() >= blackholed + 2 * timeout, timeout=2 * timeout + 1
            )
            proxy.set_mode(PASS)
            healed = time.monotonic()
            online_at = await wait_availability(probe, b"online", timeout=8, device=f"{ALIAS}-2")
            print(f"(a) online {online_at - healed:.2f} s after the partition healed")
            # Nothing was queued: neither refused value ever reaches the accessory.
            await set_and_confirm(probe, peer, 35)
            values = [w["value"] for w in (await peer.writes())[writes_before:]]
            assert values == [35]
            assert_through_proxy(harness, proxy)
    assert errors_logged(caplog) == []


# ---- (d) another accessory behind the address -------------------------------------------
async def test_wrong_accessory_fails_pair_verify_and_changes_nothing(
    paired: PairedPeer,
    peer: AccessoryProcess,
    mosquitto: Mosquitto,
    probe: MqttProbe,
    via_proxy: RecordRoutes,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    window = 3.0
    wrong = AccessoryProcess(tmp_path, name="Wrong Bridge")
    async with wrong, TcpProxy("127.0.0.1", wrong.port) as proxy:
        assert wrong.device_id != peer.device_id
        # Paired with another controller, as a neighbour's accessory would be: it answers
        # pair-verify M2 with its own id (an unpaired one refuses M1 with an error instead).
        other = Config(data_dir=tmp_path / "other-controller", zeroconf_interfaces=("127.0.0.1",))
        await commands.pair(other, str(wrong.device_id), wrong.pin, "neighbour")
        # The paired accessory's own record leads to the address that now holds `wrong`.
        via_proxy.route(str(peer.device_id), proxy)
        data_dir = data_dir_via(paired, tmp_path, proxy)
        pairing_file = data_dir / DEFAULT_PAIRING_FILE
        before = pairing_file.read_bytes()
        async with ControllerHarness(data_dir, mosquitto, settings=SETTINGS) as harness:
            await wait_for(lambda: proxy.connections > 0, timeout=5, message="first attempt")
            first = proxy.accepted_at[0]
            await wait_availability(probe, b"offline", timeout=5)
            await wait_for(
                lambda: time.monotonic() >= first + window, timeout=window + 1, interval=0.1
            )
            attempts = proxy.accepted_since(first)
            bound = max_attempts(SETTINGS, window, via_proxy.since(first, first + window))
            session = harness.side.sessions[ALIAS]
            error = session.pairing.connection.last_connector_error
            print(f"(d) {attempts} attempts in {window:g} s (bound {bound}); last error {error!r}")
            assert type(error).__name__ == "IncorrectPairingIdError"
            assert attempts <= bound
            assert not session.connected
            assert set(availability(probe)) == {b"offline"}
            assert_through_proxy(harness, proxy)
            unreachable = await probe.wait_message(
                "HomeKit/bridge/event", lambda m: b"accessory_unreachable" in m.payload
            )
            assert json.loads(unreachable.payload)["device"] == ALIAS
            # Nothing was written about the pairing while the wrong accessory answered.
            assert pairing_file.read_bytes() == before
            assert not backup_path(pairing_file).exists()
            assert await wrong.writes() == []

            # The address leads to the right accessory again: the exclusion aiohomekit keeps
            # for a host that gave a wrong pairing id does not lock it out.
            proxy.target = ("127.0.0.1", peer.port)
            await wait_availability(probe, b"online", timeout=5, device=f"{ALIAS}-2")
        assert json.loads(pairing_file.read_text())["pairings"] == json.loads(before)["pairings"]

    # No credentials in any log record or MQTT message of the run.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    published = b"\n".join(m.payload for m in probe.messages).decode(errors="replace")
    assert len(caplog.records) > 100  # DEBUG was really captured
    for secret in paired.secrets():
        assert secret not in logged
        assert secret not in published
    assert errors_logged(caplog) == []
