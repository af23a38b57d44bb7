"""MQTT over TLS, with logins, against a real Mosquitto (TLS listener, certificates made by
the test, a password file made by mosquitto_passwd): devices reach the Home app, and each
way a connection can be refused gives one log line naming the failure and the key to
change, bounded retries, and a `bridge/event` once the broker is reached again."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.bridge_process import BridgeProcess
from tests.support.certs import KeyPair
from tests.support.mosquitto import Mosquitto, MqttProbe, TlsListener, write_password_file
from tests.support.wait import wait_for

from .mqtt_transports import (
    Pki,
    assert_bridge_topics_retained,
    client_context,
    device_round_trip,
    make_pki,
    problem_lines,
    replace_files,
)

LINK = "ERROR mqtt_hk_bridge.mqtt.link"
#: The test bridge's backoff cap (bridge_process.TEST_TIMING).
RETRY = "(retrying, up to 2 s apart)"
CREDENTIALS = "mqtt.password (or mqtt.password_file, or MQTT_HK_BRIDGE_MQTT_PASSWORD)"
CLIENT_CERTIFICATE_REMEDY = (
    "set mqtt.tls.cert and mqtt.tls.key to a certificate the broker accepts (from a CA it "
    "trusts, not expired) and its key"
)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def tls_probe(broker: Mosquitto, pki: Pki, **options: Any) -> MqttProbe:
    """A device or Node-RED on the broker's TLS port."""
    return MqttProbe(
        broker.host, broker.tls_port, tls_context=client_context(pki.ca.ca_path), **options
    )


async def test_tls_with_a_login_carries_devices_and_the_bridge_topics(
    make_mosquitto: Callable[..., Mosquitto], pki: Pki, tmp_path: Path
) -> None:
    passwords = write_password_file(
        tmp_path / "passwd", {"hkbridge": "bridge-secret-1", "esp": "device-secret-2"}
    )
    broker = make_mosquitto(
        tls=TlsListener(pki.broker.cert, pki.broker.key, pki.ca.ca_path),
        password_file=passwords,
        allow_anonymous=False,
    )
    bridge_dir = tmp_path / "bridge"
    bridge_dir.mkdir()
    secret = bridge_dir / "mqtt_password"
    secret.write_text("bridge-secret-1\n")
    secret.chmod(0o600)
    bridge = BridgeProcess(
        bridge_dir,
        broker.tls_port,
        # Relative: next to bridge.yaml, as a user keeps them; the password is not in it.
        mqtt={"username": "hkbridge", "password_file": "mqtt_password", "tls": {"ca": "ca.crt"}},
    )
    (bridge_dir / "ca.crt").write_bytes(pki.ca.ca_path.read_bytes())
    bridge.start()
    try:
        assert "bridge-secret-1" not in bridge.config_path.read_text()
        assert f"Connected to MQTT broker 127.0.0.1:{broker.tls_port} (MQTT 5)" in bridge.logs()
        assert "u'hkbridge'" in broker.log_text()  # it logged in
        login = {"username": "esp", "password": "device-secret-2"}
        async with tls_probe(broker, pki, **login) as device:
            await device_round_trip(bridge, device)
        await assert_bridge_topics_retained(lambda: tls_probe(broker, pki, **login), bridge, "5")
        assert problem_lines(bridge) == []
    finally:
        bridge.stop()


