"""State files: atomic JSON (temp file, fsync, rename, fsync dir), mode 0600, with a .bak.

A state file holds identity (HAP keys, pairings, aids and iids): losing it silently would
make the Home app forget every accessory, so a corrupt file stops start-up with its name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
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
    """Replace `path` with `text` so that a crash leaves the old or the new file, never half.

    The previous version is kept as `<name>.bak`; a failed write (disk full) leaves the
    old file as it was and removes the temp file.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.replace(path, backup_path(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def backup_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.bak")


class JsonStore:
    """One JSON state file. `validate` checks the shape and raises ValueError when wrong."""

    def __init__(self, path: Path, validate: Any = None) -> None:
        self.path = path
        self._validate = validate

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
            if errors:
                _LOGGER.warning("State file %s is corrupt; restored from %s", self.path, candidate)
            return data
        if errors:
            raise StateFileError(
                "state file is corrupt and has no usable backup (move it away to start "
                "afresh, which forgets what it held): " + "; ".join(errors)
            )
        return None

    def save(self, data: Any) -> None:
        write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True))
