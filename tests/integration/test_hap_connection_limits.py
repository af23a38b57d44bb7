"""Strangers on the HAP port: a flood of connections that never pair or verify cannot keep a
controller out, exhaust the bridge's file descriptors, or flood its log."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.wait import wait_for

#: A systemd service's default soft limit on open files.
SERVICE_OPEN_FILES = 1024


@contextmanager
def silent_connections(
    host: str, port: int, count: int, wait: float = 1.0
) -> Iterator[list[socket.socket]]:
    """`count` attempts at TCP connections that never send a byte (bounded: `wait` each; a
    few may find the accept queue full while the bridge is closing others)."""
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            with suppress(OSError):
                opened.append(socket.create_connection((host, port), timeout=wait))
        yield opened
    finally:
        for sock in opened:
            sock.close()


def closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True  # reset by the peer


async def test_a_flood_of_silent_connections_leaves_room_for_a_controller(
    make_bridge: Callable[..., BridgeProcess],
) -> None:
    bridge = make_bridge(start=False)
    # Soft and hard alike: the bridge cannot raise its way out of this one.
    bridge.open_files_limit = (SERVICE_OPEN_FILES, SERVICE_OPEN_FILES)
    bridge.start()
    with silent_connections(bridge.host, bridge.hap_port, 1_100) as flood:
        assert len(flood) >= 1_000
        # It holds a bounded number of them, not one file descriptor each.
        await wait_for(lambda: bridge.open_files() < 150, timeout=5, message="fds bounded")
        started = time.monotonic()
        home = await HapClient.pair(
            bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code
        )
        try:
            assert await home.list_accessories()
        finally:
            await home.close()
        paired_in = time.monotonic() - started
        # Strangers that never verify are closed within 30 s (plus one 5 s sweep).
        await wait_for(
            lambda: all(closed_by_peer(sock) for sock in flood),
            timeout=40,
            message="every silent connection closed",
        )
    logs = bridge.logs()
    assert logs.count("Too many HAP connections") == 1, "logged once, not per connection"
    assert "Traceback" not in logs
    print(f"paired and read in {paired_in:.2f} s with 1,100 silent connections open")


@pytest.mark.parametrize(("level", "shown"), [("info", False), ("debug", True)])
async def test_a_flood_of_strangers_is_not_a_log_line_each_at_the_shipped_level(
    make_bridge: Callable[..., BridgeProcess], level: str, shown: bool
) -> None:
    # HAP-python logs every TCP connection at INFO; those lines are for debugging.
    bridge = make_bridge(log_level=level)
    with silent_connections(bridge.host, bridge.hap_port, 200, wait=0.2) as flood:
        assert len(flood) >= 150  # a few may find the accept queue full
        await wait_for(
            lambda: "Too many HAP connections" in bridge.logs(), timeout=10, message="noticed"
        )
        # Every one accepted by now: the server has taken the last stranger's handshake-less
        # connection when a controller's request behind them is answered.
        home = await HapClient.pair(
            bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code
        )
        await home.close()
    logs = bridge.logs()
    connections_logged = logs.count("Connection made")
    assert connections_logged >= len(flood) if shown else connections_logged == 0
    assert logs.count("Too many HAP connections") == 1


async def test_running_out_of_file_descriptors_is_logged_once(
    make_bridge: Callable[..., BridgeProcess],
) -> None:
    bridge = make_bridge(start=False)
    # About 11 are the bridge's own: a few strangers more and accept() fails (EMFILE).
    bridge.open_files_limit = (20, 20)
    bridge.start()
    with silent_connections(bridge.host, bridge.hap_port, 150, wait=0.2):
        await wait_for(
            lambda: "Cannot accept connections" in bridge.logs(), timeout=10, message="logged"
        )
    logs = bridge.logs()
    assert logs.count("Cannot accept connections") == 1
    assert "Too many open files" in logs
    assert "Traceback" not in logs and "out of system resource" not in logs
    # And it still serves a controller once the flood is over.
    home = await HapClient.pair(bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code)
    try:
        assert await home.list_accessories()
    finally:
        await home.close()


async def test_the_soft_open_files_limit_is_raised_to_the_hard_one(
    make_bridge: Callable[..., BridgeProcess],
) -> None:
    bridge = make_bridge(start=False)
    bridge.open_files_limit = (SERVICE_OPEN_FILES, 4 * SERVICE_OPEN_FILES)
    bridge.start()
    limits = Path(f"/proc/{bridge.pid}/limits").read_text()
    [line] = [row for row in limits.splitlines() if row.startswith("Max open files")]
    assert line.split()[3:5] == [str(4 * SERVICE_OPEN_FILES)] * 2
