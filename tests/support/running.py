"""A ReconcilerRuntime as the operator runs one, on an event loop of its own, for tests that
drive it from their own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from reel_reconciler.runtime import ReconcilerRuntime
from tests.support.patience import bound


@contextmanager
def running(runtime: ReconcilerRuntime) -> Iterator[ReconcilerRuntime]:
    """Started (listeners, queue, timers) for the block, stopped after it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(runtime.start(), loop).result(bound(60))
    try:
        yield runtime
    finally:
        asyncio.run_coroutine_threadsafe(runtime.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
