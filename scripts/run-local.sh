#!/usr/bin/env bash
# Install and start the bridge beside a local Mosquitto, with bridge.yaml copied from
# bridge.yaml.example on first use. Installs only what is missing or whose lock changed, so
# once installed it starts without a network. Extra arguments go to `mqtt-hk-bridge run`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

ensure_debian_packages
ensure_venv "$RUNTIME_LOCK"
[ -f bridge.yaml ] || { cp bridge.yaml.example bridge.yaml; echo "Created bridge.yaml from bridge.yaml.example"; }

# Debian starts Mosquitto as a service where systemd runs; elsewhere (a container) start it.
if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  echo "Starting Mosquitto on 127.0.0.1:1883 (anonymous, loopback only)"
  printf 'listener 1883 127.0.0.1\nallow_anonymous true\n' > .venv/mosquitto.conf
  "$(mosquitto_binary)" -d -c .venv/mosquitto.conf
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break; sleep 0.1; done
fi
exec .venv/bin/mqtt-hk-bridge run -c bridge.yaml "$@"
