# Shared by scripts/run-local.sh, scripts/test.sh and scripts/upgrade-deps.sh: Mosquitto,
# the virtualenv and npm peers. Sourced, not run.

#: Runtime dependencies, exact versions with hashes (what the bridge and its image run on).
RUNTIME_LOCK=requirements.lock
#: The runtime lock plus the test tools, resolved together (the same versions in both).
TEST_LOCK=requirements-test.lock

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
  command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
  [ "${WITH_NODE:-0}" = 1 ] && ! command -v npm >/dev/null 2>&1 && missing+=(nodejs npm)
  if [ "${WITH_CONTAINERS:-0}" = 1 ]; then  # the image tests: docs/container.md
    command -v podman >/dev/null 2>&1 || missing+=(podman)
    [ -x /usr/sbin/runc ] || missing+=(runc)
    command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
    command -v newuidmap >/dev/null 2>&1 || missing+=(uidmap)
  fi
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing ${missing[*]} from Debian's packages"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# What a stamp file records: the content of the files an install was made from. An install
# runs again only when one of them changed, so a later start needs no network.
stamp_of() {
  cat "$@" | sha256sum | cut -c1-32
}

# A virtualenv in .venv with exactly the versions in the given lock file, and the bridge
# installed editable on top (no build isolation: setuptools comes from the lock too). The
# package's __init__.py holds the version its installed metadata carries.
ensure_venv() {
  local lock="$1" stamp=.venv/.installed-lock want
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "mqtt-hk-bridge needs Python 3.11 or newer; python3 is $(python3 --version 2>&1)" >&2
    return 1
  }
  want="$lock $(stamp_of "$lock" pyproject.toml mqtt_hk_bridge/__init__.py)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  echo "Installing the locked dependencies from $lock into .venv"
  local pip=(.venv/bin/python -m pip -q --disable-pip-version-check)
  "${pip[@]}" install --require-hashes --no-deps -r "$lock"
  "${pip[@]}" install --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
}

# npm packages of a test peer (Aedes, ...) exactly as its package-lock.json says; again
# only when that lock changed.
ensure_npm_peer() {
  local dir="$1" want
  want=$(stamp_of "$dir/package-lock.json")
  [ "$(cat "$dir/node_modules/.installed-lock" 2>/dev/null)" = "$want" ] && return 0
  (cd "$dir" && npm ci --silent --no-audit --no-fund >/dev/null)
  echo "$want" > "$dir/node_modules/.installed-lock"
}
