#!/usr/bin/env bash
# `make run`: migrate, create the demo tenant and trigger (once), then web, worker, scheduler and beat.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export PORT="${PORT:-5000}"
# One short line per event (time, level, event, ids) for a person reading the terminal (deployments keep
# the JSON default).
export LOG_FORMAT="${LOG_FORMAT:-text}"
# A developer's machine: the console's cookie works over plain http://localhost, and the
# demo `echo` handler is registered (both off in a deployment).
export DEVELOPMENT="${DEVELOPMENT:-true}"
# The console's session key, shared by every gunicorn worker and kept between runs (git-ignored).
mkdir -p .devdata
if [ -z "${SECRET_KEY:-}" ]; then
  [ -s .devdata/secret-key ] || python -c 'import secrets; print(secrets.token_urlsafe(48))' > .devdata/secret-key
  chmod 600 .devdata/secret-key
  SECRET_KEY="$(cat .devdata/secret-key)"
  export SECRET_KEY
fi
# The key that encrypts webhook secrets at rest, kept between runs like the session key.
if [ -z "${SECRETS_ENCRYPTION_KEY:-}" ]; then
  [ -s .devdata/secrets-encryption-key ] || python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' > .devdata/secrets-encryption-key
  chmod 600 .devdata/secrets-encryption-key
  SECRETS_ENCRYPTION_KEY="$(cat .devdata/secrets-encryption-key)"
  export SECRETS_ENCRYPTION_KEY
fi
alembic upgrade head
flask --app web demo setup --port "$PORT" --key-file .devdata/demo-key || echo "demo setup failed; the stack still starts"
echo
echo "console: http://localhost:$PORT/console/  (sign in by pasting the demo key above)"
echo
exec honcho start --port "$PORT" web worker beat
