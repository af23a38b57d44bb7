"""CPU time the bridge's controller side spends holding paired accessories that say nothing.

    .venv/bin/python -m bench.controller_idle_cpu --kind ip [--accessories 50] [--idle 60]
    .venv/bin/python -m bench.controller_idle_cpu --kind ip --checkout /tmp/wt-before
    .venv/bin/python -m bench.controller_idle_cpu --kind coap

Three kinds of process, so that each one's CPU time is its own: the controller side alone
(bench/controller_host.py, from `--checkout`: this tree by default, or a worktree of an older
commit), the accessories (`ip`: one HAP-python process each, tests/support/accessory_process.py;
`coap`: all simulators in one process, bench/coap_simulators.py), and this process, which
pairs them all over `bridge/request/pair` on a Mosquitto, waits until every pairing is
connected and available, lets things settle, then reads the controller process's CPU time
(time.process_time() and getrusage(), asked over its stdin) and the accessories' (from /proc)
over the idle window. Everything on loopback. Figures are reported, never asserted; see
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.controller_host import THIS_CHECKOUT
from bench.controller_latency import machine, pair, request
from bench.report import run_and_report
from tests.support.accessory_process import AccessoryProcess, PeerError
from tests.support.controller_harness import BASE
from tests.support.mosquitto import Mosquitto, MqttProbe

SETTLE_SECONDS = 10.0  # after the last pairing is up: retained publishes, mDNS answers
READY_TIMEOUT = 60.0
IP_START_BATCH = 10  # HAP-python processes started at once (2 cores)


@dataclass(frozen=True)
class Usage:
    """What /proc says about one process (all its threads) at one moment."""

    at: float  # time.monotonic()
    cpu_seconds: float  # user + system
    context_switches: int  # voluntary + involuntary, summed over threads: ~ wake-ups
    threads: int


def usage(pid: int) -> Usage:
    """From /proc: user and system time in clock ticks (10 ms), each rounded on its own, so a
    reading may be a tick below the one before; switches of ended threads are lost."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    switches, threads = 0, 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            for line in status.read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
            threads += 1
    return Usage(time.monotonic(), (int(fields[11]) + int(fields[12])) / ticks, switches, threads)


def rates(before: list[Usage], after: list[Usage], seconds: float) -> dict[str, Any]:
    """CPU and context switches of a group of processes between two readings."""
    pairs = list(zip(before, after, strict=True))
    cpu = sum(end.cpu_seconds - start.cpu_seconds for start, end in pairs)
    switches = sum(end.context_switches - start.context_switches for start, end in pairs)
    return {
        "processes": len(after),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_s": round(cpu * 1000 / seconds, 1),
        "cpu_percent_of_one_core": round(cpu * 100 / seconds, 2),
        "context_switches_per_s": round(switches / seconds),
        "threads": after[0].threads if len(after) == 1 else None,
    }


class MdnsCounter(asyncio.DatagramProtocol):
    """Counts mDNS datagrams on loopback: every zeroconf on this machine bound to 127.0.0.1
    (other people's tests too) wakes each of our processes with them."""

    GROUP, PORT = "224.0.0.251", 5353

    def __init__(self) -> None:
        self.count = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.count += 1

    @classmethod
    @contextlib.asynccontextmanager
    async def listening(cls) -> AsyncIterator[MdnsCounter]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("", cls.PORT))
        membership = socket.inet_aton(cls.GROUP) + socket.inet_aton("127.0.0.1")
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        transport, counter = await asyncio.get_running_loop().create_datagram_endpoint(
            cls, sock=sock
        )
        try:
            yield counter
        finally:
            transport.close()


# --- the processes ------------------------------------------------------------------------------


