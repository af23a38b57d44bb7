"""What every benchmark does once its options are set: run (the bridges from bytecode, as
installed), print the figures, and write them as JSON when `--json` names a file."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench.bytecode import compile_bridges

Figures = dict[str, Any]


def run_and_report(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, Figures]],
    render: Callable[[Figures], str],
) -> None:
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    compile_bridges()
    figures = asyncio.run(run(args))
    print(render(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
