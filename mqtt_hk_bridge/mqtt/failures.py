"""Why a connection to the broker failed, in words a person can act on: which failure it
is and which `mqtt.*` key to change; and what a failed attempt says about the protocol
version the broker speaks. Pure functions; the link says what it saw in `Attempt`,
library-neutral terms, and logs what `classify` answers.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from enum import StrEnum

from ..config import TRANSPORT_WEBSOCKETS, MqttConfig
from .tls import TlsFileError

#: `bridge/event` type sent once the broker is reached again after failed attempts.
EVENT_CONNECT_FAILED = "mqtt_connect_failed"

#: Where the password may come from, for the messages about logins.
_CREDENTIAL_SOURCES = "mqtt.password (or mqtt.password_file, or MQTT_HK_BRIDGE_MQTT_PASSWORD)"

#: OpenSSL's verify codes (X509_V_ERR_*) that are about dates and names; any other
#: verification failure means the chain does not lead to a CA we were told to trust.
_CERT_NOT_YET_VALID = 9
_CERT_HAS_EXPIRED = 10
_HOSTNAME_MISMATCH = 62
_IP_ADDRESS_MISMATCH = 64

#: TLS alerts a broker sends about our client certificate (OpenSSL's reason names). Under
#: TLS 1.3 the broker judges the certificate after the handshake, and its alert may be lost
#: to the connection's reset, so the messages do not depend on which alert arrived.
_CLIENT_CERTIFICATE_ALERTS = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV1_ALERT_ACCESS_DENIED",
    }
)

#: CONNACK codes about logins: MQTT 3.1.1 (4 bad user name or password, 5 not authorised)
#: and MQTT 5 (0x86, 0x87). Mosquitto answers "not authorised" to both a wrong password
#: and a missing login, so the configuration tells them apart.
_LOGIN_CODES = frozenset({4, 5, 0x86, 0x87})
#: CONNACK codes refusing the client id: 3.1.1 rc 2, MQTT 5 0x85.
_CLIENT_ID_CODES = frozenset({2, 0x85})
#: CONNACK codes refusing the protocol version: 3.1.1 rc 1, MQTT 5 0x84.
_PROTOCOL_VERSION_CODES = frozenset({1, 0x84})


class FailureKind(StrEnum):
    """Stable words, sent as `failure` in the `bridge/event`."""

    UNREACHABLE = "broker_unreachable"
    NO_ANSWER = "no_answer"
    TLS_FILES = "tls_files"
    TLS_UNTRUSTED = "tls_untrusted"
    TLS_EXPIRED = "tls_expired"
    TLS_HOSTNAME = "tls_hostname"
    TLS_CLIENT_CERTIFICATE = "tls_client_certificate"
    TLS_HANDSHAKE = "tls_handshake"
    WEBSOCKET_HANDSHAKE = "websocket_handshake"
    LOGIN_REQUIRED = "login_required"
    LOGIN_REFUSED = "login_refused"
    REFUSED = "refused"


#: Failures that may go away by themselves (a broker restarting); the rest need a person.
TRANSIENT = frozenset({FailureKind.UNREACHABLE, FailureKind.NO_ANSWER})


@dataclass(frozen=True)
class Attempt:
    """What one failed connect attempt showed, in library-neutral terms."""

    #: The library's own words for the failure.
    text: str
    #: The CONNACK code, when the broker answered and refused.
    connack: int | None = None
    #: The OS or TLS error underneath, when there was one.
    cause: BaseException | None = None
    #: The WebSockets upgrade was refused.
    websocket_refused: bool = False
    #: The connection was set up (TCP, TLS, WebSockets), then the broker closed it without
    #: a CONNACK.
    closed_by_broker: bool = False
    #: The connection was set up and the CONNECT sent, and no CONNACK came in time.
    no_connack: bool = False


@dataclass(frozen=True)
class ConnectFailure:
    kind: FailureKind
    #: What happened.
    reason: str
    #: What to change, naming the key.
    remedy: str
    #: The key to change first (`bridge/event` carries it), or None when it is the broker's.
    key: str | None

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT

    def __str__(self) -> str:
        return f"{self.reason}; {self.remedy}"


@dataclass(frozen=True)
class Outage:
    """Failed attempts before the connection that just succeeded."""

    #: The last failure, the one that was keeping the bridge away.
    failure: ConnectFailure
    attempts: int
    #: From the start of the first failed attempt to the connect, to a tenth of a second.
    seconds: float

    @property
    def message(self) -> str:
        return (
            f"connected to the MQTT broker again after {self.attempts} failed attempt(s) "
            f"in {self.seconds:.1f} s; the last: {self.failure}"
        )

    def details(self) -> dict[str, object]:
        """The `bridge/event` fields besides type, message and time."""
        return {
            "failure": str(self.failure.kind),
            "key": self.failure.key,
            "attempts": self.attempts,
            "seconds": self.seconds,
        }


class ProtocolAnswer(StrEnum):
    """What a failed attempt says about the protocol version it used."""

    #: A CONNACK refusing something else (a login, the client id): the broker speaks it.
    SPOKEN = "spoken"
    #: A CONNACK refusing the protocol version.
    REFUSED = "refused"
    #: Connected, then no CONNACK at all: how brokers without MQTT 5 (RabbitMQ before 3.13)
    #: meet an MQTT 5 CONNECT, though an overloaded broker may do the same.
    SILENT = "silent"
    #: The broker was not reached, or the failure is about TLS: nothing about the protocol.
    UNKNOWN = "unknown"


def protocol_answer(config: MqttConfig, attempt: Attempt) -> ProtocolAnswer:
    """What `attempt` says about its protocol version."""
    if attempt.connack is not None:
        if attempt.connack in _PROTOCOL_VERSION_CODES:
            return ProtocolAnswer.REFUSED
        return ProtocolAnswer.SPOKEN
    if attempt.no_connack:
        return ProtocolAnswer.SILENT
    if attempt.closed_by_broker and config.tls is None:
        # Under TLS this is how a broker refuses a client certificate (see classify).
        return ProtocolAnswer.SILENT
    return ProtocolAnswer.UNKNOWN


def _verification(config: MqttConfig, err: ssl.SSLCertVerificationError) -> ConnectFailure:
    detail = err.verify_message
    if err.verify_code in (_CERT_HAS_EXPIRED, _CERT_NOT_YET_VALID):
        return ConnectFailure(
            FailureKind.TLS_EXPIRED,
            f"the broker's certificate is not valid today ({detail})",
            "renew it on the broker (or the CA in mqtt.tls.ca, if that is the one that "
            "expired), or correct this machine's clock",
            "mqtt.tls.ca",
        )
    if err.verify_code in (_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH):
        return ConnectFailure(
            FailureKind.TLS_HOSTNAME,
            f"the broker's certificate is not issued for {config.host!r}, the mqtt.host",
            "set mqtt.host to a name the certificate holds, or (unsafe) mqtt.tls.insecure: true",
            "mqtt.host",
        )
    ca = config.tls.ca if config.tls is not None else None
    trusted = f"the CA in mqtt.tls.ca ({ca})" if ca else "a CA this system trusts"
    return ConnectFailure(
        FailureKind.TLS_UNTRUSTED,
        f"the broker's certificate is not signed by {trusted} ({detail})",
        "set mqtt.tls.ca to the CA certificate that signed the broker's certificate",
        "mqtt.tls.ca",
    )


def _client_certificate(config: MqttConfig) -> ConnectFailure:
    remedy = (
        "set mqtt.tls.cert and mqtt.tls.key to a certificate the broker accepts (from a CA "
        "it trusts, not expired) and its key"
    )
    cert = config.tls.cert if config.tls is not None else None
    if cert is None:
        reason = "the broker requires a client certificate"
    else:
        reason = f"the broker refused the client certificate in mqtt.tls.cert ({cert})"
    return ConnectFailure(FailureKind.TLS_CLIENT_CERTIFICATE, reason, remedy, "mqtt.tls.cert")


def _login(config: MqttConfig, text: str) -> ConnectFailure:
    if config.username is None:
        return ConnectFailure(
            FailureKind.LOGIN_REQUIRED,
            f"the broker requires a login ({text})",
            f"set mqtt.username (or MQTT_HK_BRIDGE_MQTT_USERNAME) and {_CREDENTIAL_SOURCES}",
            "mqtt.username",
        )
    missing = "" if config.password is not None else "; no password is set"
    return ConnectFailure(
        FailureKind.LOGIN_REFUSED,
        f"the broker refused the login of user {config.username!r} ({text}){missing}",
        f"check {_CREDENTIAL_SOURCES} and mqtt.username",
        "mqtt.password",
    )


def _tls_handshake(config: MqttConfig, detail: str) -> ConnectFailure:
    return ConnectFailure(
        FailureKind.TLS_HANDSHAKE,
        f"the TLS handshake failed ({detail})",
        f"check that mqtt.port ({config.port}) is the broker's TLS port (often 8883), or "
        "remove mqtt.tls for a port without TLS",
        "mqtt.port",
    )


def _ssl_words(err: ssl.SSLError) -> str:
    return err.reason.lower().replace("_", " ") if err.reason else str(err)


def classify(config: MqttConfig, attempt: Attempt) -> ConnectFailure:
    """The failure a person must hear about, from what one connect attempt showed."""
    cause = attempt.cause
    if isinstance(cause, TlsFileError):
        return ConnectFailure(
            FailureKind.TLS_FILES,
            f"{cause.keys} cannot be used: {cause.path}: {cause.reason}",
            f"fix that file or point {cause.keys} at another",
            cause.key,
        )
    if attempt.connack is not None:
        if attempt.connack in _LOGIN_CODES:
            return _login(config, attempt.text)
        if attempt.connack in _CLIENT_ID_CODES:
            return ConnectFailure(
                FailureKind.REFUSED,
                f"the broker refused the client id ({attempt.text})",
                "set another mqtt.client_id (or remove it for a random one)",
                "mqtt.client_id",
            )
        return ConnectFailure(
            FailureKind.REFUSED,
            f"the broker refused the connection ({attempt.text})",
            "its log says why",
            None,
        )
    if isinstance(cause, ssl.SSLCertVerificationError):
        return _verification(config, cause)
    if config.tls is not None and (
        attempt.closed_by_broker
        or (isinstance(cause, ssl.SSLError) and cause.reason in _CLIENT_CERTIFICATE_ALERTS)
    ):
        return _client_certificate(config)
    if isinstance(cause, ssl.SSLError):
        return _tls_handshake(config, _ssl_words(cause))
    if attempt.websocket_refused:
        return ConnectFailure(
            FailureKind.WEBSOCKET_HANDSHAKE,
            f"the broker did not accept MQTT over WebSockets at path {config.path!r} "
            f"({attempt.text})",
            "check mqtt.path and mqtt.port (and mqtt.tls, if that port uses TLS), or use "
            "`transport: tcp` for a plain MQTT port",
            "mqtt.path",
        )
    if attempt.closed_by_broker:
        return ConnectFailure(
            FailureKind.REFUSED,
            f"the broker closed the connection without answering ({attempt.text})",
            "its log says why; check mqtt.port (a port with TLS needs mqtt.tls)",
            "mqtt.port",
        )
    if config.tls is not None and isinstance(cause, ConnectionResetError | EOFError):
        # A plain listener resets a TLS ClientHello; so do some TLS-terminating proxies.
        return _tls_handshake(config, attempt.text)
    if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
        return ConnectFailure(
            FailureKind.UNREACHABLE,
            f"cannot reach {config.host}:{config.port} ({attempt.text})",
            "check mqtt.host and mqtt.port, and that the broker runs",
            "mqtt.host",
        )
    plain = config.tls is None and config.transport != TRANSPORT_WEBSOCKETS
    hint = "; if it is a TLS port, set mqtt.tls" if plain else ""
    return ConnectFailure(
        FailureKind.NO_ANSWER,
        f"no MQTT answer from {config.host}:{config.port} ({attempt.text})",
        f"check mqtt.port and that the broker runs{hint}",
        "mqtt.port",
    )
