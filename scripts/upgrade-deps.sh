#!/usr/bin/env bash
# Re-lock the Python dependencies, show what changed, and run the whole suite on the new lock.
#
#   ./scripts/upgrade-deps.sh             every package to the newest version pyproject allows
#   ./scripts/upgrade-deps.sh PKG [PKG]   only these packages (and what they need)
#   ./scripts/upgrade-deps.sh --relock    keep every pin the ranges still allow (after an edit
#                                         of pyproject.toml's dependencies)
#
# Commit both lock files together with the code the new versions need: one commit per upgrade.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

#: The resolver, pinned so that the same inputs always give the same lock files.
UV_VERSION=0.13.9
TOOLS=.venv-tools

if [ ! -x "$TOOLS/bin/uv" ] || [ "$("$TOOLS/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
fi

upgrade=(--upgrade)
case "${1:-}" in
  --relock) upgrade=() ;;
  "") ;;
  *) upgrade=(); for package in "$@"; do upgrade+=(--upgrade-package "$package"); done ;;
esac

# setuptools builds the package itself (pip install --no-build-isolation -e .): locked too,
# so an install never fetches a build backend.
build_requires() {
  python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))'
}

compile() {
  local output="$1"; shift
  build_requires | "$TOOLS/bin/uv" pip compile pyproject.toml - \
    --universal --python-version 3.11 --generate-hashes --quiet \
    --custom-compile-command ./scripts/upgrade-deps.sh --output-file "$output" "$@"
}

versions() {
  [ -f "$1" ] && grep -oE '^[A-Za-z0-9._-]+==[^ ;]+' "$1" | sort || true
}

before=$(versions "$TEST_LOCK")
compile "$TEST_LOCK" --extra test ${upgrade[@]+"${upgrade[@]}"}
# The runtime lock takes its versions from the test lock: the suite tests what ships.
compile "$RUNTIME_LOCK" --upgrade --constraints "$TEST_LOCK"
after=$(versions "$TEST_LOCK")

echo "Changed in $TEST_LOCK (and $RUNTIME_LOCK where the bridge uses it):"
python3 - "$before" "$after" <<'EOF'
import sys

def pins(text: str) -> dict[str, str]:
    return dict(line.split("==", 1) for line in text.split())

old, new = pins(sys.argv[1]), pins(sys.argv[2])
rows = [
    f"  {name}: {old.get(name, '(new)')} -> {new.get(name, '(removed)')}"
    for name in sorted(old.keys() | new.keys())
    if old.get(name) != new.get(name)
]
print("\n".join(rows) if rows else "  nothing")
EOF

echo "Running the whole suite on the new lock (./scripts/test.sh)"
exec ./scripts/test.sh
