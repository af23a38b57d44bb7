"""The shared fixtures beside the repository (`../shared`, as CI lays it out)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Recorded `GET /accessories` databases of shipping devices (see its README.md).
ACCESSORY_DATABASES = REPO_ROOT.parent / "shared" / "fixtures" / "accessory-databases"
DATABASE_FILES = sorted(ACCESSORY_DATABASES.glob("*.json"))
# Fail loudly rather than parametrize over nothing (a test over no database passes silently).
if len(DATABASE_FILES) < 11:
    raise RuntimeError(
        f"{ACCESSORY_DATABASES} holds {len(DATABASE_FILES)} databases; expected the 11 of "
        "../shared/fixtures: run the tests with shared/ beside the repository"
    )
