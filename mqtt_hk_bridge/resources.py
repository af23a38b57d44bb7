"""What the process does about its own limits: as many file descriptors as it may have, one
log line, not thousands, when they run out anyway, and no traceback for a socket that closed
before the loop could watch it."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

_LOGGER = logging.getLogger(__name__)

#: asyncio's message when accept() fails for want of file descriptors (or memory).
_ACCEPT_EXHAUSTED = "socket.accept() out of system resource"
#: That message is logged at most this often (asyncio retries every second, per socket).
EXHAUSTION_LOG_INTERVAL = 60.0


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit (a systemd service's soft limit
    is 1,024); returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as err:
        _LOGGER.debug("Could not raise the open-file limit from %d to %d: %s", soft, hard, err)
        return soft
    return hard


def log_exhaustion_once(loop: asyncio.AbstractEventLoop) -> None:
    """Report accept() failing for want of resources once a minute, without its traceback;
    everything else goes to the loop's usual handler."""
    last: list[float] = [-EXHAUSTION_LOG_INTERVAL]

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if _closed_socket_watch(context):
            _LOGGER.debug("A socket closed before the loop could watch it: %s", context)
            return
        if context.get("message") != _ACCEPT_EXHAUSTED:
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - last[0] >= EXHAUSTION_LOG_INTERVAL:
            last[0] = now
            _LOGGER.error(
                "Cannot accept connections: %s (open-file limit %d); retrying every second",
                context.get("exception"),
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            )

    loop.set_exception_handler(handler)


def _closed_socket_watch(context: dict[str, Any]) -> bool:
    """paho (under aiomqtt) asks the loop to watch its socket from a callback; when the broker
    has just closed the connection (a refused TLS handshake), that socket is gone by then and
    the loop reports a traceback for what the MQTT link already reports in its own words."""
    exception = context.get("exception")
    handle = repr(context.get("handle", ""))
    watching = "add_writer" in handle or "add_reader" in handle
    return watching and isinstance(exception, (OSError, ValueError))
