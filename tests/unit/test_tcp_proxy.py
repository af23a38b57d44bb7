"""tests/support/tcp_proxy.py against a tiny echo server on loopback (each test well under 1 s)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from tests.support.tcp_proxy import BLACKHOLE, PASS, RST, TcpProxy, delay, rst_after
from tests.support.wait import free_port, wait_for


@pytest.fixture
async def echo() -> AsyncIterator[tuple[int, list[int]]]:
    """An echo server; yields (port, bytes received per connection)."""
    received: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(received)
        received.append(0)
        try:
            while data := await reader.read(65536):
                received[index] += len(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], received
    finally:
        server.close()


async def _connect(proxy: TcpProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", proxy.port), 2)


async def _roundtrip(proxy: TcpProxy, payload: bytes) -> bytes:
    reader, writer = await _connect(proxy)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), 2)
    finally:
        writer.close()


async def test_pass_forwards_and_counts(echo: tuple[int, list[int]]) -> None:
    port, _ = echo
    async with TcpProxy("127.0.0.1", port) as proxy:
        assert proxy.mode == PASS and proxy.port != port
        assert await _roundtrip(proxy, b"hello") == b"hello"
        big = bytes(range(256)) * 2048  # 512 KiB: several chunks both ways
        assert await _roundtrip(proxy, big) == big
        assert proxy.connections == 2
        await wait_for(lambda: proxy.active == 0, timeout=2, message="connections closed")
        assert proxy.bytes_up == proxy.bytes_down == 5 + len(big)


async def test_blackhole_drops_live_and_new_connections(echo: tuple[int, list[int]]) -> None:
    port, received = echo
    async with TcpProxy("127.0.0.1", port) as proxy:
        reader, writer = await _connect(proxy)
        writer.write(b"before")
        assert await asyncio.wait_for(reader.readexactly(6), 2) == b"before"
        proxy.set_mode(BLACKHOLE)
        writer.write(b"lost")
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(10), 0.3)
        # A new connection is accepted, read and never answered, and never reaches the server.
        reader2, writer2 = await _connect(proxy)
        writer2.write(b"x" * 1000)
        await writer2.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader2.read(10), 0.3)
        assert proxy.connections == 2 and len(received) == 1
        # The live connection lost bytes: it stays silent even after the partition heals.
        proxy.set_mode(PASS)
        writer.write(b"after")
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(10), 0.3)
        assert received == [6]
        await wait_for(lambda: proxy.dropped_bytes == 1009, timeout=2, message="drop count")
        writer.close()
        writer2.close()
        # A fresh connection passes again.
        assert await _roundtrip(proxy, b"healed") == b"healed"
        await wait_for(lambda: proxy.active == 0, timeout=2, message="all closed")


async def test_rst_resets_at_once(echo: tuple[int, list[int]]) -> None:
    port, received = echo
    async with TcpProxy("127.0.0.1", port, mode=RST) as proxy:
        reader, writer = await _connect(proxy)
        with pytest.raises(ConnectionResetError):
            writer.write(b"ping")
            await writer.drain()
            await asyncio.wait_for(reader.read(10), 2)
        writer.close()
        assert proxy.connections == 1 and proxy.resets == 1 and received == []


async def test_rst_after_forwards_n_bytes_then_resets_both_sides(
    echo: tuple[int, list[int]],
) -> None:
    port, received = echo
    async with TcpProxy("127.0.0.1", port, mode=rst_after(10)) as proxy:
        reader, writer = await _connect(proxy)
        writer.write(b"12345")
        assert await asyncio.wait_for(reader.readexactly(5), 2) == b"12345"
        got = b""
        with pytest.raises(ConnectionResetError):
            writer.write(b"6789ABCDEF")  # crosses 10: "6789A" is forwarded, then RST
            await writer.drain()
            while chunk := await asyncio.wait_for(reader.read(100), 2):
                got += chunk
        writer.close()
        # The server saw exactly 10 bytes and lost its connection too.
        await wait_for(lambda: received == [10], timeout=2, message="server got 10 bytes")
        assert got in (b"", b"6789A")  # the echo may or may not beat the reset
        await wait_for(lambda: proxy.active == 0, timeout=2, message="closed")
        assert proxy.resets == 1


async def test_delay_delays_each_chunk_and_keeps_order(echo: tuple[int, list[int]]) -> None:
    port, _ = echo
    async with TcpProxy("127.0.0.1", port, mode=delay(100)) as proxy:
        reader, writer = await _connect(proxy)
        started = time.monotonic()
        for part in (b"a", b"b", b"c"):
            writer.write(part)
            await writer.drain()
        data = b""
        while len(data) < 3:
            data += await asyncio.wait_for(reader.read(10), 2)
        elapsed = time.monotonic() - started
        writer.close()
    assert data == b"abc"
    # 100 ms each way, not 100 ms per chunk in sequence.
    assert 0.19 <= elapsed < 0.5, elapsed


async def test_connection_cap_and_clean_stop(echo: tuple[int, list[int]]) -> None:
    port, _ = echo
    proxy = TcpProxy("127.0.0.1", port, max_connections=2)
    await proxy.start()
    clients = [await _connect(proxy) for _ in range(3)]
    await wait_for(lambda: proxy.connections == 3, timeout=2, message="3 accepted")
    assert proxy.refused == 1 and proxy.active == 2
    reader, writer = clients[2]
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 2)
    listening = proxy.port
    started = time.monotonic()
    await proxy.stop()
    assert time.monotonic() - started < 1
    assert proxy.active == 0
    for reader, writer in clients[:2]:
        # The live ones are closed by stop().
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(10), 2) == b""
        writer.close()
    with pytest.raises(OSError):  # no longer listening
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", listening), 1)


async def test_unreachable_target_resets_the_client() -> None:
    async with TcpProxy("127.0.0.1", free_port()) as proxy:
        reader, writer = await _connect(proxy)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 2)
        writer.close()
        assert proxy.upstream_failures == 1
