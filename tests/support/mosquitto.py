"""A real Mosquitto broker on 127.0.0.1 (optionally with a TLS listener and a password
file) and an aiomqtt probe to talk to it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiomqtt

from tests.support.wait import free_port, port_accepts, wait_for

_FALLBACK_BINARY = "/usr/sbin/mosquitto"


def mosquitto_binary() -> str:
    """Path of the mosquitto executable (/usr/sbin is often not on PATH)."""
    return shutil.which("mosquitto") or _FALLBACK_BINARY


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file made by `mosquitto_passwd` (hashed, as a broker keeps it).

    Rewritten whole, so a test can change a password and SIGHUP the broker."""
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    for user, password in users.items():
        subprocess.run(["mosquitto_passwd", "-b", str(path), user, password], check=True)
    return path


@dataclass(frozen=True)
class TlsListener:
    """A second listener with TLS: the broker's certificate and key, and the CA file client
    certificates must chain to (`require_certificate` for mutual TLS)."""

    cert: Path
    key: Path
    ca: Path
    require_certificate: bool = False

    def config_lines(self, port: int, host: str) -> list[str]:
        return [
            f"listener {port} {host}",
            f"cafile {self.ca}",
            f"certfile {self.cert}",
            f"keyfile {self.key}",
            f"require_certificate {'true' if self.require_certificate else 'false'}",
        ]


