"""Where HAP bridge n lives: its port, its name and its state folder. Pure, no I/O but
listing data_dir.

Bridge 1 is the one bridge of every install made before there were several: its files stay
in data_dir itself under the names they always had, so an existing pairing carries on.
Bridge n (n >= 2) keeps the same files in `data_dir/bridge-<n>/`, serves on
`homekit.port + n - 1` and is called `<homekit.name> <n>`.
"""

from __future__ import annotations

import re
from pathlib import Path

from .. import const

FIRST = 1
_FOLDER = re.compile(r"^bridge-([1-9][0-9]*)$")


def state_dir(data_dir: Path, number: int) -> Path:
    return data_dir if number == FIRST else data_dir / f"bridge-{number}"


def port(first_port: int, number: int) -> int:
    return first_port + number - 1


def name(first_name: str, number: int) -> str:
    return first_name if number == FIRST else f"{first_name} {number}"


def created(data_dir: Path) -> list[int]:
    """Bridges opened on an earlier run (bridge 1 always counts): they open again at start."""
    numbers = {FIRST}
    try:
        entries = list(data_dir.iterdir())
    except FileNotFoundError:
        entries = []
    for entry in entries:
        match = _FOLDER.match(entry.name)
        if match and (entry / const.HAP_STATE_FILE).exists():
            numbers.add(int(match.group(1)))
    return sorted(numbers)


def port_problem(number: int, problem: str) -> str:
    """A listen problem of bridge n's port, saying which bridge and port rule it is."""
    if number == FIRST:
        return problem
    return f"bridge {number} (port homekit.port + {number - 1}): {problem}"
