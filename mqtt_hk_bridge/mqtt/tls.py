"""The files the `mqtt:` section names: the TLS context built from them, and the checks
`check-config` (and `run`, before it starts) makes of them."""

from __future__ import annotations

import os
import ssl
import stat
from collections.abc import Callable
from dataclasses import dataclass

from ..config import MqttConfig, TlsConfig
from ..errors import BridgeError


class TlsFileError(BridgeError):
    """A file under `mqtt.tls` cannot be used; names its key (`keys` when the certificate
    and its key cannot be told apart), its path and why."""

    def __init__(self, key: str, path: str, reason: str, keys: str | None = None) -> None:
        super().__init__(f"{keys or key}: {path}: {reason}")
        self.key = key
        self.keys = keys or key
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class FileWarning:
    key: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.key}: {self.path}: {self.reason}"


def _readable(key: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise TlsFileError(key, path, f"cannot read it: {err.strerror}") from err


def _ssl_reason(err: ssl.SSLError) -> str:
    # "[X509: NO_CERTIFICATE_OR_CRL_FOUND] no certificate or crl found (_ssl.c:4149)" and
    # the like: the words after the bracket are the ones a person can act on.
    text = str(err.args[1]) if len(err.args) > 1 else str(err)
    return text.split("] ", 1)[-1].split(" (_ssl.c", 1)[0]


def _encrypted_key(tls: TlsConfig) -> Callable[[], bytes]:
    # Without a password callback OpenSSL would prompt on the terminal and wait for ever.
    def refuse() -> bytes:
        key = "mqtt.tls.key" if tls.key is not None else "mqtt.tls.cert"
        raise TlsFileError(
            key,
            str(tls.key or tls.cert),
            "the private key is encrypted; give the bridge an unencrypted copy "
            "(`openssl pkey -in KEY -out PLAIN.key`, then chmod 600 it)",
        )

    return refuse


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """TLS 1.2 or newer, the broker's certificate verified against `ca` alone (or the
    system's CAs) and, unless `insecure`, its host name; `cert`/`key` for mutual TLS. Built
    anew for each connection, so renewed files are picked up on the next connect."""
    if tls.ca is not None:
        _readable("mqtt.tls.ca", tls.ca)
    try:
        context = ssl.create_default_context(cafile=tls.ca)
    except ssl.SSLError as err:
        reason = f"not a PEM CA certificate ({_ssl_reason(err)})"
        raise TlsFileError("mqtt.tls.ca", str(tls.ca), reason) from err
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert is not None:
        _readable("mqtt.tls.cert", tls.cert)
        if tls.key is not None:
            _readable("mqtt.tls.key", tls.key)
        try:
            context.load_cert_chain(tls.cert, tls.key, password=_encrypted_key(tls))
        except ssl.SSLError as err:
            reason = f"not a PEM certificate with its private key ({_ssl_reason(err)})"
            if tls.key is None:
                raise TlsFileError("mqtt.tls.cert", tls.cert, reason) from err
            paths = f"{tls.cert}, {tls.key}"
            both = "mqtt.tls.cert and mqtt.tls.key"
            raise TlsFileError("mqtt.tls.cert", paths, reason, keys=both) from err
    if tls.insecure:
        context.check_hostname = False
    return context


def _world_readable(key: str, path: str | None) -> FileWarning | None:
    if path is None:
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # reported as an error elsewhere
    if not mode & stat.S_IROTH:
        return None
    return FileWarning(
        key,
        path,
        f"every user of this machine can read it (mode {stat.S_IMODE(mode):04o}); `chmod o-r` it",
    )


def check_files(mqtt: MqttConfig) -> list[FileWarning]:
    """Raise TlsFileError for a TLS file that is missing, unreadable or not valid; return
    warnings for secrets that every local user can read (the private key, the password
    file). A container's secret mounted 0444 is only a warning: no one else is there."""
    found = [_world_readable("mqtt.password_file", mqtt.password_file)]
    tls = mqtt.tls
    if tls is not None:
        tls_context(tls)
        if tls.key is not None:
            found.append(_world_readable("mqtt.tls.key", tls.key))
        elif tls.cert is not None:  # it loaded, so the key is in the certificate's file
            found.append(_world_readable("mqtt.tls.cert", tls.cert))
    return [warning for warning in found if warning is not None]
