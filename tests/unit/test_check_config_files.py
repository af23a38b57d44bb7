"""`check-config` (and `run`, before it starts anything) checks the files `mqtt:` names:
they exist, can be read and loaded, and secrets are not readable by every user."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from mqtt_hk_bridge.cli import main
from tests.support.certs import CertificateAuthority, KeyPair
from tests.support.wait import free_port


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki")


@pytest.fixture
def client(ca: CertificateAuthority) -> KeyPair:
    return ca.issue("bridge", client=True)


def config_file(tmp_path: Path, mqtt: str) -> Path:
    # Never started here unless a check is missing; even then only on loopback.
    path = tmp_path / "bridge.yaml"
    path.write_text(
        f"mqtt: {mqtt}\n"
        f"homekit: {{address: 127.0.0.1, port: {free_port()}}}\n"
        "zeroconf: {interfaces: [127.0.0.1]}\n"
    )
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check-config", "-c", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_good_files_are_ok(
    tmp_path: Path, ca: CertificateAuthority, client: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(
        tmp_path, f"{{tls: {{ca: {ca.ca_path}, cert: {client.cert}, key: {client.key}}}}}"
    )
    assert check(path, capsys) == (0, f"{path}: OK\n", "")


def test_a_missing_ca_file_is_named_with_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path, "{tls: {ca: certs/ca.crt}}")
    code, out, err = check(path, capsys)
    assert (code, out) == (2, "")
    assert err == (
        f"mqtt-hk-bridge: {path}: mqtt.tls.ca: {tmp_path / 'certs' / 'ca.crt'}: cannot read "
        "it: No such file or directory\n"
    )


def test_a_ca_file_that_is_not_a_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    code, _, err = check(config_file(tmp_path, "{tls: {ca: ca.crt}}"), capsys)
    assert code == 2
    assert f"mqtt.tls.ca: {tmp_path / 'ca.crt'}: not a PEM CA certificate (" in err


def test_a_key_that_is_not_the_certificates(
    tmp_path: Path, ca: CertificateAuthority, client: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    other = ca.issue("other", client=True)
    path = config_file(tmp_path, f"{{tls: {{cert: {client.cert}, key: {other.key}}}}}")
    code, _, err = check(path, capsys)
    assert code == 2
    assert (
        f"mqtt.tls.cert and mqtt.tls.key: {client.cert}, {other.key}: not a PEM certificate "
        "with its private key (key values mismatch)"
    ) in err


def test_an_encrypted_key_is_refused_without_prompting(
    tmp_path: Path, client: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    key = serialization.load_pem_private_key(client.key.read_bytes(), password=None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    locked.chmod(0o600)
    code, _, err = check(
        config_file(tmp_path, f"{{tls: {{cert: {client.cert}, key: {locked}}}}}"), capsys
    )
    assert code == 2
    assert f"mqtt.tls.key: {locked}: the private key is encrypted" in err


def test_a_world_readable_key_is_a_warning(
    tmp_path: Path, ca: CertificateAuthority, client: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    client.key.chmod(0o644)
    path = config_file(tmp_path, f"{{tls: {{cert: {client.cert}, key: {client.key}}}}}")
    assert check(path, capsys) == (
        0,
        f"{path}: OK\n",
        f"{path}: warning: mqtt.tls.key: {client.key}: every user of this machine can read "
        "it (mode 0644); `chmod o-r` it\n",
    )


def test_a_world_readable_password_file_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "mqtt_password"
    secret.write_text("pw\n")
    secret.chmod(0o604)
    code, _, err = check(config_file(tmp_path, "{password_file: mqtt_password}"), capsys)
    assert code == 0
    assert err == (
        f"{tmp_path / 'bridge.yaml'}: warning: mqtt.password_file: {secret}: every user of "
        "this machine can read it (mode 0604); `chmod o-r` it\n"
    )


def test_run_refuses_to_start_with_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path, "{tls: {ca: absent.crt}}")
    assert main(["run", "-c", str(path)]) == 2
    assert "mqtt.tls.ca" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # nothing was started
