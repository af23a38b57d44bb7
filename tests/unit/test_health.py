"""Reading the health report (issue 14, item 1); the daemon writing it is tested in
tests/integration/test_health.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

from mqtt_hk_bridge.health import MAX_AGE, check


def report(path: Path, mqtt: bool = True, hap: bool = True, age: float = 0.0) -> Path:
    path.write_text(
        json.dumps({"mqtt_connected": mqtt, "hap_listening": hap, "updated": time.time() - age})
    )
    return path


def test_connected_and_listening_is_healthy(tmp_path: Path) -> None:
    assert check(report(tmp_path / "health.json")) == []


def test_each_missing_part_is_named(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    assert check(report(path, mqtt=False)) == ["not connected to the MQTT broker"]
    assert check(report(path, hap=False)) == ["the HAP server is not listening"]
    assert len(check(report(path, mqtt=False, hap=False))) == 2


def test_an_old_report_means_the_bridge_stopped_responding(tmp_path: Path) -> None:
    path = report(tmp_path / "health.json", age=MAX_AGE + 5)
    [problem] = check(path)
    assert "not responding" in problem
    assert check(path, now=time.time() - 10) == []  # the same report, read while fresh


def test_no_report_or_a_broken_one_is_unhealthy(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    assert "not running" in check(path)[0]
    path.write_text("{not json")
    assert "unreadable" in check(path)[0]
    path.write_text('{"mqtt_connected": true}')
    assert "unreadable" in check(path)[0]
