"""Broker logins: which names a device may have, and the password file (issue 14, item 2).

That Mosquitto itself accepts the entries is shown in tests/integration/test_mosquitto_acl.py.
"""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest

from mqtt_hk_bridge.mqtt_users import (
    BRIDGE_LOGIN,
    NEW_FILE_MODE,
    MqttUserError,
    check_device_login,
    generate_password,
    password_entry,
    set_password,
)

ALIASES = {"hue", "kitchen.lamp"}


def check(name: str) -> str:
    return check_device_login(name, controller_aliases=ALIASES, bridge_logins={BRIDGE_LOGIN})


@pytest.mark.parametrize(
    "name", ["esp8266_12345678", "TEST", "hue2", "hue-bulb", "kitchen", "x" * 64, "küche"]
)
def test_device_ids_that_stay_in_their_subtree_are_accepted(name: str) -> None:
    assert check(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("x" * 65, "longer than 64"),
        ("esp/Switch", "inside the subtree of device 'esp'"),
        ("+", "wildcard"),
        ("esp#", "wildcard"),
        ("a:b", "':'"),
        ("esp\n1", "control character"),
        ("esp\x001", "control character"),
        ("esp\udcff", "UTF-8"),
        ("bridge", "the bridge's own subtree"),
        (BRIDGE_LOGIN, "the bridge's own login"),
        ("hue", "paired"),
        ("hue-2", "paired as 'hue'"),
        ("kitchen.lamp-12", "paired as 'kitchen.lamp'"),
    ],
)
def test_names_that_could_escape_are_refused_with_a_reason(name: str, reason: str) -> None:
    with pytest.raises(MqttUserError, match=reason.replace("(", r"\(")):
        check(name)


def test_entry_is_pbkdf2_sha512_in_mosquittos_layout() -> None:
    salt = bytes(range(12))
    entry = password_entry("esp1", "secret", salt=salt, iterations=101)
    name, hashed = entry.split(":", 1)
    empty, tag, iterations, encoded_salt, encoded_digest = hashed.split("$")
    assert (name, empty, tag, iterations) == ("esp1", "", "7", "101")
    assert base64.b64decode(encoded_salt) == salt
    expected = hashlib.pbkdf2_hmac("sha512", b"secret", salt, 101)
    assert base64.b64decode(encoded_digest) == expected


def test_generated_passwords_are_long_random_and_firmware_friendly() -> None:
    passwords = {generate_password() for _ in range(100)}
    assert len(passwords) == 100
    for password in passwords:
        assert len(password) == 32
        assert password.replace("-", "").replace("_", "").isalnum()


def test_a_new_file_gets_the_entry_and_is_readable_by_the_broker(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    assert set_password(path, "esp1", "pw") is False
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("esp1:$7$101$")
    assert stat.S_IMODE(path.stat().st_mode) == NEW_FILE_MODE


def test_an_existing_entry_is_replaced_and_other_lines_kept(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("alice:$7$101$a$b\nesp1:$7$101$old$old\n# a comment\nesp10:$7$101$c$d\n")
    path.chmod(0o600)
    assert set_password(path, "esp1", "pw") is True
    lines = path.read_text().splitlines()
    assert lines[0] == "alice:$7$101$a$b"
    assert lines[1].startswith("esp1:$7$101$") and "old" not in lines[1]
    assert lines[2:] == ["# a comment", "esp10:$7$101$c$d"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # its permissions stay
    assert set_password(path, "esp2", "pw") is False
    assert path.read_text().splitlines()[-1].startswith("esp2:$7$")


def test_an_unwritable_place_is_an_error_that_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "passwd"
    with pytest.raises(MqttUserError, match="cannot write the password file"):
        set_password(path, "esp1", "pw")
