"""A device in a storm: publish `count` values on one topic (or round-robin over several),
in its own process so the measuring process's event loop stays free to timestamp what
arrives.

    python -m bench.storm_publisher --port P --topic T [--topic T2 ...] [--count 1000]
        [--seconds 3.5] [--qos 1]

`--seconds S` spreads the publishes evenly over S seconds (each one goes as soon as its slot
comes; a publisher that falls behind just goes as fast as it can); 0 sends them back to
back, which on loopback takes well under one event window.

Prints one JSON line: {"first": t, "last": t, "count": n, "final": "99.9"}, where `first`
and `last` are time.monotonic() just before the first and the last publish (CLOCK_MONOTONIC
is system-wide on Linux, so the parent can compare them with its own timestamps) and `final`
is the last value sent (on the last topic). Round-robin, each topic's values still differ
from the one before on that topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiomqtt


def storm_values(count: int) -> list[str]:
    """`count` distinct temperatures, each differing from the one before (0.0, 0.1, ...)."""
    return [f"{(i % 1000) / 10:.1f}" for i in range(count)]


async def storm(
    host: str, port: int, topics: list[str], count: int, seconds: float, qos: int
) -> dict[str, object]:
    values = storm_values(count)
    interval = seconds / max(count - 1, 1)
    identifier = f"bench-storm-{time.monotonic_ns()}"
    async with aiomqtt.Client(host, port, identifier=identifier) as client:
        first = time.monotonic()
        last = first
        for index, value in enumerate(values):
            ahead = first + index * interval - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            last = time.monotonic()
            await client.publish(topics[index % len(topics)], value, qos=qos)
    return {"first": first, "last": last, "count": count, "final": values[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True, action="append", help="repeat: round-robin")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.5)
    parser.add_argument("--qos", type=int, default=1, choices=(0, 1, 2))
    args = parser.parse_args()
    result = asyncio.run(
        storm(args.host, args.port, args.topic, args.count, args.seconds, args.qos)
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
