#!/usr/bin/env bash
# The test command: installs what the tests need (Mosquitto, a virtualenv from the test lock,
# Aedes and Node-RED from npm, Podman for the image tests; each only when missing or its lock
# changed), then lint, types and the whole suite against real peers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

WITH_NODE=1 WITH_CONTAINERS=1 ensure_debian_packages
ensure_venv "$TEST_LOCK"
ensure_npm_peer tests/peers/aedes
ensure_npm_peer tests/peers/node-red
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
