"""The Mosquitto configuration we ship (deploy/mosquitto), run by a real Mosquitto on loopback.

The shipped mosquitto.conf is written for the eclipse-mosquitto container (paths under
/mosquitto/config, `listener 1883` on every interface). A test broker keeps every line of
it except the listener, persistence and logging, which the fixture sets itself (a free
loopback port, a temp directory); the paths point at a copy of the folder. The ACL file is
used as shipped, unchanged.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.support.bridge_process import REPO_ROOT
from tests.support.mosquitto import Mosquitto

SHIPPED_DIR = REPO_ROOT / "deploy" / "mosquitto"
#: Where the eclipse-mosquitto container sees the folder (docker-compose.yml mounts it there).
CONTAINER_DIR = "/mosquitto/config"
#: Lines about where the broker listens and keeps its files: the fixture's business.
_FIXTURE_OWNED = ("listener", "persistence", "persistence_location", "log_dest")


def shipped_config_lines(config_dir: Path) -> list[str]:
    """The shipped mosquitto.conf, pointed at `config_dir`, minus _FIXTURE_OWNED lines."""
    lines = []
    for line in (SHIPPED_DIR / "mosquitto.conf").read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#") or words[0] in _FIXTURE_OWNED:
            continue
        lines.append(line.replace(CONTAINER_DIR, str(config_dir)))
    return lines


def copy_shipped_dir(target: Path) -> Path:
    """A copy of deploy/mosquitto (without a password file: each test makes its own)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("mosquitto.conf", "acl"):
        shutil.copy(SHIPPED_DIR / name, target / name)
    return target


def start_shipped_broker(make_mosquitto: Callable[..., Mosquitto], config_dir: Path) -> Mosquitto:
    """A broker with the shipped settings; `config_dir` must hold acl and passwd.

    The fixture's own `allow_anonymous true` comes first, so only the shipped line can
    make the broker refuse anonymous clients.
    """
    return make_mosquitto(allow_anonymous=True, extra_config=shipped_config_lines(config_dir))


def mosquitto_passwd(password_file: Path, name: str, password: str) -> None:
    """Add a login with Mosquitto's own tool (creating the file if needed)."""
    create = [] if password_file.exists() else ["-c"]
    subprocess.run(
        ["mosquitto_passwd", *create, "-b", str(password_file), name, password],
        check=True,
        capture_output=True,
    )
