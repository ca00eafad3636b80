#!/usr/bin/env bash
# `make run`: migrate, create the demo tenant and trigger (once), then web, worker, scheduler and beat.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export PORT="${PORT:-5000}"
alembic upgrade head
flask --app web demo setup --port "$PORT" --key-file .devdata/demo-key || echo "demo setup failed; the stack still starts"
exec honcho start --port "$PORT" web worker scheduler beat