class LineProcess:
    """A `python -m module` child that prints one `{"ready": ...}` line and stops when its
    stdin closes; stderr goes to a file."""

    def __init__(self, module: str, args: list[str], log: Path) -> None:
        self.command = [sys.executable, "-m", module, *args]
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Any:
        with self.log.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command,
                cwd=THIS_CHECKOUT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        assert self.proc.stdout is not None
        async with asyncio.timeout(READY_TIMEOUT):
            while line := await self.proc.stdout.readline():
                if line.startswith(b'{"ready"'):
                    return json.loads(line)["ready"]
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.command} exited before it was ready:\n{tail}")

    async def usage(self) -> Usage:
        """Ask the child for its own figures (bench/controller_host.py answers `usage`)."""
        assert self.proc is not None and self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(b"usage\n")
        async with asyncio.timeout(10):
            answer = json.loads(await self.proc.stdout.readline())["usage"]
        return Usage(
            time.monotonic(),
            float(answer["cpu_seconds"]),
            int(answer["context_switches"]),
            int(answer["threads"]),
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        assert proc.stdin is not None
        proc.stdin.close()  # the child's cue to stop cleanly
        try:
            async with asyncio.timeout(15):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def ip_accessories(work: Path, count: int) -> AsyncIterator[list[tuple[str, str, int]]]:
    """`count` HAP-python demo bridges (a light and a sensor each), one process each."""
    peers = [AccessoryProcess(work, name=f"IP Idle {index:03d}") for index in range(count)]

    async def start(peer: AccessoryProcess) -> None:
        try:
            await peer.start()
        except PeerError:  # its free port was taken meanwhile (a shared machine): another
            await peer.start(port=0)

    try:
        for first in range(0, count, IP_START_BATCH):
            await asyncio.gather(*(start(p) for p in peers[first : first + IP_START_BATCH]))
        yield [(str(p.device_id), p.pin, int(p.pid or 0)) for p in peers]
    finally:
        await asyncio.gather(*(p.stop() for p in peers))


@contextlib.asynccontextmanager
async def coap_accessories(work: Path, count: int) -> AsyncIterator[list[tuple[str, str, int]]]:
    """`count` CoAP simulators in one process."""
    simulators = LineProcess(
        "bench.coap_simulators", ["--count", str(count)], work / "simulators.log"
    )
    try:
        ready = await simulators.start()
        yield [(a["device_id"], a["setup_code"], simulators.pid) for a in ready]
    finally:
        await simulators.stop()


# --- the run -------------------------------------------------------------------------------------


def log_lines(path: Path) -> int:
    return len(path.read_bytes().splitlines())


async def pairings_up(probe: MqttProbe, serial: str) -> int:
    """How many pairings the bridge lists as connected and available."""
    answer = await request(probe, "list-pairings", {}, f"list-{serial}")
    return sum(1 for e in answer.get("data") or [] if e.get("connected") and e.get("available"))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    accessories = ip_accessories if args.kind == "ip" else coap_accessories
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto")
        await asyncio.to_thread(broker.start)
        host = LineProcess(
            "bench.controller_host",
            ["--broker-port", str(broker.port), "--data-dir", str(work / "data")],
            work / "controller.log",
        )
        host.command += ["--checkout", str(args.checkout)]
        try:
            async with (
                accessories(work, args.accessories) as peers,
                MqttProbe(broker.host, broker.port) as probe,
                MdnsCounter.listening() as mdns,
            ):
                await probe.subscribe(f"{BASE}/bridge/response/#")
                ready = await host.start()
                started = time.monotonic()
                for index, (device_id, setup_code, _) in enumerate(peers):
                    await pair(probe, device_id, setup_code, f"{args.kind}{index:03d}")
                paired_in = time.monotonic() - started
                deadline = time.monotonic() + 120
                serial = 0
                while await pairings_up(probe, str(serial)) < len(peers):
                    if time.monotonic() > deadline:
                        raise RuntimeError("not every pairing connected within 120 s")
                    serial += 1
                    await asyncio.sleep(1.0)
                up_in = time.monotonic() - started
                await asyncio.sleep(SETTLE_SECONDS)
                peer_pids = sorted({pid for _, _, pid in peers})
                load_before, lines_before = os.getloadavg(), log_lines(host.log)
                mdns_before = mdns.count
                controller_before = [await host.usage()]
                peers_before = [usage(pid) for pid in peer_pids]
                await asyncio.sleep(args.idle)
                controller_after = [await host.usage()]
                peers_after = [usage(pid) for pid in peer_pids]
                load_after, lines_after = os.getloadavg(), log_lines(host.log)
                mdns_per_s = (mdns.count - mdns_before) / args.idle
                window = controller_after[0].at - controller_before[0].at
                still_up = await pairings_up(probe, "end")
                await host.stop()  # before the accessories go
        except BaseException:
            if host.log.exists():
                print(f"controller log tail:\n{host.log.read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            await host.stop()
            await asyncio.to_thread(broker.close)
    return {
        "meta": {**machine(), "measured_commit": ready["commit"], "checkout": str(args.checkout)},
        "kind": args.kind,
        "accessories": len(peers),
        "paired_seconds": round(paired_in, 1),
        "all_up_seconds": round(up_in, 1),
        "controller": rates(controller_before, controller_after, window),
        "accessory_processes": rates(peers_before, peers_after, window),
        "still_up_after_idle": still_up,
        "controller_log_lines_while_idle": lines_after - lines_before,
        "load_average_1min": [round(load_before[0], 2), round(load_after[0], 2)],
        "mdns_datagrams_per_s_on_loopback": round(mdns_per_s, 1),
    }


def render(report: dict[str, Any]) -> str:
    m, c, a = report["meta"], report["controller"], report["accessory_processes"]
    return "\n".join(
        [
            f"controller side at {m['measured_commit']} ({m['checkout']}), bench at "
            f"{m['commit']}, {m['cpus']} CPUs, Python {m['python']}, loopback",
            f"{report['accessories']} {report['kind']} accessories paired in "
            f"{report['paired_seconds']} s, all connected after {report['all_up_seconds']} s; "
            f"{report['still_up_after_idle']} still connected after the idle window",
            "",
            f"controller process, idle {c['seconds']} s: {c['cpu_seconds']} CPU s = "
            f"{c['cpu_ms_per_s']} ms/s ({c['cpu_percent_of_one_core']} % of one core), "
            f"{c['context_switches_per_s']} context switches/s, {c['threads']} threads",
            f"accessory process(es) ({a['processes']}), same window: {a['cpu_seconds']} CPU s = "
            f"{a['cpu_ms_per_s']} ms/s, {a['context_switches_per_s']} context switches/s",
            f"controller log lines while idle: {report['controller_log_lines_while_idle']}; "
            f"1-min load average {report['load_average_1min'][0]} -> "
            f"{report['load_average_1min'][1]}; mDNS datagrams on loopback (whole machine): "
            f"{report['mdns_datagrams_per_s_on_loopback']}/s",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Idle CPU of the controller side.")
    parser.add_argument("--kind", choices=("ip", "coap"), default="ip")
    parser.add_argument("--accessories", type=int, default=50)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds measured")
    parser.add_argument(
        "--checkout",
        type=lambda path: Path(path).resolve(),
        default=THIS_CHECKOUT,
        help="tree whose controller side runs",
    )
    run_and_report(parser, argv, run, render)


if __name__ == "__main__":
    main()
