"""State files: atomic JSON (temp file, fsync, rename, fsync dir), mode 0600, with a .bak.

A state file holds identity (HAP keys, pairings, aids and iids): losing it silently would
make the Home app forget every accessory, so a corrupt file stops start-up with its name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from .errors import StateFileError

_LOGGER = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700


def ensure_private_dir(path: Path) -> None:
    """Create the state directory readable by its owner only."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a crash leaves the old or the new file, never half,
    and never neither.

    The previous version is kept as `<name>.bak`: a second name for the current file (a copy
    where the file system has no hard links), made before the new file replaces it in one
    rename. A failed write (disk full) leaves the old file as it was and removes the temp.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    bak_tmp = path.with_name(f".{path.name}.bak.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            _second_name(path, bak_tmp)
            os.replace(bak_tmp, backup_path(path))
        os.replace(tmp, path)
    except BaseException:
        for leftover in (tmp, bak_tmp):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _second_name(path: Path, target: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        target.unlink()  # left by a crash
    try:
        os.link(path, target)
    except OSError:
        shutil.copy2(path, target)


#: What loads fell back to a .bak since the process started (for a `bridge/event`).
_RESTORED: list[str] = []


def take_restorations() -> list[str]:
    """The state files restored from their .bak since the last call, as messages."""
    taken = list(_RESTORED)
    _RESTORED.clear()
    return taken


def backup_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.bak")


class JsonStore:
    """One JSON state file. `validate` checks the shape and raises ValueError when wrong.

    `compact` writes it on one line: for files rewritten per accessory shown (ids), as
    indented JSON goes through the json module's pure-Python encoder, four times slower.
    """

    def __init__(self, path: Path, validate: Any = None, *, compact: bool = False) -> None:
        self.path = path
        self._validate = validate
        self._indent = None if compact else 1

    def load(self) -> Any | None:
        """The stored data, the .bak's if the primary is corrupt, or None when there is none."""
        errors: list[str] = []
        for candidate in (self.path, backup_path(self.path)):
            try:
                text = candidate.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as err:
                errors.append(f"{candidate}: {err}")
                continue
            try:
                data = json.loads(text)
                if self._validate is not None:
                    self._validate(data)
            except (ValueError, TypeError, KeyError) as err:
                errors.append(f"{candidate}: {err}")
                continue
            if candidate != self.path:
                why = "is corrupt" if errors else "is missing (a crash while saving?)"
                message = f"state file {self.path} {why}; restored from {candidate}"
                _LOGGER.warning("%s", message[0].upper() + message[1:])
                _RESTORED.append(message)
            return data
        if errors:
            raise StateFileError(
                "state file is corrupt and has no usable backup (move it away to start "
                "afresh, which forgets what it held): " + "; ".join(errors)
            )
        return None

    def save(self, data: Any) -> None:
        write_atomic(self.path, json.dumps(data, indent=self._indent, sort_keys=True))