async def test_mutual_tls_with_the_password_in_the_environment(
    make_mosquitto: Callable[..., Mosquitto],
    pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passwords = write_password_file(tmp_path / "passwd", {"hkbridge": "from-env-3"})
    broker = make_mosquitto(
        tls=TlsListener(pki.broker.cert, pki.broker.key, pki.ca.ca_path, require_certificate=True),
        password_file=passwords,
        allow_anonymous=False,
    )
    monkeypatch.setenv("MQTT_HK_BRIDGE_MQTT_PASSWORD", "from-env-3")
    tls = {"ca": str(pki.ca.ca_path), "cert": str(pki.client.cert), "key": str(pki.client.key)}
    bridge = BridgeProcess(
        tmp_path / "bridge", broker.tls_port, mqtt={"username": "hkbridge", "tls": tls}
    )
    bridge.start()
    try:
        device_pair = pki.ca.issue("esp", client=True)
        login = {"username": "hkbridge", "password": "from-env-3"}

        def device() -> MqttProbe:
            context = client_context(pki.ca.ca_path, device_pair)
            return MqttProbe(broker.host, broker.tls_port, tls_context=context, **login)

        async with device() as esp:
            await device_round_trip(bridge, esp)
        await assert_bridge_topics_retained(device, bridge, "5")
        assert "from-env-3" not in bridge.log()
    finally:
        bridge.stop()


async def test_insecure_skips_the_host_name_check_only(
    make_mosquitto: Callable[..., Mosquitto], pki: Pki, tmp_path: Path
) -> None:
    misnamed = pki.ca.issue("nas", hosts=["nas.example.org"])
    broker = make_mosquitto(tls=TlsListener(misnamed.cert, misnamed.key, pki.ca.ca_path))
    warning = (
        "WARNING mqtt_hk_bridge.mqtt.link: mqtt.tls.insecure is true: the broker's "
        "certificate is not checked against mqtt.host, so anyone with a certificate from "
        "a trusted CA can pose as the broker"
    )
    bridge = BridgeProcess(
        tmp_path / "bridge",
        broker.tls_port,
        mqtt={"tls": {"ca": str(pki.ca.ca_path), "insecure": True}},
    )
    bridge.start()
    try:
        context = client_context(pki.ca.ca_path)
        context.check_hostname = False  # the device is as lenient as the bridge
        async with MqttProbe(broker.host, broker.tls_port, tls_context=context) as device:
            await device_round_trip(bridge, device)
        assert problem_lines(bridge) == [warning]  # once, however many connections
    finally:
        bridge.stop()
    # The chain is still verified: a certificate from another CA is refused.
    other_ca = pki.other_ca.ca_path
    untrusting = BridgeProcess(
        tmp_path / "untrusting",
        broker.tls_port,
        mqtt={"tls": {"ca": str(other_ca), "insecure": True}},
    )
    untrusting.start(expect_mqtt=False)
    try:
        refused = (
            f"{LINK}: MQTT connection to 127.0.0.1:{broker.tls_port} failed: the broker's "
            f"certificate is not signed by the CA in mqtt.tls.ca ({other_ca}) (self-signed "
            "certificate in certificate chain); set mqtt.tls.ca to the CA certificate that "
            f"signed the broker's certificate {RETRY}"
        )
        await wait_for(lambda: refused in untrusting.logs(), timeout=15, message=refused)
        assert problem_lines(untrusting) == [warning, refused]
    finally:
        untrusting.stop()


@dataclass
class Refusal:
    """One way the broker refuses the bridge, and how a person fixes it."""

    broker: dict[str, Any]
    mqtt: dict[str, Any]
    #: The log line, after "ERROR mqtt_hk_bridge.mqtt.link: ".
    line: str
    kind: str
    key: str | None
    fix: Callable[[Mosquitto, Path], None]
    #: Failed attempts to see before the fix (each refused client certificate takes the
    #: 10 s CONNACK timeout: TLS 1.3 sends that refusal after the handshake).
    attempts: int = 2
    observer: dict[str, Any] = field(default_factory=dict)


def _refusals(pki: Pki, tmp_path: Path) -> dict[str, Refusal]:
    ca = str(pki.ca.ca_path)
    expired = pki.ca.issue("expired-broker", hosts=["127.0.0.1"], expired=True)
    misnamed = pki.ca.issue("misnamed-broker", hosts=["mqtt.example.org"])
    passwords = tmp_path / "passwd"
    observer = {"username": "observer", "password": "observer-pw"}

    def listener(pair: KeyPair, **options: Any) -> TlsListener:
        return TlsListener(pair.cert, pair.key, pki.ca.ca_path, **options)

    def renew_broker(broker: Mosquitto, _bridge_dir: Path) -> None:
        assert broker.tls is not None
        replace_files(KeyPair(broker.tls.cert, broker.tls.key), pki.broker)
        broker.sighup()  # Mosquitto reloads its certificate and key on SIGHUP

    def right_ca_file(_broker: Mosquitto, bridge_dir: Path) -> None:
        (bridge_dir / "ca.crt").write_bytes(pki.ca.ca_path.read_bytes())

    def right_client_files(_broker: Mosquitto, bridge_dir: Path) -> None:
        replace_files(KeyPair(bridge_dir / "client.crt", bridge_dir / "client.key"), pki.client)

    def set_password(broker: Mosquitto, _bridge_dir: Path) -> None:
        write_password_file(passwords, {"hkbridge": "new-pw", "observer": "observer-pw"})
        broker.sighup()

    def allow_anonymous(broker: Mosquitto, _bridge_dir: Path) -> None:
        broker.allow_anonymous = True
        broker.reload()

    def login_broker() -> dict[str, Any]:
        write_password_file(passwords, {"hkbridge": "old-pw", "observer": "observer-pw"})
        return {
            "tls": listener(pki.broker),
            "password_file": passwords,
            "allow_anonymous": False,
        }

    untrusted_ca = str(tmp_path / "bridge" / "ca.crt")
    return {
        "wrong CA": Refusal(
            broker={"tls": listener(pki.broker)},
            mqtt={"tls": {"ca": "ca.crt"}},
            line="the broker's certificate is not signed by the CA in mqtt.tls.ca "
            f"({untrusted_ca}) (self-signed certificate in certificate chain); set mqtt.tls.ca "
            "to the CA certificate that signed the broker's certificate",
            kind="tls_untrusted",
            key="mqtt.tls.ca",
            fix=right_ca_file,
        ),
        "expired certificate": Refusal(
            broker={"tls": listener(expired)},
            mqtt={"tls": {"ca": ca}},
            line="the broker's certificate is not valid today (certificate has expired); "
            "renew it on the broker (or the CA in mqtt.tls.ca, if that is the one that "
            "expired), or correct this machine's clock",
            kind="tls_expired",
            key="mqtt.tls.ca",
            fix=renew_broker,
        ),
        "host-name mismatch": Refusal(
            broker={"tls": listener(misnamed)},
            mqtt={"tls": {"ca": ca}},
            line="the broker's certificate is not issued for '127.0.0.1', the mqtt.host; set "
            "mqtt.host to a name the certificate holds, or (unsafe) mqtt.tls.insecure: true",
            kind="tls_hostname",
            key="mqtt.host",
            fix=renew_broker,
        ),
        "client certificate refused": Refusal(
            broker={"tls": listener(pki.broker, require_certificate=True)},
            mqtt={"tls": {"ca": ca, "cert": "client.crt", "key": "client.key"}},
            line="the broker refused the client certificate in mqtt.tls.cert "
            f"({tmp_path / 'bridge' / 'client.crt'}); {CLIENT_CERTIFICATE_REMEDY}",
            kind="tls_client_certificate",
            key="mqtt.tls.cert",
            fix=right_client_files,
            attempts=1,
        ),
        "wrong password": Refusal(
            broker=login_broker(),
            mqtt={"tls": {"ca": ca}, "username": "hkbridge", "password": "new-pw"},
            line="the broker refused the login of user 'hkbridge' (CONNACK 135: Not "
            f"authorized); check {CREDENTIALS} and mqtt.username",
            kind="login_refused",
            key="mqtt.password",
            fix=set_password,
            observer=observer,
        ),
        "login required": Refusal(
            broker=login_broker(),
            mqtt={"tls": {"ca": ca}},
            line="the broker requires a login (CONNACK 135: Not authorized); set "
            f"mqtt.username (or MQTT_HK_BRIDGE_MQTT_USERNAME) and {CREDENTIALS}",
            kind="login_required",
            key="mqtt.username",
            fix=allow_anonymous,
            observer=observer,
        ),
    }


REFUSALS = [
    "wrong CA",
    "expired certificate",
    "host-name mismatch",
    "client certificate refused",
    "wrong password",
    "login required",
]


@pytest.mark.parametrize("name", REFUSALS)
async def test_refusal_is_named_once_retried_and_reported_when_fixed(
    name: str, make_mosquitto: Callable[..., Mosquitto], pki: Pki, tmp_path: Path
) -> None:
    case = _refusals(pki, tmp_path)[name]
    broker = make_mosquitto(**case.broker)
    bridge_dir = tmp_path / "bridge"
    bridge_dir.mkdir(exist_ok=True)
    # What the user got wrong, as files next to bridge.yaml (fixed in place later).
    (bridge_dir / "ca.crt").write_bytes(pki.other_ca.ca_path.read_bytes())
    stranger = pki.other_ca.issue("stranger", client=True)
    (bridge_dir / "client.crt").write_bytes(stranger.cert.read_bytes())
    (bridge_dir / "client.key").write_bytes(stranger.key.read_bytes())
    (bridge_dir / "client.key").chmod(0o600)
    async with broker.probe(**case.observer) as observer:
        await observer.subscribe("HomeKit/bridge/#")
        bridge = BridgeProcess(bridge_dir, broker.tls_port, mqtt=case.mqtt)
        bridge.start(expect_mqtt=False)
        try:
            expected = f"{LINK}: MQTT connection to 127.0.0.1:{broker.tls_port} failed: "
            expected += f"{case.line} {RETRY}"
            seen = f"(attempt {case.attempts})" if case.attempts > 1 else expected
            await wait_for(lambda: seen in bridge.logs(), timeout=25, message=seen)
            # One line, at ERROR, however often it retried; no traceback, no other noise.
            assert problem_lines(bridge) == [expected]
            assert "Traceback" not in bridge.log()
            assert not observer.messages_on("HomeKit/bridge/state")

            case.fix(broker, bridge_dir)
            message = await observer.wait_message(
                "HomeKit/bridge/event", lambda m: b"mqtt_connect_failed" in m.payload, timeout=15
            )
            event = json.loads(message.payload)
            assert (event["type"], event["failure"], event["key"]) == (
                "mqtt_connect_failed",
                case.kind,
                case.key,
            )
            attempts, seconds = event["attempts"], event["seconds"]
            assert attempts >= case.attempts
            # Backoff: after 0.25 + 0.5 + 1 s of the first waits, at least 1 s apart (cap 2 s).
            assert attempts <= 4 + seconds, f"{attempts} attempts in {seconds} s"
            assert event["message"] == (
                f"connected to the MQTT broker again after {attempts} failed attempt(s) in "
                f"{seconds:.1f} s; the last: {case.line}"
            )
            state = await observer.wait_message("HomeKit/bridge/state")
            assert state.payload == b"online"
        finally:
            bridge.stop()


async def test_missing_client_certificate_is_named(
    make_mosquitto: Callable[..., Mosquitto], pki: Pki, tmp_path: Path
) -> None:
    broker = make_mosquitto(
        tls=TlsListener(pki.broker.cert, pki.broker.key, pki.ca.ca_path, require_certificate=True)
    )
    bridge = BridgeProcess(
        tmp_path / "bridge", broker.tls_port, mqtt={"tls": {"ca": str(pki.ca.ca_path)}}
    )
    bridge.start(expect_mqtt=False)
    try:
        expected = (
            f"{LINK}: MQTT connection to 127.0.0.1:{broker.tls_port} failed: the broker "
            f"requires a client certificate; {CLIENT_CERTIFICATE_REMEDY} {RETRY}"
        )
        await wait_for(lambda: expected in bridge.logs(), timeout=25, message=expected)
        assert problem_lines(bridge) == [expected]
    finally:
        bridge.stop()
