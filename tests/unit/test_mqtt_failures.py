"""Naming a refused connection from its CONNACK code: which failure, which key; and what a
failed attempt says about the protocol version. (The TLS failures come from real handshakes
in tests/integration/test_mqtt_tls.py.)"""

from __future__ import annotations

import pytest

from mqtt_hk_bridge.config import MqttConfig, TlsConfig
from mqtt_hk_bridge.mqtt.failures import (
    Attempt,
    FailureKind,
    Outage,
    ProtocolAnswer,
    classify,
    protocol_answer,
)
from mqtt_hk_bridge.mqtt.tls import TlsFileError

#: MQTT 3.1.1 return codes 4, 5 and MQTT 5 reason codes 0x86, 0x87.
LOGIN_CODES = [4, 5, 0x86, 0x87]


@pytest.mark.parametrize("code", LOGIN_CODES)
def test_a_login_refused_without_a_username_asks_for_one(code: int) -> None:
    failure = classify(MqttConfig(), Attempt("CONNACK x: Not authorized", connack=code))
    assert (failure.kind, failure.key) == (FailureKind.LOGIN_REQUIRED, "mqtt.username")


@pytest.mark.parametrize("code", LOGIN_CODES)
def test_a_login_refused_with_a_username_names_the_password(code: int) -> None:
    config = MqttConfig(username="hk", password="wrong")
    failure = classify(config, Attempt("CONNACK x: Not authorized", connack=code))
    assert (failure.kind, failure.key) == (FailureKind.LOGIN_REFUSED, "mqtt.password")
    assert "wrong" not in str(failure)  # never the password itself


def test_a_username_without_a_password_says_so() -> None:
    failure = classify(MqttConfig(username="hk"), Attempt("CONNACK 5: x", connack=5))
    assert str(failure) == (
        "the broker refused the login of user 'hk' (CONNACK 5: x); no password is set; "
        "check mqtt.password (or mqtt.password_file, or MQTT_HK_BRIDGE_MQTT_PASSWORD) and "
        "mqtt.username"
    )


@pytest.mark.parametrize("code", [2, 0x85])
def test_a_refused_client_id_names_its_key(code: int) -> None:
    failure = classify(MqttConfig(client_id="dup"), Attempt("CONNACK", connack=code))
    assert (failure.kind, failure.key) == (FailureKind.REFUSED, "mqtt.client_id")


def test_another_refusal_points_at_the_brokers_log() -> None:
    failure = classify(MqttConfig(), Attempt("CONNACK 138: Banned", connack=0x8A))
    assert (
        str(failure) == "the broker refused the connection (CONNACK 138: Banned); its log says why"
    )
    assert failure.key is None and not failure.transient


def test_an_unusable_tls_file_names_its_key() -> None:
    err = TlsFileError("mqtt.tls.ca", "/etc/ca.crt", "cannot read it: No such file or directory")
    failure = classify(MqttConfig(), Attempt(str(err), cause=err))
    assert (failure.kind, failure.key) == (FailureKind.TLS_FILES, "mqtt.tls.ca")
    assert str(failure) == (
        "mqtt.tls.ca cannot be used: /etc/ca.crt: cannot read it: No such file or directory; "
        "fix that file or point mqtt.tls.ca at another"
    )


def test_a_refused_tcp_connection_is_transient() -> None:
    err = ConnectionRefusedError(111, "Connection refused")
    failure = classify(MqttConfig(port=1884), Attempt(str(err), cause=err))
    assert failure.kind == FailureKind.UNREACHABLE and failure.transient
    assert str(failure) == (
        "cannot reach localhost:1884 ([Errno 111] Connection refused); check mqtt.host and "
        "mqtt.port, and that the broker runs"
    )


def test_the_event_carries_the_last_failure() -> None:
    failure = classify(MqttConfig(), Attempt("CONNACK 5: x", connack=5))
    outage = Outage(failure, attempts=3, seconds=4.2)
    assert outage.details() == {
        "failure": "login_required",
        "key": "mqtt.username",
        "attempts": 3,
        "seconds": 4.2,
    }
    assert outage.message.startswith(
        "connected to the MQTT broker again after 3 failed attempt(s) in 4.2 s; the last: "
        "the broker requires a login"
    )


@pytest.mark.parametrize("code", [1, 0x84])
def test_a_refused_protocol_version_is_a_refusal_of_the_protocol(code: int) -> None:
    attempt = Attempt("CONNACK: Unsupported protocol version", connack=code)
    assert protocol_answer(MqttConfig(), attempt) == ProtocolAnswer.REFUSED


@pytest.mark.parametrize("code", [*LOGIN_CODES, 2, 0x85, 0x8A])
def test_any_other_connack_shows_the_broker_speaks_the_protocol(code: int) -> None:
    attempt = Attempt("CONNACK x", connack=code)
    assert protocol_answer(MqttConfig(), attempt) == ProtocolAnswer.SPOKEN


def test_no_connack_at_all_is_silence() -> None:
    attempt = Attempt("nothing within 10 s", cause=TimeoutError(), no_connack=True)
    assert protocol_answer(MqttConfig(), attempt) == ProtocolAnswer.SILENT
    assert classify(MqttConfig(), attempt).kind == FailureKind.NO_ANSWER


def test_a_close_without_connack_is_silence_except_under_tls() -> None:
    """Under TLS, a close before CONNACK is how a broker refuses a client certificate."""
    closed = Attempt("[Errno 104] Connection reset by peer", closed_by_broker=True)
    assert protocol_answer(MqttConfig(), closed) == ProtocolAnswer.SILENT
    assert protocol_answer(MqttConfig(tls=TlsConfig()), closed) == ProtocolAnswer.UNKNOWN


def test_an_unreachable_broker_says_nothing_about_the_protocol() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    assert protocol_answer(MqttConfig(), Attempt(str(refused), cause=refused)) == (
        ProtocolAnswer.UNKNOWN
    )
    timed_out = TimeoutError("timed out")  # the TCP connect itself
    assert protocol_answer(MqttConfig(), Attempt("x", cause=timed_out)) == ProtocolAnswer.UNKNOWN
