"""A delaying TCP forwarder in a worker's namespace, for kernels without sch_netem.

`tc qdisc ... netem delay 200ms` adds the delay to every packet the worker sends. Where
the kernel has no netem (the harness's reference machine), the worker's connections to
PostgreSQL, Redis and the webhook receiver are routed through this forwarder instead: an
iptables DNAT rule in the namespace sends them to it on 127.0.0.1 (net.route_through_delay),
and it opens the real connection, marked (SO_MARK) so that the rule lets it pass. Each
chunk the worker sends is written upstream `delay` milliseconds after it arrived, in order;
answers come back at once, as with netem on the worker's egress. The delay is read from
`--control` (a number of milliseconds; missing or empty: 0) every 100 ms, so the nemesis
turns it on and off by writing that file. Loss stays iptables' `statistic` match.

    python -m chaos.delay --control FILE --forward LPORT:HOST:PORT [--forward ...] [--ready F]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
from pathlib import Path

# The mark of the forwarder's own upstream connections; the DNAT rule skips it.
MARK = 0x77
CHUNK = 65536


class Delay:
    """The current delay in seconds, re-read from the control file."""

    def __init__(self, control: Path) -> None:
        self.control = control
        self.seconds = 0.0

    def read(self) -> None:
        try:
            text = self.control.read_text().strip()
        except OSError:
            text = ""
        try:
            self.seconds = max(0.0, float(text or 0) / 1000)
        except ValueError:
            self.seconds = 0.0

    async def watch(self) -> None:
        while True:
            self.read()
            await asyncio.sleep(0.1)


async def _open_marked(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


async def pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: Delay | None
) -> None:
    """Copy `reader` to `writer`, each chunk `delay` after it arrived (in order), then
    half-close `writer` as the other side did."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError, RuntimeError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(CHUNK)
            queue.put_nowait((loop.time() + (delay.seconds if delay else 0.0), data))
            if not data:
                break
        await sender
    except (OSError, asyncio.IncompleteReadError):
        sender.cancel()
    finally:
        if not sender.done():
            sender.cancel()


async def handle(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    host: str,
    port: int,
    delay: Delay,
) -> None:
    try:
        upstream_reader, upstream_writer = await _open_marked(host, port)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            pipe(client_reader, upstream_writer, delay),
            pipe(upstream_reader, client_writer, None),
        )
    finally:
        for writer in (upstream_writer, client_writer):
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()


async def serve(forwards: list[tuple[int, str, int]], control: Path, ready: Path | None) -> None:
    delay = Delay(control)
    delay.read()
    servers = []
    for listen_port, host, port in forwards:

        async def on_client(r, w, host=host, port=port) -> None:  # noqa: ANN001
            await handle(r, w, host, port, delay)

        servers.append(await asyncio.start_server(on_client, "127.0.0.1", listen_port))
    if ready is not None:
        ready.write_text("listening\n")
    await delay.watch()


def _forward(value: str) -> tuple[int, str, int]:
    listen, host, port = value.split(":")
    return int(listen), host, int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--forward", type=_forward, action="append", required=True)
    parser.add_argument("--ready", type=Path, help="written once every port listens")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.forward, args.control, args.ready))


if __name__ == "__main__":
    main()
