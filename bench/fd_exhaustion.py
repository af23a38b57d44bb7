"""Silent HAP connections against a bridge short of file descriptors: what it logs, and how
long a new controller then takes to pair and read.

    .venv/bin/python -m bench.fd_exhaustion [--limit 1024 20] [--connections 1100]
        [--hold 10] [--json out.json]

For each open-files limit (soft = hard, as a systemd service's 1,024; 20 runs the bridge
out of descriptors at once), a fresh bridge on 127.0.0.1, logging at info as shipped, gets
`--connections` TCP connections that never send a byte, held `--hold` seconds; then
aiohomekit pairs with it and reads the accessory database. Figures are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from bench.event_latency import measured_on, meta
from bench.report import run_and_report
from tests.support.bridge_process import BridgeProcess
from tests.support.hap_client import HapClient
from tests.support.mosquitto import Mosquitto


def hold_silent_connections(host: str, port: int, count: int, hold: float) -> int:
    """Open up to `count` connections (1 s each to connect), keep them `hold` s; how many
    were open."""
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            with suppress(OSError):
                opened.append(socket.create_connection((host, port), timeout=1.0))
        time.sleep(hold)
        return len(opened)
    finally:
        for sock in opened:
            sock.close()


async def one_limit(work: Path, broker: Mosquitto, limit: int, args: argparse.Namespace) -> Any:
    bridge = BridgeProcess(work / f"limit-{limit}", broker.port, log_level="info")
    bridge.open_files_limit = (limit, limit)
    await asyncio.to_thread(bridge.start)
    try:
        before = bridge.log_path.stat().st_size
        opened = await asyncio.to_thread(
            hold_silent_connections, bridge.host, bridge.hap_port, args.connections, args.hold
        )
        logged = bridge.log_path.stat().st_size - before
        lines = bridge.logs().count("Cannot accept connections")
        started = time.monotonic()
        home = await HapClient.pair(
            bridge.host, bridge.hap_port, bridge.device_id, bridge.setup_code
        )
        try:
            await home.list_accessories()
        finally:
            await home.close()
        return {
            "limit": limit,
            "connections_opened": opened,
            "log_bytes_while_held": logged,
            "exhaustion_lines": lines,
            "tracebacks": bridge.logs().count("Traceback"),
            "pair_and_read_s": round(time.monotonic() - started, 3),
        }
    finally:
        await asyncio.to_thread(bridge.stop)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-fd-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto")
        await asyncio.to_thread(broker.start)
        try:
            results = [await one_limit(work, broker, limit, args) for limit in args.limit]
        finally:
            await asyncio.to_thread(broker.stop)
    return {"meta": meta(), "connections": args.connections, "hold_s": args.hold, "runs": results}


def render(report: dict[str, Any]) -> str:
    m = report["meta"]
    lines = [
        measured_on(m, "loopback"),
        f"{report['connections']} silent connections held {report['hold_s']:g} s",
        "",
        f"{'open files':>10}{'opened':>8}{'log bytes':>11}{'exhausted':>11}"
        f"{'tracebacks':>12}{'pair+read s':>13}",
    ]
    for run in report["runs"]:
        lines.append(
            f"{run['limit']:>10}{run['connections_opened']:>8}{run['log_bytes_while_held']:>11}"
            f"{run['exhaustion_lines']:>11}{run['tracebacks']:>12}{run['pair_and_read_s']:>13}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, nargs="+", default=[1024, 20])
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--hold", type=float, default=10.0, help="seconds they are held")
    run_and_report(parser, argv, run, render)


if __name__ == "__main__":
    main()
