"""The work queue: deduplication, re-run after a change in flight, bounded concurrency, backoff."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from typing import Any, TypeVar

from controller.engine.queue import WorkQueue

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def drain(queue: WorkQueue, items: list[str]) -> None:
    """Start the queue, add `items`, wait until nothing is left, stop."""
    queue.start()
    for item in items:
        queue.add(item)
    await queue.wait_idle(5)
    await queue.stop()


def test_waiting_items_are_deduplicated() -> None:
    seen: list[str] = []

    async def scenario() -> None:
        async def handle(item: str) -> bool:
            seen.append(item)
            return False

        queue = WorkQueue(handle, concurrency=1, rate_per_second=1000)
        for item in ["a", "b", "a", "a", "b", "c"]:
            queue.add(item)
        assert queue.depth == 3
        await drain(queue, [])

    run(scenario())
    assert seen == ["a", "b", "c"]


def test_item_added_while_in_flight_runs_again_once() -> None:
    seen: list[str] = []

    async def scenario() -> None:
        release = asyncio.Event()

        async def handle(item: str) -> bool:
            seen.append(item)
            if len(seen) == 1:
                await release.wait()
            return False

        queue = WorkQueue(handle, concurrency=2, rate_per_second=1000)
        queue.start()
        queue.add("p")
        await asyncio.sleep(0.05)
        queue.add("p")
        queue.add("p")
        release.set()
        await queue.wait_idle(5)
        await queue.stop()

    run(scenario())
    assert seen == ["p", "p"]


def test_concurrency_is_bounded() -> None:
    peak = 0

    async def scenario() -> None:
        running = 0

        async def handle(item: str) -> bool:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1
            return False

        queue = WorkQueue(handle, concurrency=3, rate_per_second=1000)
        await drain(queue, [f"p{i}" for i in range(20)])

    run(scenario())
    assert peak == 3


def test_failing_item_backs_off_exponentially_then_succeeds() -> None:
    times: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        async def handle(item: str) -> bool:
            times.append(loop.time())
            return len(times) < 4  # fail three times, then succeed

        queue = WorkQueue(handle, concurrency=1, rate_per_second=1000, backoff_base=0.05)
        await drain(queue, ["p"])

    run(scenario())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 4
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.195


def test_rate_limit() -> None:
    async def scenario() -> float:
        async def handle(item: str) -> bool:
            return False

        loop = asyncio.get_running_loop()
        queue = WorkQueue(handle, concurrency=4, rate_per_second=20)
        queue.start()
        started = loop.time()
        for i in range(40):
            queue.add(f"p{i}")
        await queue.wait_idle(10)
        await queue.stop()
        return loop.time() - started

    # A leaky bucket of 20/s lets the first burst through, the rest at the rate.
    assert run(scenario()) >= 0.9


def test_a_raising_handler_is_retried_not_fatal() -> None:
    calls = 0

    async def scenario() -> None:
        async def handle(item: str) -> bool:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("boom")
            return False

        queue = WorkQueue(handle, concurrency=1, rate_per_second=1000, backoff_base=0.01)
        await drain(queue, ["p"])

    run(scenario())
    assert calls == 2
