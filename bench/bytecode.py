"""Run the benchmarked bridges from bytecode, as an installed bridge runs.

pip compiles a package it installs; an editable install (scripts/run-local.sh) writes
`__pycache__` on its first start. On a machine with PYTHONDONTWRITEBYTECODE set (as this
one) a benchmarked bridge would instead compile every one of our modules at every start:
time and about 1 MB of RSS that no user's bridge pays, and that the plain HAP-python
bridge, almost all library code with its bytecode installed, hardly pays. So the
repository's own modules are compiled first, into the `__pycache__` directories Python
itself uses (and git ignores).
"""

from __future__ import annotations

import compileall
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
#: What the benchmarked bridges are made of: ours and the plain HAP-python one.
PACKAGES = ("mqtt_hk_bridge", "bench")


def compile_bridges() -> None:
    for package in PACKAGES:
        if not compileall.compile_dir(REPO_ROOT / package, quiet=1):
            raise RuntimeError(f"{package} does not compile")
