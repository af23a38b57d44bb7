"""The event loop's error reports: one line for exhausted file descriptors, none for a
socket that closed before the loop could watch it, the usual report for anything else."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from mqtt_hk_bridge.resources import log_exhaustion_once


async def test_a_socket_closed_before_it_is_watched_is_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    log_exhaustion_once(loop)
    try:
        first, second = socket.socketpair()
        fd = first.fileno()
        first.close()
        second.close()
        with caplog.at_level(logging.DEBUG):
            loop.call_soon(loop.add_writer, fd, lambda: None)
            loop.call_soon(lambda: 1 / 0)  # any other failure is still reported
            await asyncio.sleep(0.05)
    finally:
        loop.set_exception_handler(previous)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "lambda" in errors[0]
    assert any("closed before the loop could watch it" in r.getMessage() for r in caplog.records)
