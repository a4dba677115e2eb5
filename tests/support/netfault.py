"""A connection that stays open and goes quiet, which loopback never produces on its own.

On loopback the kernel always tells the client when the server goes away (FIN or RST). A
load balancer or NAT that forgets a flow tells it nothing: the client's socket stays open,
its keepalive probes are answered by the middlebox, and every read waits. The two servers
here stand where that middlebox would, so the fault is real TCP, not a patched client.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
HOST = "127.0.0.1"
CHUNK = 65536


class _LoopThread:
    """An asyncio loop in a daemon thread, so a synchronous test can run servers beside it."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def _listen(self, handler: Any) -> None:
        self._thread.start()
        self._server = self._run(asyncio.start_server(handler, HOST, 0))
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _close_all(self) -> None:
        """Subclasses close their sockets; then every task of the loop is cancelled."""
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._run(self._close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()


@dataclass(eq=False)
class _Flow:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    pumps: list[asyncio.Task[None]] = field(default_factory=list)


class StallingProxy(_LoopThread):
    """Forwards TCP connections on 127.0.0.1:`port` to `upstream`, like a load balancer.

    `stall()` makes it forget every open flow: their upstream sides are closed, their client
    sides stay open and never see another byte or a close. Connections opened later are
    forwarded as before, as a balancer does once its backend is back.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        super().__init__("stalling-proxy")
        self.upstream = (upstream_host, upstream_port)
        self._flows: list[_Flow] = []
        self._frozen: list[asyncio.StreamWriter] = []

    def start(self) -> StallingProxy:
        self._listen(self._forward)
        return self

    async def _forward(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:  # the backend is down: refuse, as a balancer with no backend does
            writer.close()
            return
        flow = _Flow(writer, up_writer)
        flow.pumps = [asyncio.create_task(_pump(reader, up_writer)),
                      asyncio.create_task(_pump(up_reader, writer))]
        self._flows.append(flow)
        await asyncio.wait(flow.pumps, return_when=asyncio.FIRST_COMPLETED)
        if flow in self._flows:  # one side closed: close the other (a stalled flow stays)
            self._flows.remove(flow)
            for pump in flow.pumps:
                pump.cancel()
            writer.close()
            up_writer.close()

    async def _stall(self) -> int:
        flows, self._flows = self._flows, []
        for flow in flows:
            for pump in flow.pumps:
                pump.cancel()
            flow.upstream.close()
            self._frozen.append(flow.client)
        return len(flows)

    def stall(self) -> int:
        """Freeze the open flows; returns how many there were."""
        return self._run(self._stall())

    async def _close_all(self) -> None:
        for flow in self._flows:
            flow.client.close()
            flow.upstream.close()
        for writer in self._frozen:
            writer.close()
        await super()._close_all()


class SilentServer(_LoopThread):
    """Accepts connections and reads what arrives, never answering and never closing."""

    def __init__(self) -> None:
        super().__init__("silent-server")
        self.received: list[bytearray] = []
        self._clients: list[asyncio.StreamWriter] = []

    def start(self) -> SilentServer:
        self._listen(self._hold)
        return self

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.append(writer)
        data = bytearray()
        self.received.append(data)
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(CHUNK):
                data.extend(chunk)

    async def _close_all(self) -> None:
        for writer in self._clients:
            writer.close()
        await super()._close_all()

    @property
    def requests(self) -> list[bytes]:
        """What each connection sent, in the order they were accepted."""
        return [bytes(data) for data in self.received]
