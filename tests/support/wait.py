"""Bounded waiting and free ports: the only ways tests synchronise with real peers."""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "",
) -> T:
    """Poll a sync or async predicate until it returns something truthy; return that value.

    Raises AssertionError (with `message` and the last value seen) when `timeout` passes.
    The predicate is always evaluated at least once, and once more at the deadline, so a
    condition that becomes true while we sleep is not reported as a timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        value = await result if inspect.isawaitable(result) else result
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(
                f"timed out after {timeout:.1f}s waiting for {message or predicate!r}"
                f" (last value {value!r})"
            )
        await asyncio.sleep(min(interval, remaining))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now.

    The kernel picks it; the socket is closed before returning, so another process could
    take it in between, which is acceptable for tests on one machine.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> int:
    """The first of `count` consecutive TCP ports on 127.0.0.1 that are free right now (a
    bridge with several HAP bridges serves on port, port + 1, ...)."""
    for _ in range(100):
        first = free_port()
        if first + count - 1 > 65535:
            continue
        sockets: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return first
    raise AssertionError(f"found no {count} consecutive free ports")


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when a TCP connect to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
