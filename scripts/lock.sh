#!/usr/bin/env bash
# `make lock`: requirements.txt (runtime) and requirements-dev.txt (runtime and the dev extra),
# every package pinned with its hashes, resolved from setup.cfg by uv for every platform.
# The dev lock is constrained by the runtime one, so both install the same runtime set.
#
# `make lock-check` (--check): resolve again in a scratch copy. uv keeps the pins of the
# existing files wherever setup.cfg still admits them, so a new upstream release changes
# nothing; a dependency added, dropped or raised in setup.cfg does, and the check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="$PWD/.venv/bin/uv"

compile() {
  "$uv" pip compile setup.cfg --quiet --universal --python-version 3.11 --generate-hashes \
    --custom-compile-command 'make lock' "$@"
}

lock() {
  compile -o requirements.txt
  compile --extra dev -c requirements.txt -o requirements-dev.txt
}

if [ "${1:-}" != "--check" ]; then
  lock
  exit 0
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp setup.cfg pyproject.toml README.md requirements.txt requirements-dev.txt "$scratch/"
(cd "$scratch" && lock)
for file in requirements.txt requirements-dev.txt; do
  if ! diff -u "$file" "$scratch/$file"; then
    echo "lock-check: $file is stale against setup.cfg; run make lock and commit it" >&2
    exit 1
  fi
done
echo "lock-check: requirements.txt and requirements-dev.txt match setup.cfg"
