"""The command line's own commands (the daemon and the controller commands have their own
integration tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mqtt_hk_bridge.cli import main


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text("data_dir: ./data\n")
    return path


def test_reset_pair_setup_unlocks_a_locked_bridge(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = config.parent / "data"
    data.mkdir()
    (data / "pair-setup-attempts.json").write_text('{"failed_attempts": 100}')
    assert main(["reset-pair-setup", "-c", str(config)]) == 0
    assert "from 100 failed attempt(s) to 0" in capsys.readouterr().out
    assert json.loads((data / "pair-setup-attempts.json").read_text()) == {"failed_attempts": 0}


def test_check_config_reports_the_file_and_key(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", "-c", str(config)]) == 0
    config.write_text("homekit: {port: 0}\n")
    assert main(["check-config", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "homekit.port" in err
