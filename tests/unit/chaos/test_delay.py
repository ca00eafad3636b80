"""chaos.delay, the forwarder that delays what a worker sends where the kernel has no netem:
each chunk goes on `delay` after it arrived, in order, and an end of stream follows the
data."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from chaos import delay


async def _pair() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Server, list]:
    """A server that collects what it receives (with arrival times), and a client to it."""
    received: list = []
    done = asyncio.Event()

    async def collect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            received.append((time.monotonic(), data))
        done.set()
        writer.close()

    server = await asyncio.start_server(collect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received.append(done)
    return reader, writer, server, received


def test_each_chunk_goes_on_after_the_delay_in_order_then_the_end(tmp_path: Path) -> None:
    control = tmp_path / "control"
    control.write_text("200\n")
    gate = delay.Delay(control)
    gate.read()
    assert gate.seconds == 0.2

    async def scenario() -> tuple[float, list]:
        _, out, server, received = await _pair()
        done = received.pop(0)
        source = asyncio.StreamReader()
        started = time.monotonic()
        for chunk in (b"one ", b"two ", b"three"):
            source.feed_data(chunk)
        source.feed_eof()
        await delay.pipe(source, out, gate)
        await asyncio.wait_for(done.wait(), 5)
        server.close()
        return started, received

    started, received = asyncio.run(scenario())
    assert b"".join(data for _, data in received) == b"one two three"
    assert min(at for at, _ in received) - started >= 0.19


def test_a_missing_or_bad_control_file_is_no_delay(tmp_path: Path) -> None:
    gate = delay.Delay(tmp_path / "absent")
    gate.read()
    assert gate.seconds == 0.0
    (tmp_path / "bad").write_text("soon")
    gate = delay.Delay(tmp_path / "bad")
    gate.read()
    assert gate.seconds == 0.0
