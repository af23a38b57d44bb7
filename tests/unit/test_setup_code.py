"""The setup code a user types into the Home app."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt_hk_bridge import const
from mqtt_hk_bridge.errors import StateFileError
from mqtt_hk_bridge.exposer import setup_code
from mqtt_hk_bridge.exposer.setup_code import (
    SETUP_ID_ALPHABET,
    generate_setup_code,
    generate_setup_id,
    load_setup,
)

CODE_RE = re.compile(r"^\d{3}-\d{2}-\d{3}$")


def test_100_000_generated_codes_are_well_formed_and_none_trivial() -> None:
    codes = [generate_setup_code() for _ in range(100_000)]
    assert all(CODE_RE.match(code) for code in codes)
    assert not set(codes) & const.TRIVIAL_SETUP_CODES
    # Drawn from the whole space: 10^5 draws from 10^8 codes barely repeat.
    assert len(set(codes)) > 99_000
    # Every digit position varies (a constant position would cut the space by 10).
    digits = [code.replace("-", "") for code in codes[:2000]]
    for position in range(8):
        assert len({d[position] for d in digits}) == 10


def test_a_trivial_draw_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # Force the random source to produce 000-00-000 and 123-45-678 first.
    draws: Iterator[int] = iter([0, 12345678, 87654321, 48291735])
    monkeypatch.setattr(setup_code.secrets, "randbelow", lambda _n: next(draws))
    assert generate_setup_code() == "482-91-735"


def test_leading_zeros_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup_code.secrets, "randbelow", lambda _n: 1234)
    assert generate_setup_code() == "000-01-234"


def test_setup_id_is_four_alphanumerics() -> None:
    ids = {generate_setup_id() for _ in range(1000)}
    assert all(len(i) == 4 and set(i) <= set(SETUP_ID_ALPHABET) for i in ids)
    assert len(ids) > 990


def test_two_installs_differ(tmp_path: Path) -> None:
    for install in ("a", "b"):
        (tmp_path / install).mkdir()
    first = load_setup(tmp_path / "a" / "setup.json", None)
    second = load_setup(tmp_path / "b" / "setup.json", None)
    assert first.code != second.code
    assert first.setup_id != second.setup_id


@pytest.fixture
def setup_path(tmp_path: Path) -> Path:
    return tmp_path / "setup.json"


def test_code_is_created_once_and_kept(setup_path: Path) -> None:
    first = load_setup(setup_path, None)
    assert CODE_RE.match(first.code)
    assert first.code not in const.TRIVIAL_SETUP_CODES
    # Every restart shows the same code and id (the QR code stays valid).
    assert load_setup(setup_path, None) == first
    assert load_setup(setup_path, None) == first


def test_stored_file_is_0600(setup_path: Path) -> None:
    old = os.umask(0)
    try:
        load_setup(setup_path, None)
    finally:
        os.umask(old)
    assert stat.S_IMODE(setup_path.stat().st_mode) == 0o600


def test_configured_code_wins(setup_path: Path) -> None:
    generated = load_setup(setup_path, None)
    configured = load_setup(setup_path, "482-91-735")
    assert configured.code == "482-91-735"
    # The setup id does not change with the code.
    assert configured.setup_id == generated.setup_id
    assert json.loads(setup_path.read_text())["setup_code"] == "482-91-735"


def test_configured_code_on_first_start(setup_path: Path) -> None:
    info = load_setup(setup_path, "518-37-264")
    assert info.code == "518-37-264"
    assert load_setup(setup_path, None).code == "518-37-264"


def test_unchanged_setup_is_not_rewritten(setup_path: Path) -> None:
    load_setup(setup_path, None)
    before = setup_path.stat().st_mtime_ns
    os.utime(setup_path, ns=(1, 1))
    load_setup(setup_path, None)
    assert setup_path.stat().st_mtime_ns == 1
    assert before != 1


def test_corrupt_setup_file_stops_rather_than_make_a_new_code(setup_path: Path) -> None:
    setup_path.write_text('{"setup_code": "12345678", "setup_id": "AB"}')
    with pytest.raises(StateFileError, match=r"setup\.json"):
        load_setup(setup_path, None)
    # Never silently replaced.
    assert setup_path.read_text() == '{"setup_code": "12345678", "setup_id": "AB"}'


def test_code_is_not_logged(setup_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    info = load_setup(setup_path, None)
    load_setup(setup_path, "482-91-735")
    assert info.code not in caplog.text
    assert "482-91-735" not in caplog.text
