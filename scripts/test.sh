#!/usr/bin/env bash
# The test command: installs what the tests need (Mosquitto, a virtualenv with the test
# extras, Aedes from npm), then lint, types and the whole suite against real peers on
# loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

WITH_NODE=1 ensure_debian_packages
ensure_venv "[test]"
ensure_aedes
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
