"""What the package ships beside the code: the licence and version its metadata names."""

from __future__ import annotations

import hashlib
import tomllib
from importlib import metadata
from pathlib import Path

from mqtt_hk_bridge import __version__

REPO = Path(__file__).resolve().parents[2]
#: SHA-256 of the Apache License 2.0 as apache.org publishes it (LICENSE-2.0.txt).
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def test_the_license_file_is_the_apache_2_text_pyproject_names() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_bytes()
    assert hashlib.sha256(text).hexdigest() == APACHE_2_SHA256


def test_the_installed_package_lists_its_license_file() -> None:
    # The virtualenv is installed from this checkout (scripts/common.sh): its metadata is
    # what a wheel or sdist would carry.
    files = metadata.distribution("mqtt-hk-bridge").metadata.get_all("License-File") or []
    assert "LICENSE" in files


def test_the_installed_metadata_carries_the_version_the_bridge_reports() -> None:
    # `pip show mqtt-hk-bridge` and `mqtt-hk-bridge --version` (and bridge/info) agree.
    assert metadata.version("mqtt-hk-bridge") == __version__
