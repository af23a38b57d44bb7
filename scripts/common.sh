# Shared by scripts/run-local.sh and scripts/test.sh: Mosquitto and the virtualenv.
# Sourced, not run.

# Run as root directly, otherwise through sudo (a newcomer's laptop vs CI or a container).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

mosquitto_binary() {
  command -v mosquitto 2>/dev/null || { [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto; }
}

ensure_debian_packages() {
  local missing=()
  [ -n "$(mosquitto_binary)" ] || missing+=(mosquitto)
  [ "${WITH_NODE:-0}" = 1 ] && ! command -v npm >/dev/null 2>&1 && missing+=(nodejs npm)
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing ${missing[*]} from Debian's packages"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# A virtualenv in .venv with the bridge installed (editable) and the given extras.
ensure_venv() {
  local extras="$1"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".${extras}"
}

# Aedes (Node-RED's broker) for the MQTT 3.1.1 tests, from the npm registry.
ensure_aedes() {
  (cd tests/peers/aedes && npm ci --silent --no-audit --no-fund >/dev/null)
}
