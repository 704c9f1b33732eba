"""A TCP proxy on loopback that a test can take down and bring back on the same port.

Put between the gateway and the sandbox it makes a Telegram outage for real: while it is down,
connecting is refused and every open connection is cut. With `answering = False` requests still
reach the sandbox but its answers are swallowed: a Telegram that stalls after doing the work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`; `stop()` refuses and cuts, `start()` resumes."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0
        #: False: what the target sends back is dropped (the client waits for ever).
        self.answering = True

    async def start(self) -> None:
        """Listen (on the same port as before, once there is one)."""
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()  # both pipes of each connection then read their end
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        self._writers.clear()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(
                _pipe(reader, up_writer, lambda: True),
                _pipe(up_reader, writer, lambda: self.answering),
            )
        finally:
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)
            self._tasks.discard(task)


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, passing: Callable[[], bool]
) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            if passing():
                writer.write(data)
                await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()
