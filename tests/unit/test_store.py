"""State files: what survives a crash, a full disk and a corrupt file."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqtt_hk_bridge import store
from mqtt_hk_bridge.errors import StateFileError
from mqtt_hk_bridge.store import (
    JsonStore,
    backup_path,
    ensure_private_dir,
    take_restorations,
    write_atomic,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """umask 0: the modes we check must come from the code, not from a strict umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def require_dict(data: Any) -> None:
    if not isinstance(data, dict) or "id" not in data:
        raise ValueError("expected {'id': ...}")


# --- modes -------------------------------------------------------------------------------
def test_state_file_is_created_0600(tmp_path: Path, loose_umask: None) -> None:
    path = tmp_path / "ids.json"
    JsonStore(path).save({"id": 1})
    assert mode(path) == 0o600


def test_rewritten_file_is_0600_even_if_it_was_not(tmp_path: Path, loose_umask: None) -> None:
    path = tmp_path / "ids.json"
    path.write_text("{}")
    path.chmod(0o644)
    JsonStore(path).save({"id": 1})
    assert mode(path) == 0o600


def test_ensure_private_dir_creates_0700(tmp_path: Path, loose_umask: None) -> None:
    path = tmp_path / "a" / "data"
    ensure_private_dir(path)
    assert path.is_dir()
    assert mode(path) == 0o700


