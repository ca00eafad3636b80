"""Benchmarks (`make bench`). Their triggers run the demo `echo` handler, which a deployment
does not register, and every process needs a key for webhook secrets: every benchmark, and
each process it starts, gets both here (a fresh key per benchmark run)."""

import os

from cryptography.fernet import Fernet

os.environ.setdefault("ENABLE_ECHO_HANDLER", "true")
os.environ.setdefault("SECRETS_ENCRYPTION_KEY", Fernet.generate_key().decode())
