"""The setup code and setup id: random per install, stored 0600, shown only when unpaired."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import const
from ..config import SETUP_CODE_RE
from ..store import JsonStore

SETUP_ID_ALPHABET = string.digits + string.ascii_uppercase


@dataclass(frozen=True)
class SetupInfo:
    code: str
    setup_id: str


def generate_setup_code() -> str:
    """A random `XXX-XX-XXX`, drawn again while it is one HomeKit refuses."""
    while True:
        digits = f"{secrets.randbelow(10**8):08d}"
        code = f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"
        if code not in const.TRIVIAL_SETUP_CODES:
            return code


def generate_setup_id() -> str:
    return "".join(secrets.choice(SETUP_ID_ALPHABET) for _ in range(4))


def _validate(data: Any) -> None:
    if not SETUP_CODE_RE.match(str(data["setup_code"])) or len(str(data["setup_id"])) != 4:
        raise ValueError("expected a setup_code XXX-XX-XXX and a 4-character setup_id")


def load_setup(path: Path, configured_code: str | None) -> SetupInfo:
    """The stored setup code and id, created on first start; bridge.yaml's code wins."""
    store = JsonStore(path, _validate)
    data = store.load()
    code = configured_code or (data["setup_code"] if data else generate_setup_code())
    setup_id = data["setup_id"] if data else generate_setup_id()
    info = SetupInfo(code, setup_id)
    if data != {"setup_code": info.code, "setup_id": info.setup_id}:
        store.save({"setup_code": info.code, "setup_id": info.setup_id})
    return info