def test_ensure_private_dir_tightens_an_existing_dir(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    (path / "keep.json").write_text("{}")
    ensure_private_dir(path)
    assert mode(path) == 0o700
    assert (path / "keep.json").read_text() == "{}"  # contents untouched


# --- saving ------------------------------------------------------------------------------
def test_save_and_load_round_trip(tmp_path: Path) -> None:
    data = {"id": 7, "name": "Küche", "nested": {"aids": [2, 3]}}
    JsonStore(tmp_path / "s.json").save(data)
    assert JsonStore(tmp_path / "s.json").load() == data


def test_no_file_loads_as_none(tmp_path: Path) -> None:
    assert JsonStore(tmp_path / "absent.json").load() is None


def test_previous_version_is_kept_as_bak(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    JsonStore(path).save({"id": 1})
    JsonStore(path).save({"id": 2})
    assert json.loads(path.read_text()) == {"id": 2}
    assert json.loads(backup_path(path).read_text()) == {"id": 1}
    assert backup_path(path) == tmp_path / "s.json.bak"


def test_save_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    JsonStore(path).save({"id": 1})
    JsonStore(path).save({"id": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.json.bak"]


def test_stale_temp_file_from_a_crash_does_not_stop_the_next_save(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    (tmp_path / ".s.json.tmp").write_text('{"id": "half')
    JsonStore(path).save({"id": 1})
    assert JsonStore(path).load() == {"id": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_write_atomic_writes_text_exactly(tmp_path: Path) -> None:
    path = tmp_path / "raw.txt"
    write_atomic(path, "ünïcode\n")
    assert path.read_bytes() == "ünïcode\n".encode()


# --- failed writes (disk full): the old file stays byte-identical ------------------------
def _seed(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    path = tmp_path / "s.json"
    JsonStore(path).save({"id": "old-backup"})
    JsonStore(path).save({"id": "old"})
    return path, path.read_bytes(), backup_path(path).read_bytes()


def test_disk_full_during_write_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, before, bak_before = _seed(tmp_path)

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        JsonStore(path).save({"id": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert backup_path(path).read_bytes() == bak_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.json.bak"]
    assert JsonStore(path).load() == {"id": "old"}


def test_failed_rename_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, before, bak_before = _seed(tmp_path)

    def refuse(src: Any, dst: Any) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(store.os, "replace", refuse)
    with pytest.raises(OSError):
        JsonStore(path).save({"id": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert backup_path(path).read_bytes() == bak_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.json.bak"]


def test_failed_final_rename_still_loads_the_old_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The last step (temp -> primary) failing must not lose what the file held.
    path, _, _ = _seed(tmp_path)
    real_replace = os.replace

    def refuse_temp(src: Any, dst: Any) -> None:
        if Path(src).name.endswith(".tmp"):
            raise OSError(errno.EIO, "I/O error")
        real_replace(src, dst)

    monkeypatch.setattr(store.os, "replace", refuse_temp)
    with pytest.raises(OSError):
        JsonStore(path).save({"id": "new"})
    monkeypatch.undo()
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    assert JsonStore(path).load() == {"id": "old"}


def test_temp_file_that_cannot_be_created_leaves_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a read-only directory does to a non-root user, without needing one.
    path, before, bak_before = _seed(tmp_path)
    real_open = os.open

    def read_only(file: Any, flags: int, *args: Any) -> int:
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, flags, *args)

    monkeypatch.setattr(store.os, "open", read_only)
    with pytest.raises(PermissionError):
        JsonStore(path).save({"id": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert backup_path(path).read_bytes() == bak_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.json.bak"]


def test_disk_full_leaves_old_file_and_no_temp_file(tmp_path: Path) -> None:
    # A real write failure, even as root: the file-size limit makes write() fail with EFBIG,
    # as a full disk fails it with ENOSPC.
    path, before, bak_before = _seed(tmp_path)
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from mqtt_hk_bridge.store import JsonStore\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))\n"
        "try:\n"
        "    JsonStore(Path(sys.argv[1])).save({'id': 'x' * 4096})\n"
        "except OSError as err:\n"
        "    print(type(err).__name__, err.errno)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.startswith("OSError"), result.stdout + result.stderr
    assert path.read_bytes() == before
    assert backup_path(path).read_bytes() == bak_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.json.bak"]


# --- corrupt files: fall back to .bak, or stop with the file's name ----------------------
CORRUPT = {
    "truncated to 0 bytes": b"",
    "invalid JSON": b'{"id": 1',
    "half written": b'{"id": "abc", "ne',
    "not UTF-8": b"\xff\xfe\x00{",
    "garbage": b"\x00" * 64,
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_corrupt_primary_falls_back_to_bak(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.json"
    JsonStore(path).save({"id": "good"})
    JsonStore(path).save({"id": "newer"})
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert JsonStore(path).load() == {"id": "good"}
    assert str(path) in caplog.text


def test_wrong_schema_primary_falls_back_to_bak(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    JsonStore(path).save({"id": "good"})
    JsonStore(path).save({"id": "newer"})
    path.write_text('{"unexpected": true}')
    assert JsonStore(path, require_dict).load() == {"id": "good"}


def test_unreadable_primary_falls_back_to_bak(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    JsonStore(path).save({"id": "good"})
    JsonStore(path).save({"id": "newer"})
    path.unlink()
    path.mkdir()  # reading it fails with an OSError even as root
    assert JsonStore(path).load() == {"id": "good"}


def test_missing_primary_with_bak_loads_the_bak_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.json"
    JsonStore(path).save({"id": "good"})
    path.rename(backup_path(path))
    take_restorations()
    with caplog.at_level(logging.WARNING):
        assert JsonStore(path).load() == {"id": "good"}
    assert f"{path} is missing" in caplog.text
    assert take_restorations() == [
        f"state file {path} is missing (a crash while saving?); restored from {path}.bak"
    ]


def test_a_kill_at_any_step_of_a_save_leaves_the_current_file(tmp_path: Path) -> None:
    """The process dies right after each rename of a save in turn: the file is always there,
    old or new, and loads without falling back to the .bak."""
    path, before, _ = _seed(tmp_path)
    for step in (1, 2):
        script = (
            "import os, sys\n"
            "from pathlib import Path\n"
            "from mqtt_hk_bridge import store\n"
            "real, done = os.replace, [0]\n"
            "def replace(src, dst):\n"
            "    real(src, dst)\n"
            "    done[0] += 1\n"
            f"    if done[0] == {step}:\n"
            "        os._exit(9)\n"
            "store.os.replace = replace\n"
            "store.JsonStore(Path(sys.argv[1])).save({'id': 'new'})\n"
        )
        result = subprocess.run([sys.executable, "-c", script, str(path)], timeout=30)
        assert result.returncode == 9
        take_restorations()
        loaded = JsonStore(path).load()
        assert loaded == ({"id": "old"} if step == 1 else {"id": "new"})
        assert take_restorations() == []  # the current file itself, never the .bak
        if step == 1:
            assert path.read_bytes() == before
        JsonStore(path).save({"id": "old"})


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_both_corrupt_stops_with_the_file_name(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "pairings.json"
    path.write_bytes(content)
    backup_path(path).write_bytes(content)
    with pytest.raises(StateFileError) as caught:
        JsonStore(path).load()
    assert str(path) in str(caught.value)
    # Never silently replaced: both files are exactly as they were.
    assert path.read_bytes() == content
    assert backup_path(path).read_bytes() == content


def test_corrupt_primary_without_bak_stops(tmp_path: Path) -> None:
    path = tmp_path / "ids.json"
    path.write_bytes(b"")
    with pytest.raises(StateFileError, match=r"ids\.json"):
        JsonStore(path).load()
    assert path.read_bytes() == b""


def test_wrong_schema_in_both_stops(tmp_path: Path) -> None:
    path = tmp_path / "ids.json"
    path.write_text("[1, 2]")
    backup_path(path).write_text('"text"')
    with pytest.raises(StateFileError, match=r"ids\.json"):
        JsonStore(path, require_dict).load()
