"""The command line's own commands (the daemon and the controller commands have their own
integration tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mqtt_hk_bridge.cli import build_parser, main
from tests.support.wait import free_port


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


def test_reset_pair_setup_unlocks_every_bridge(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = config.parent / "data"
    (data / "bridge-2").mkdir(parents=True)
    (data / "bridge-2" / "homekit-state.json").write_text("{}")
    (data / "bridge-2" / "pair-setup-attempts.json").write_text('{"failed_attempts": 100}')
    assert main(["reset-pair-setup", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "Pair-setup unlocked: the counter went from 0 failed attempt(s) to 0." in out
    assert "Pair-setup of bridge 2 unlocked: the counter went from 100 failed attempt(s)" in out
    attempts = json.loads((data / "bridge-2" / "pair-setup-attempts.json").read_text())
    assert attempts == {"failed_attempts": 0}


def test_check_config_reports_the_file_and_key(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text(f"homekit: {{address: 127.0.0.1, port: {free_port()}}}\n")
    assert main(["check-config", "-c", str(config)]) == 0
    config.write_text("homekit: {port: 0}\n")
    assert main(["check-config", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "homekit.port" in err


def test_bare_command_prints_the_help_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a bridge.yaml here would have been run
    (tmp_path / "bridge.yaml").write_text("data_dir: ./data\n")
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: mqtt-hk-bridge")
    assert "run the bridge" in out and "check-config" in out
    assert not (tmp_path / "data").exists()


def test_every_command_and_option_has_help() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0]  # type: ignore[union-attr]
    helps = {action.dest: action.help for action in commands._choices_actions}
    for name, subparser in commands.choices.items():
        assert helps.get(name), f"{name} has no summary in the command list"
        assert subparser.description, f"`{name} -h` has no description"
        for action in subparser._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    config_help = parser.format_help()
    assert "(default: ./bridge.yaml)" in config_help
