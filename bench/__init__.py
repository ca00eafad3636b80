"""Benchmarks (`make bench`). Their triggers run the demo `echo` handler, which a deployment
does not register: every benchmark, and each process it starts, opts in here."""

import os

os.environ.setdefault("ENABLE_ECHO_HANDLER", "true")
