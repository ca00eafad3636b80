"""The webhook receiver: answers each delivery as the payload's script says, and logs it.

Run in its own namespace: `python -m chaos.receiver --bind ADDR --port N --log FILE`. A
trigger's payload carries `{"script": "ok" | "fail_first" | "always_fail", "n": N}`:
`fail_first` answers 500 to the first N deliveries of an idempotency key, then 200. Every
request is one JSON line in the log: time, idempotency key, webhook-id, the body's SHA-256 and
the status answered (chaos/history.py reads it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], log: IO[str]) -> None:
        super().__init__(address, Handler)
        self.log = log
        self.lock = threading.Lock()
        self.seen: Counter[str] = Counter()


def answer(script: dict, delivery_number: int) -> int:
    """The status for the `delivery_number`-th delivery (1-based) of one key."""
    kind = script.get("script", "ok")
    if kind == "always_fail":
        return 500
    if kind == "fail_first" and delivery_number <= int(script.get("n", 1)):
        return 500
    return 200


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        key = self.headers.get("Idempotency-Key", "")
        try:
            script = json.loads(body or b"{}")
        except ValueError:
            script = {}
        with self.server.lock:
            self.server.seen[key] += 1
            number = self.server.seen[key]
            status = answer(script if isinstance(script, dict) else {}, number)
            line = {
                "at": time.time(), "key": key, "webhook_id": self.headers.get("webhook-id"),
                "sha256": hashlib.sha256(body).hexdigest(), "status": status, "n": number,
            }  # fmt: skip
            self.server.log.write(json.dumps(line) + "\n")
            self.server.log.flush()
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


def main() -> None:
    parser = argparse.ArgumentParser(description="chaos webhook receiver")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    with open(args.log, "a") as log:
        Receiver((args.bind, args.port), log).serve_forever()


if __name__ == "__main__":
    main()
