"""`mqtt-hk-bridge <command>` as a person runs it in a terminal: a real subprocess, its exit
code, stdout and stderr as text."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def _command(config: Path, args: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "mqtt_hk_bridge", *args, "-c", str(config)]


async def run_cli(config: Path, *args: str, timeout: float = 60.0) -> CliResult:
    """Run one command to its end (killed, and an AssertionError, after `timeout`)."""
    proc = await start_cli(config, *args)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"mqtt-hk-bridge {' '.join(args)} ran over {timeout}s") from None
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())


async def start_cli(config: Path, *args: str) -> asyncio.subprocess.Process:
    """Start a command that runs until stopped (`watch`); stdout and stderr are pipes."""
    return await asyncio.create_subprocess_exec(
        *_command(config, args),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def interrupt(proc: asyncio.subprocess.Process, timeout: float = 10.0) -> CliResult:
    """Ctrl-C (SIGINT), then what the command printed in all."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"command ignored SIGINT for {timeout}s") from None
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())