class Mosquitto:
    """One broker process with its own config, port and data directory.

    The port and data directory survive stop()/kill9()/start(), so a restart looks to
    clients like the same broker coming back (retained messages persist when
    `persistent=True`). `tls` adds a TLS listener on `tls_port`; `password_file` (see
    write_password_file) requires a login on every listener. Both may be changed between
    stop() and start(): the configuration is written at each start.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        persistent: bool = False,
        autosave_interval: int = 1,
        allow_anonymous: bool = True,
        port: int | None = None,
        extra_config: Sequence[str] = (),
        tls: TlsListener | None = None,
        password_file: Path | None = None,
    ) -> None:
        self._own_dir = base_dir is None
        self.dir = Path(tempfile.mkdtemp(prefix="mosquitto-")) if base_dir is None else base_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls_port = free_port()
        self.persistent = persistent
        self.autosave_interval = autosave_interval
        self.allow_anonymous = allow_anonymous
        self.extra_config = list(extra_config)
        self.tls = tls
        self.password_file = password_file
        self.conf_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"persistence {'true' if self.persistent else 'false'}",
        ]
        if self.persistent:
            # Trailing slash: mosquitto concatenates location and file name verbatim.
            lines += [
                f"persistence_location {self.dir}/",
                f"autosave_interval {self.autosave_interval}",
            ]
        if os.geteuid() == 0:
            # As root, mosquitto would switch to user "mosquitto", which cannot write here.
            lines.append(f"user {pwd.getpwuid(0).pw_name}")
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file}")
        lines += self.extra_config
        if self.tls is not None:  # last: the lines after `listener` belong to it
            lines += self.tls.config_lines(self.tls_port, self.host)
        return "\n".join(lines) + "\n"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker (same port and data dir as before); return once it accepts TCP."""
        if self.running:
            raise RuntimeError("mosquitto is already running")
        self.conf_path.write_text(self._config())
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [mosquitto_binary(), "-c", str(self.conf_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        ports = [self.port] + ([self.tls_port] if self.tls is not None else [])
        while not all(port_accepts(self.host, port) for port in ports):
            if not self.running:
                raise RuntimeError(f"mosquitto exited at start-up:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.kill9()
                raise RuntimeError(
                    f"mosquitto did not listen within {timeout}s:\n{self.log_text()}"
                )
            time.sleep(0.02)  # bounded poll of a child process we own

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM): mosquitto saves its database when persistent."""
        self._end(signal.SIGTERM, timeout)

    def kill9(self) -> None:
        """Crash stop (SIGKILL): only what autosave already wrote survives."""
        self._end(signal.SIGKILL, 10.0)

    def sighup(self) -> None:
        """Ask the broker to reload its config (password file, ACL, `allow_anonymous`, and
        the listeners' certificate and key files, but not their CA file)."""
        if self._proc is not None and self.running:
            self._proc.send_signal(signal.SIGHUP)

    def reload(self) -> None:
        """Write the configuration from this object's settings again, then sighup()."""
        self.conf_path.write_text(self._config())
        self.sighup()

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def close(self) -> None:
        """Stop and remove the directory if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def probe(self, **client_options: Any) -> MqttProbe:
        return MqttProbe(self.host, self.port, **client_options)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Mosquitto({self.host}:{self.port}, running={self.running})"


@dataclass(frozen=True)
class ReceivedMessage:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float = field(default_factory=time.monotonic)


_probe_counter = 0


def _next_identifier() -> str:
    global _probe_counter
    _probe_counter += 1
    return f"probe-{os.getpid()}-{_probe_counter}"


class MqttProbe:
    """An MQTT client for tests that records every message it receives.

    `async with MqttProbe(host, port) as probe:` connects; a background task appends each
    message to `probe.messages` from then on, so waiting never misses an early delivery.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        identifier: str | None = None,
        **client_options: Any,
    ) -> None:
        self.host = host
        self.port = port
        self.identifier = identifier or _next_identifier()
        self._client_options = client_options
        self.messages: list[ReceivedMessage] = []
        self.error: BaseException | None = None
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def client(self) -> aiomqtt.Client:
        if self._client is None:
            raise RuntimeError("MqttProbe is not connected; use `async with`")
        return self._client

    async def __aenter__(self) -> Self:
        self._client = aiomqtt.Client(
            self.host, self.port, identifier=self.identifier, **self._client_options
        )
        await self._client.__aenter__()
        self._reader = asyncio.create_task(self._read(), name=f"mqtt-probe-{self.identifier}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._client is not None:
            # The broker may already be gone (a test stopped it); that is not a probe failure.
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(exc_type, exc, tb)
        self._client = None

    async def _read(self) -> None:
        try:
            async for message in self.client.messages:
                raw = message.payload  # always bytes from the wire; the type is wider
                payload = bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw).encode()
                self.messages.append(
                    ReceivedMessage(message.topic.value, payload, message.retain, message.qos)
                )
        except aiomqtt.MqttError as err:
            # Kept for wait_message's failure text; tests that stop the broker expect this.
            self.error = err

    async def publish(
        self, topic: str, payload: bytes | str | None, retain: bool = False, qos: int = 1
    ) -> None:
        await self.client.publish(topic, payload, qos=qos, retain=retain)

    async def subscribe(self, pattern: str, qos: int = 1) -> None:
        await self.client.subscribe(pattern, qos=qos)

    async def unsubscribe(self, pattern: str) -> None:
        await self.client.unsubscribe(pattern)

    def messages_on(self, topic: str) -> list[ReceivedMessage]:
        """Messages received whose topic matches `topic` (wildcards allowed)."""
        return [m for m in self.messages if aiomqtt.Topic(m.topic).matches(topic)]

    async def wait_message(
        self,
        topic: str,
        predicate: Callable[[ReceivedMessage], bool] | None = None,
        timeout: float = 10.0,
    ) -> ReceivedMessage:
        """First message on `topic` (wildcards allowed) satisfying `predicate`, already
        received or arriving within `timeout`."""

        def first_match() -> ReceivedMessage | None:
            for message in self.messages_on(topic):
                if predicate is None or predicate(message):
                    return message
            return None

        try:
            found = await wait_for(
                first_match, timeout=timeout, message=f"MQTT message on {topic!r}"
            )
        except AssertionError as err:
            if self.error is not None:
                raise AssertionError(f"{err}; probe reader stopped: {self.error!r}") from None
            raise
        assert found is not None
        return found
