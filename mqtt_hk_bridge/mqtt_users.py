"""Broker logins for devices: `mqtt-hk-bridge mqtt-user add <device_id>`.

The shipped Mosquitto ACL (deploy/mosquitto/acl) lets a login read and write
`HomeKit/<its name>/#` and nothing else, so a login's name IS the subtree it may write. A
name that would reach outside its own device's subtree is refused here, with the reason.
Entries are written in the format `mosquitto_passwd` writes (Mosquitto 2.0):
`<name>:$7$<iterations>$<salt, base64>$<PBKDF2-HMAC-SHA512, base64>`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from . import const
from .config import Config
from .controller.pairings import PairingStore
from .errors import BridgeError

#: The bridge's own login in the shipped ACL: it may read and write all of `HomeKit/#`.
BRIDGE_LOGIN = "mqtt-hk-bridge"
#: `$7$` is Mosquitto's tag for PBKDF2-HMAC-SHA512 (`$6$`, plain salted SHA512, is older).
HASH_TAG = 7
#: What mosquitto_passwd 2.0 uses. The passwords are random (192 bits), so key stretching
#: adds no safety here, only CPU on every device connect.
ITERATIONS = 101
SALT_BYTES = 12
#: 24 random bytes: 32 URL-safe characters, easy to paste into device firmware.
PASSWORD_BYTES = 24
#: A new password file is readable by all: the eclipse-mosquitto image reads it, through a
#: read-only mount, as its own user. Entries are salted hashes of random passwords.
NEW_FILE_MODE = 0o644
#: `<alias>-<aid>`: an accessory behind a paired HomeKit bridge (controller side).
_BRIDGED_ACCESSORY = re.compile(r"^(?P<alias>.+)-\d+$")


class MqttUserError(BridgeError):
    """A login that cannot be made (its name would leave its subtree, or the file is bad)."""


@dataclass(frozen=True)
class NewLogin:
    name: str
    password: str = field(repr=False)
    #: True when the name had an entry already (its old password no longer works).
    replaced: bool


def add_login(config: Config, device_id: str | None, password_file: Path) -> NewLogin:
    """A new random password for a device's login, or (device_id None) the bridge's own,
    written to `password_file`."""
    bridge_login = config.mqtt.username or BRIDGE_LOGIN
    if device_id is None:
        name = bridge_login
    else:
        store = PairingStore(config.data_dir / config.controller.pairing_file)
        name = check_device_login(
            device_id,
            controller_aliases=store.aliases(),
            bridge_logins={bridge_login, BRIDGE_LOGIN},
        )
    password = generate_password()
    return NewLogin(name, password, set_password(password_file, name, password))


def check_device_login(
    name: str, *, controller_aliases: Collection[str], bridge_logins: Collection[str]
) -> str:
    """`name` if a device may have it as its broker login; MqttUserError saying why not."""
    if not name:
        raise MqttUserError("the name is empty: a device's login is its device id")
    if len(name) > const.MAX_DEVICE_ID_LENGTH:
        raise MqttUserError(
            f"{name[:20]!r}... is longer than {const.MAX_DEVICE_ID_LENGTH} characters, "
            "the longest device id"
        )
    if "/" in name:
        owner = name.split("/", 1)[0]
        raise MqttUserError(
            f"{name!r} contains '/': its subtree HomeKit/{name}/# lies inside the subtree "
            f"of device {owner!r}, which it could then write"
        )
    if "+" in name or "#" in name:
        raise MqttUserError(
            f"{name!r} contains an MQTT wildcard ('+' or '#'): Mosquitto denies such a login "
            "every topic of the ACL, and no device id may hold one"
        )
    if ":" in name:
        raise MqttUserError(f"{name!r} contains ':', which ends the name in the password file")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        raise MqttUserError(f"{name!r} contains a control character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise MqttUserError(f"{name!r} is not valid UTF-8, which MQTT requires") from None
    if name == const.BRIDGE_DEVICE_ID:
        raise MqttUserError(
            f"{name!r} is the bridge's own subtree (HomeKit/{name}/...: its state, requests "
            "and responses); no device may write there"
        )
    if name in bridge_logins:
        raise MqttUserError(
            f"{name!r} is the bridge's own login, which may read and write all of HomeKit/#; "
            "use --bridge to give it a new password"
        )
    if name in controller_aliases:
        raise MqttUserError(
            f"{name!r} is a HomeKit accessory the bridge paired (controller side): the bridge "
            f"publishes its state under HomeKit/{name}/ and takes its commands there"
        )
    bridged = _BRIDGED_ACCESSORY.match(name)
    if bridged is not None and bridged["alias"] in controller_aliases:
        raise MqttUserError(
            f"{name!r} names an accessory behind the HomeKit bridge the bridge paired as "
            f"{bridged['alias']!r} (controller side); its topics belong to the bridge"
        )
    return name


def generate_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def password_entry(
    name: str, password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS
) -> str:
    """One password-file line (without its newline), as mosquitto_passwd would write it."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    encoded_salt = base64.b64encode(salt).decode("ascii")
    encoded_digest = base64.b64encode(digest).decode("ascii")
    return f"{name}:${HASH_TAG}${iterations}${encoded_salt}${encoded_digest}"


def _entry_name(line: str) -> str:
    """The login a password-file line is for (Mosquitto: everything before the first ':')."""
    return line.rstrip("\r\n").split(":", 1)[0]


def set_password(path: Path, name: str, password: str) -> bool:
    """Add `name` to the password file, or replace its entry; True when it was replaced.

    Every other line stays as it was. The file is replaced in one step (a reload of the
    broker never reads half of it) and keeps its permissions.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        lines, mode = [], NEW_FILE_MODE
    except (OSError, UnicodeDecodeError) as err:
        raise MqttUserError(f"cannot read the password file {path}: {err}") from err
    entry = password_entry(name, password)
    replaced = any(_entry_name(line) == name for line in lines)
    if replaced:
        lines = [entry if _entry_name(line) == name else line for line in lines]
    else:
        lines.append(entry)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)  # exactly `mode`, whatever the umask
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise MqttUserError(f"cannot write the password file {path}: {err}") from err
    return replaced
