"""An asyncio TCP proxy for fault tests, between the bridge and a broker or an accessory.

    async with TcpProxy("127.0.0.1", peer.port) as proxy:   # listens on 127.0.0.1:proxy.port
        ...                                   # point the client at proxy.host:proxy.port
        proxy.set_mode(BLACKHOLE)             # silent partition, live connections included
        proxy.set_mode(rst_after(200))        # reset once 200 bytes went client -> server
        proxy.set_mode(PASS)
        proxy.connections                     # connections accepted so far

Modes. Each chunk read looks at the current mode, so a switch applies to live connections as
well as to new ones:
- PASS: forward both ways (half-closes and resets are passed on).
- BLACKHOLE: accept, read and drop both ways, never answer; new connections are not forwarded
  at all. A connection that lost bytes stays silent until it ends (its byte stream cannot be
  resumed consistently); its upstream side is closed when the client side ends.
- RST: new connections are reset at once (SO_LINGER 0, then close); switching to RST resets
  the live ones on their next chunk (`reset_all()` resets them at once).
- rst_after(n): forward until n bytes in total went client -> server on a connection, then
  reset both sides of it.
- delay(ms): each chunk is delivered ms after it was read; order is kept and throughput is
  not limited by the delay.

Bounded: at most `max_connections` at once (more are reset and counted in `refused`), reads
of `chunk_size`, at most `queue_chunks` chunks in flight per direction (then reading waits),
an upstream connect timeout, and `stop()` waits at most `stop_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, Self

ModeKind = Literal["pass", "blackhole", "rst", "rst_after", "delay"]


@dataclass(frozen=True)
class Mode:
    kind: ModeKind
    n_bytes: int = 0
    delay_ms: float = 0.0

    def __str__(self) -> str:
        if self.kind == "rst_after":
            return f"rst_after({self.n_bytes})"
        if self.kind == "delay":
            return f"delay({self.delay_ms:g})"
        return self.kind


PASS = Mode("pass")
BLACKHOLE = Mode("blackhole")
RST = Mode("rst")


def rst_after(n_bytes: int) -> Mode:
    if n_bytes < 0:
        raise ValueError("n_bytes must be >= 0")
    return Mode("rst_after", n_bytes=n_bytes)


def delay(ms: float) -> Mode:
    if ms < 0:
        raise ValueError("ms must be >= 0")
    return Mode("delay", delay_ms=float(ms))


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_EOF = _Marker("EOF")
_RESET = _Marker("RESET")
_Item = tuple[float, "bytes | _Marker"]


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None and not writer.transport.is_closing():
        writer.close()


class _Connection:
    def __init__(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        self.client_reader = client_reader
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.up_bytes = 0
        self.black = False
        self.ended = False

    def reset(self) -> None:
        if not self.ended:
            self.ended = True
            _reset(self.client)
            _reset(self.server)

    def close(self) -> None:
        if not self.ended:
            self.ended = True
            _close(self.client)
            _close(self.server)


class TcpProxy:
    """Listens on host:port (port 0: a free one) and forwards to target_host:target_port."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: Mode = PASS,
        max_connections: int = 64,
        chunk_size: int = 65536,
        queue_chunks: int = 64,
        connect_timeout: float = 5.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.target: tuple[str, int] = (target_host, target_port)  # may change; new conns
        self.host = host
        self._requested_port = port
        self._mode = mode
        self.max_connections = max_connections
        self.chunk_size = chunk_size
        self.queue_chunks = queue_chunks
        self.connect_timeout = connect_timeout
        self.stop_timeout = stop_timeout
        # Counters.
        self.connections = 0  # accepted, whatever happened to them
        self.accepted_at: deque[float] = deque(maxlen=10_000)  # time.monotonic() of each
        self.refused = 0  # over max_connections
        self.resets = 0  # connections this proxy reset (rst, rst_after, passed-on resets)
        self.upstream_failures = 0
        self.bytes_up = 0  # forwarded client -> server
        self.bytes_down = 0  # forwarded server -> client
        self.dropped_bytes = 0  # read and dropped while blackholed
        self._server: asyncio.Server | None = None
        self._live: set[_Connection] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    # ---- control ------------------------------------------------------------------------
    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(self, mode: Mode) -> None:
        self._mode = mode

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("proxy not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active(self) -> int:
        return len(self._live)

    def reset_all(self) -> None:
        for conn in list(self._live):
            self.resets += 1
            conn.reset()

    def accepted_since(self, since: float) -> int:
        return sum(1 for at in self.accepted_at if at >= since)

    # ---- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self._requested_port, reuse_address=True
        )

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._live):
            conn.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=self.stop_timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), self.stop_timeout)
        self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- one connection -----------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        self.accepted_at.append(time.monotonic())
        conn = _Connection(reader, writer)
        try:
            if len(self._live) >= self.max_connections:
                self.refused += 1
                conn.reset()
                return
            self._live.add(conn)
            await self._run(conn)
        finally:
            self._live.discard(conn)
            conn.close()
            self._handlers.discard(task)

    async def _run(self, conn: _Connection) -> None:
        mode = self._mode
        if mode.kind == "rst" or (mode.kind == "rst_after" and mode.n_bytes == 0):
            self.resets += 1
            conn.reset()
            return
        if mode.kind == "blackhole":
            conn.black = True
            await self._swallow(conn.client_reader)
            return
        try:
            server_reader, server = await asyncio.wait_for(
                asyncio.open_connection(*self.target), self.connect_timeout
            )
        except (OSError, TimeoutError):
            self.upstream_failures += 1
            self.resets += 1
            conn.reset()  # what the client would see from a closed port
            return
        conn.server = server
        if conn.ended:  # stopped while connecting
            _close(server)
            return
        await asyncio.gather(
            self._pump(conn, conn.client_reader, server, upstream=True),
            self._pump(conn, server_reader, conn.client, upstream=False),
        )

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(self.chunk_size):
                self.dropped_bytes += len(data)

    async def _pump(
        self,
        conn: _Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Item] = asyncio.Queue(self.queue_chunks)
        sender = asyncio.create_task(self._send(conn, queue, writer, upstream=upstream))
        try:
            while not conn.ended:
                try:
                    data = await reader.read(self.chunk_size)
                except OSError:  # the other end reset: pass it on
                    if not conn.ended:
                        self.resets += 1
                    conn.reset()
                    return
                if conn.ended:
                    return
                if not data:
                    if conn.black:
                        conn.close()  # nothing passes a partition, not even the FIN
                        return
                    await self._put(queue, (loop.time(), _EOF), sender)
                    break
                mode = self._mode
                if conn.black or mode.kind == "blackhole":
                    conn.black = True
                    self.dropped_bytes += len(data)
                    continue
                if mode.kind == "rst":
                    self.resets += 1
                    conn.reset()
                    return
                at = loop.time() + (mode.delay_ms / 1000 if mode.kind == "delay" else 0.0)
                if upstream and mode.kind == "rst_after":
                    room = mode.n_bytes - conn.up_bytes
                    if room <= 0:
                        self.resets += 1
                        conn.reset()
                        return
                    if len(data) >= room:
                        conn.up_bytes += room
                        if await self._put(queue, (at, data[:room]), sender):
                            await self._put(queue, (at, _RESET), sender)
                        break
                if upstream:
                    conn.up_bytes += len(data)
                if not await self._put(queue, (at, data), sender):
                    return
            await sender
        finally:
            if not sender.done():
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender

    @staticmethod
    async def _put(queue: asyncio.Queue[_Item], item: _Item, sender: asyncio.Task[None]) -> bool:
        """Queue one item unless the sender has ended (then nobody would take it)."""
        while queue.full():
            if sender.done():
                return False
            await asyncio.sleep(0.005)
        queue.put_nowait(item)
        return True

    async def _send(
        self,
        conn: _Connection,
        queue: asyncio.Queue[_Item],
        writer: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        while not conn.ended:
            at, item = await queue.get()
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if conn.ended:
                return
            if item is _RESET:
                self.resets += 1
                conn.reset()
                return
            if item is _EOF:
                with contextlib.suppress(OSError, RuntimeError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            assert isinstance(item, bytes)
            if conn.black:
                self.dropped_bytes += len(item)  # queued before the partition began
                continue
            try:
                writer.write(item)
                await writer.drain()
            except OSError:
                if not conn.ended:
                    self.resets += 1
                conn.reset()
                return
            if upstream:
                self.bytes_up += len(item)
            else:
                self.bytes_down += len(item)
