#!/usr/bin/env bash
# `make audit`: pip-audit over the locked set (requirements.txt and requirements-dev.txt).
#
# pip-audit asks the package index for each pinned release's advisories
# (/pypi/NAME/VERSION/json). An index that does not serve those pages (a mirror) would make
# every package "not found"; then the audit says so in one line and is skipped, rather than
# passing without having checked anything. Any other failure fails the build.
set -euo pipefail
cd "$(dirname "$0")/.."
index="${PIP_AUDIT_INDEX:-https://pypi.org}"
version="$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("pip-audit"))')"
status="$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 "$index/pypi/pip-audit/$version/json" || true)"
if [ "$status" != "200" ]; then
  echo "audit: skipped: $index serves no per-release advisory data here (HTTP $status)" >&2
  exit 0
fi
exec .venv/bin/pip-audit --strict --progress-spinner off --disable-pip --no-deps \
  -r requirements.txt -r requirements-dev.txt
