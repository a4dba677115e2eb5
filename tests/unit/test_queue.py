"""The work queue: deduplication, re-run after a change in flight, bounded concurrency, backoff."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from typing import Any, TypeVar

from reel_reconciler.engine.queue import Handler, WorkQueue
from tests.support.patience import bound
from tests.support.recording import TESTS


def queue_for(handle: Handler, **options: Any) -> WorkQueue:
    """A queue of the tests' reconciler."""
    return WorkQueue(handle, reconciler=TESTS, **options)


T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def drain(queue: WorkQueue, items: list[str]) -> None:
    """Start the queue, add `items`, wait until nothing is left, stop."""
    queue.start()
    for item in items:
        queue.add(item)
    await asyncio.wait_for(queue.wait_idle(), bound(5))
    await queue.stop()


def test_waiting_items_are_deduplicated() -> None:
    seen: list[str] = []

    async def scenario() -> None:
        async def handle(batch: list[str]) -> set[str]:
            seen.extend(batch)
            return set()

        queue = queue_for(handle, concurrency=1, rate_per_second=1000, max_batch=1)
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

        async def handle(batch: list[str]) -> set[str]:
            seen.extend(batch)
            if len(seen) == 1:
                await release.wait()
            return set()

        queue = queue_for(handle, concurrency=2, rate_per_second=1000, max_batch=10)
        queue.start()
        queue.add("p")
        await asyncio.sleep(0.05)
        queue.add("p")
        queue.add("p")
        release.set()
        await asyncio.wait_for(queue.wait_idle(), bound(5))
        await queue.stop()

    run(scenario())
    assert seen == ["p", "p"]


def test_concurrency_is_bounded() -> None:
    peak = 0

    async def scenario() -> None:
        running = 0

        async def handle(_batch: list[str]) -> set[str]:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1
            return set()

        queue = queue_for(handle, concurrency=3, rate_per_second=1000, max_batch=1)
        await drain(queue, [f"p{i}" for i in range(20)])

    run(scenario())
    assert peak == 3


def test_failing_item_backs_off_exponentially_then_succeeds() -> None:
    times: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        async def handle(batch: list[str]) -> set[str]:
            times.append(loop.time())
            return set(batch) if len(times) < 4 else set()  # fail three times, then succeed

        queue = queue_for(handle, concurrency=1, rate_per_second=1000, max_batch=10,
                          backoff_base=0.05)
        await drain(queue, ["p"])

    run(scenario())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 4
    assert gaps[0] >= 0.045
    assert gaps[1] >= 0.095
    assert gaps[2] >= 0.195


def test_rate_limit() -> None:
    async def scenario() -> float:
        async def handle(_batch: list[str]) -> set[str]:
            return set()

        loop = asyncio.get_running_loop()
        queue = queue_for(handle, concurrency=4, rate_per_second=20, max_batch=100)
        queue.start()
        started = loop.time()
        for i in range(40):
            queue.add(f"p{i}")
        await asyncio.wait_for(queue.wait_idle(), bound(10))
        await queue.stop()
        return loop.time() - started

    # A leaky bucket of 20/s lets the first 20 through (batches never exceed the bucket),
    # the rest at the rate.
    assert run(scenario()) >= 0.9


def test_a_raising_handler_is_retried_not_fatal() -> None:
    calls = 0

    async def scenario() -> None:
        async def handle(_batch: list[str]) -> set[str]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("boom")
            return set()

        queue = queue_for(handle, concurrency=1, rate_per_second=1000, max_batch=10,
                          backoff_base=0.01)
        await drain(queue, ["p"])

    run(scenario())
    assert calls == 2


def test_waiting_items_go_out_together_up_to_the_batch_size() -> None:
    batches: list[list[str]] = []

    async def scenario() -> None:
        async def handle(batch: list[str]) -> set[str]:
            batches.append(batch)
            return set()

        queue = queue_for(handle, concurrency=1, rate_per_second=1000, max_batch=10)
        for i in range(25):
            queue.add(f"p{i}")
        await drain(queue, [])

    run(scenario())
    assert [len(batch) for batch in batches] == [10, 10, 5]
    assert [item for batch in batches for item in batch] == [f"p{i}" for i in range(25)]


def test_only_the_items_a_batch_returns_are_retried() -> None:
    seen: list[str] = []

    async def scenario() -> None:
        async def handle(batch: list[str]) -> set[str]:
            seen.extend(batch)
            return {"b"} if seen.count("b") == 1 else set()

        queue = queue_for(handle, concurrency=1, rate_per_second=1000, max_batch=10,
                          backoff_base=0.01)
        await drain(queue, ["a", "b", "c"])

    run(scenario())
    assert seen == ["a", "b", "c", "b"]


def test_a_rate_below_one_per_second_still_lets_an_item_through() -> None:
    seen: list[str] = []

    async def scenario() -> None:
        async def handle(batch: list[str]) -> set[str]:
            seen.extend(batch)
            return set()

        queue = queue_for(handle, concurrency=1, rate_per_second=0.5, max_batch=10)
        await drain(queue, ["slow"])

    run(scenario())
    assert seen == ["slow"]


def test_add_after_runs_an_item_again_once_its_hold_passes_without_backoff() -> None:
    """A project held by a window is looked at again when the window ends; a second, later
    request for it does not push the first one back, and no failure is counted."""
    seen: list[tuple[str, float]] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        queue: WorkQueue

        async def handle(batch: list[str]) -> set[str]:
            seen.extend((item, loop.time() - started) for item in batch)
            if len(seen) == 1:
                queue.add_after("p", 0.2)
                queue.add_after("p", 5.0)
            return set()

        queue = queue_for(handle, concurrency=1, rate_per_second=1000, max_batch=1)
        await drain(queue, ["p"])

    run(scenario())
    assert [item for item, _ in seen] == ["p", "p"]
    assert 0.2 <= seen[1][1] < bound(1.0), "the later request must not push the first back"


def test_a_stop_cancels_retry_timers_waits_for_the_batch_in_flight_and_takes_nothing_more(
) -> None:
    """The batch in flight finishes (a write is never cut in half); the failing item's retry
    timer and everything added later are dropped, and no worker or batch outlives stop()."""
    handled: list[list[str]] = []

    async def scenario() -> WorkQueue:
        release, both_taken = asyncio.Event(), asyncio.Event()

        async def handle(batch: list[str]) -> set[str]:
            handled.append(batch)
            if len(handled) == 2:
                both_taken.set()
            if batch == ["slow"]:
                await release.wait()
                return set()
            return set(batch)  # fails: a retry timer is set

        queue = queue_for(handle, concurrency=2, rate_per_second=1000, max_batch=1,
                          backoff_base=0.05)
        queue.start()
        queue.add("failing")
        queue.add("slow")
        await asyncio.wait_for(both_taken.wait(), bound(5))
        stopping = asyncio.create_task(queue.stop())
        await asyncio.sleep(0.3)  # six backoff bases: a retry not cancelled would have run
        assert not stopping.done(), "stop() must wait for the batch in flight"
        queue.add("late")
        release.set()
        await asyncio.wait_for(stopping, bound(5))
        queue.add("later")
        await asyncio.sleep(0.1)
        return queue

    queue = run(scenario())
    assert handled == [["failing"], ["slow"]]
    assert queue.closed
    assert queue.in_flight == 0


def test_a_stop_whose_caller_is_cancelled_still_drains() -> None:
    """Kopf cancels a daemon that does not exit in time; the queue's drain must not stop
    half-way (the runtime shields it, as here)."""

    async def scenario() -> WorkQueue:
        release = asyncio.Event()
        finished: list[str] = []

        async def handle(batch: list[str]) -> set[str]:
            await release.wait()
            finished.extend(batch)
            return set()

        queue = queue_for(handle, concurrency=1, rate_per_second=1000, max_batch=1)
        queue.start()
        queue.add("p")
        await asyncio.sleep(0.05)
        drain_task = asyncio.ensure_future(queue.stop())
        caller = asyncio.ensure_future(asyncio.shield(drain_task))
        await asyncio.sleep(0.05)
        caller.cancel()
        release.set()
        await asyncio.wait_for(drain_task, bound(5))
        assert finished == ["p"]
        return queue

    assert run(scenario()).in_flight == 0
