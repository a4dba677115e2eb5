"""What the default schedule costs (issue #26 item 7), from counts measured on the stores in
memory: Firestore documents read and GCS operations by class, as the price lists bill them.

    python -m bench.cost [--projects 10000] [--target 1000000]

Each pass runs the product's own code on the app-shaped data of bench/data.py, held by the
devkit stores in memory, and counts what the stores bill (reel_reconciler/stores/billing.py):

- a full sweep with a default spec's plan (observe off), measured on its second run: the
  first corrects the data's drift once; and a simulated day of the timed sweep as the
  runtime runs it (delta rounds, one rolling full pass a day; bench/day.py), which is what
  the per-day model counts;
- the listeners: the real change feed fed the messages Listen would send (every watched
  document on a fresh Listen, nothing more on a scheduled restart that resumes from its
  token, every match again after a broken stream), and the reconciles of what they queue,
  in the work queue's batches;
- the stale-job cleanup both ways: querying every active job (the timer's safety net every
  6 hours, and the CLI), and from the jobs listener's view (reading only the jobs it shows
  silent); the per-day figure is the timer's simulated day (bench/day.py): the view every
  5 minutes, a query every 6 hours, and the jobs that go stale meanwhile;
- one heartbeat.

Then the per-day figures for `--target` projects at the default intervals (every count
grows with the projects but the heartbeat's), and dollars at list prices, Firestore's and
GCS's apart: an estimate, not a bill.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, cast

from google.cloud.firestore_v1.types.firestore import ListenResponse, TargetChange

from bench.data import Generator
from bench.day import listener_view, simulate
from devkit.memory import StreamingObjects, StreamingProjects
from reel_reconciler import defaults
from reel_reconciler.engine.reconcile import Engine, Pipeline
from reel_reconciler.engine.recorder import Recorder
from reel_reconciler.engine.stale import cleanup_stale_jobs
from reel_reconciler.engine.sweep import sweep
from reel_reconciler.engine.sweep.ranges import SweepPlan
from reel_reconciler.model import ACTIVE_JOB_STATUSES, ReconcilerId, Trigger
from reel_reconciler.runtime.reconciler import MAX_BATCH
from reel_reconciler.spec import ReconcilerSpec
from reel_reconciler.stores.changefeed import TARGET_ID, Change, ChangeFeed
from reel_reconciler.stores.connection import Connection
from reel_reconciler.stores.feedstate import FeedState
from reel_reconciler.stores.firestore import ACTIVE_JOB_FIELDS
from reel_reconciler.stores.queries import WATCHED_PROJECT_STATUSES
from reel_reconciler.stores.values import Document, decode, encode

BUCKET = "reel-bench"
DAY = 86400.0
FIRESTORE_READS_PER_100K = (0.03, 0.06)
"""USD per 100,000 document reads, by location (list prices)."""
GCS_CLASS_A_PER_1000 = 0.005
GCS_CLASS_B_PER_1000 = 0.0004
"""USD per 1,000 operations, Standard storage (list prices)."""
_Kind = TargetChange.TargetChangeType
UNOPENED = cast(Connection, None)
"""The feeds here are never opened: they are handed Listen's messages one by one."""


@dataclass(frozen=True)
class Billed:
    """One pass's billed units."""

    reads: int
    class_a: int
    class_b: int

    def __add__(self, other: Billed) -> Billed:
        return Billed(self.reads + other.reads, self.class_a + other.class_a,
                      self.class_b + other.class_b)

    def times(self, factor: float) -> tuple[float, float, float]:
        return self.reads * factor, self.class_a * factor, self.class_b * factor


NOTHING = Billed(0, 0, 0)


def measured(engine: Pipeline, run: Callable[[], object]) -> Billed:
    """What `run` made the engine's stores bill."""
    before = engine.billed_count()
    run()
    return Billed(*(now - then for now, then in zip(engine.billed_count(), before,
                                                     strict=True)))


def stores(projects: int) -> tuple[StreamingProjects, StreamingObjects]:
    firestore, gcs = StreamingProjects(), StreamingObjects(page_size=1000)
    for project in Generator(projects, bucket=BUCKET):
        firestore.put_project(project.id, project.doc)
        for job in project.jobs:
            firestore.put_job(job["jobId"], job)
        for name in project.objects:
            gcs.put(name)
    return firestore, gcs


# The listeners: the real feed, fed what Listen sends

NAME = "projects/bench/databases/(default)/documents/c/"


def _listen(feed: ChangeFeed, documents: Iterable[Document], fields: Iterable[str],
            gone: Iterable[str] = (), opening: bool = True) -> None:
    """One consistent snapshot as Listen sends it: `documents` in the set, `gone` removed;
    `opening`: the first of a stream (the target added, then current)."""
    names = tuple(fields)
    messages: list[dict[str, Any]] = []
    if opening:
        messages.append({"target_change": {"target_change_type": _Kind.ADD,
                                           "target_ids": [TARGET_ID]}})
    for doc in documents:
        data = doc.data or {}
        messages.append({"document_change": {"target_ids": [TARGET_ID], "document": {
            "name": NAME + doc.id, "update_time": doc.update_time,
            "fields": {name: encode(data[name]) for name in names if name in data}}}})
    messages += [{"document_remove": {"document": NAME + doc_id}} for doc_id in gone]
    if opening:
        messages.append({"target_change": {"target_change_type": _Kind.CURRENT,
                                           "target_ids": [TARGET_ID]}})
    messages.append({"target_change": {"target_change_type": _Kind.NO_CHANGE,
                                       "read_time": {"seconds": int(time.time())},
                                       "resume_token": b"bench"}})
    for message in messages:
        feed.handle(ListenResponse.pb(ListenResponse(**message)))


class Feeds:
    """The projects and jobs listeners' feeds over the store's watched documents."""

    FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {"projects": (), "jobs": ACTIVE_JOB_FIELDS}

    def __init__(self, firestore: StreamingProjects) -> None:
        self.firestore = firestore
        self.queued: list[str] = []
        self.states: dict[str, FeedState | None] = dict.fromkeys(self.FIELDS)
        self.live: dict[str, ChangeFeed] = {}
        self.reads = 0

    def watched(self, name: str) -> list[Document]:
        if name == "projects":
            return [doc for doc in self.firestore.projects.values()
                    if (doc.data or {}).get("status") in WATCHED_PROJECT_STATUSES]
        return [doc for doc in self.firestore.jobs.values()
                if (doc.data or {}).get("status") in ACTIVE_JOB_STATUSES]

    def _changes(self, name: str) -> Callable[[list[Change]], None]:
        def queue(changes: list[Change]) -> None:
            if name == "projects":  # a project entering or changing in the watched set
                self.queued += [change.id for change in changes if change.present]
            else:  # a job leaving the active set
                self.queued += [str(change.data["projectId"]) for change in changes
                                if not change.present and change.data.get("projectId")]
        return queue

    def _bill(self, documents: int) -> None:
        self.reads += documents

    def start(self, resend: bool, broken: bool = False) -> list[str]:
        """Every feed (re)started from the last one's state; returns the ids queued.
        `resend`: Listen sends every match (a fresh Listen); `broken`: the last stream broke,
        so its successor listens without a token."""
        self.queued = []
        for name, fields in self.FIELDS.items():
            state = self.states[name]
            if state is not None and broken:
                state = state.without_token()
            feed = ChangeFeed(UNOPENED, {"query": {}}, fields, decode, self._changes(name),
                              state, billed=self._bill)
            _listen(feed, self.watched(name) if resend else (), fields)
            self.live[name] = feed
        return self.queued

    def echo(self) -> list[str]:
        """What the live feeds hear after our own writes: every watched document sent again
        (the feed bills and queues only those whose update time moved), the members that
        left removed. Returns the ids queued."""
        self.queued = []
        for name, feed in self.live.items():
            watched = self.watched(name)
            left = feed.members - {doc.id for doc in watched}
            _listen(feed, watched, self.FIELDS[name], left, opening=False)
        return self.queued

    def stop(self) -> None:
        """The feeds stopped, their state kept for the next start."""
        for name, feed in self.live.items():
            self.states[name] = feed.state()
        self.live = {}


def listener_pass(engine: Pipeline, feeds: Feeds, resend: bool, broken: bool = False
                  ) -> Billed:
    """A listener (re)start: its feeds' reads and the reconciles of what they queue, in the
    work queue's batches, until the feeds hear nothing new (our own corrections come back
    once through them)."""
    feeds.reads = 0
    queued = feeds.start(resend, broken)

    def reconcile() -> None:
        pending = queued
        while pending:
            for start in range(0, len(pending), MAX_BATCH):
                engine.reconcile_many(pending[start:start + MAX_BATCH], Trigger.LISTENER)
            pending = feeds.echo()

    billed = measured(engine, reconcile) + Billed(feeds.reads, 0, 0)
    feeds.stop()
    return billed


def heartbeat_read() -> int:
    """One beat as the heartbeat listener is billed: its document changed."""
    billed: list[int] = []
    feed = ChangeFeed(UNOPENED, {"documents": {}}, (), decode, lambda _: None,
                      FeedState({}, b"bench"), billed=billed.append)
    _listen(feed, [Document("beat", {"beat": 1}, Generator(0).now)], ())
    return sum(billed)


# The report

CHANGE_PER_HOUR = 0.01
"""Share of users whose storage changes in an hour, in the simulated day."""


def dollars(reads: float, class_a: float, class_b: float) -> tuple[float, float, float]:
    """Firestore's reads at the low and the high list price, and GCS's operations."""
    gcs = class_a * GCS_CLASS_A_PER_1000 / 1000 + class_b * GCS_CLASS_B_PER_1000 / 1000
    low, high = (reads * price / 100_000 for price in FIRESTORE_READS_PER_100K)
    return low, high, gcs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=10_000,
                        help="projects measured in memory (default 10,000)")
    parser.add_argument("--target", type=int, default=1_000_000,
                        help="projects the per-day model is for (default 1,000,000)")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the data's invalid projects, one line each
    n = args.projects
    started = time.monotonic()
    firestore, gcs = stores(n)
    spec = ReconcilerSpec.parse({"storage": {"bucket": BUCKET}})
    settings = spec.settings().model_copy(update={
        "settle": timedelta(0), "max_destructive": 10 * n})  # the brake is not measured
    engine = Pipeline(settings, firestore, gcs, Recorder(ReconcilerId("bench-cost")))
    plan = SweepPlan(spec.sweep.ranges, spec.sweep.parallel)

    def timed_sweep() -> None:
        result = sweep(engine, spec.observe, Trigger.SWEEP, keep_reports=False, plan=plan)
        assert result.aborted is None, result.aborted
        assert result.scanned == n, result.scanned

    timed_sweep()  # corrects the data's drift once: the passes below are the steady state
    full = measured(engine, timed_sweep)
    feeds = Feeds(firestore)
    watched = len(feeds.watched("projects")), len(feeds.watched("jobs"))
    first = listener_pass(engine, feeds, resend=True)
    scheduled = listener_pass(engine, feeds, resend=False)
    broken = listener_pass(engine, feeds, resend=True, broken=True)
    # The memory store answers the stale-job queries and writes as Firestore does.
    cleaner = cast(Engine, engine)
    measured(engine, lambda: cleanup_stale_jobs(cleaner))  # fails the data's stale jobs once
    stale = measured(engine, lambda: cleanup_stale_jobs(cleaner))
    view = listener_view(firestore)
    from_view = measured(engine, lambda: cleanup_stale_jobs(cleaner, view=view))
    beat = heartbeat_read()
    # A simulated day of the default timed sweep (delta rounds, a rolling full pass) at `n`
    # projects, its fingerprint reads spread as at 1M (bench/day.py).
    day = simulate(n, CHANGE_PER_HOUR, delta=True, seed=6)
    rounds = Billed(round(day["at_1m"] * n), day["gcs_lists"], 0)

    print(f"# reel-reconciler cost model ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()})\n")
    print(f"Measured in memory: {n:,} projects, {len(firestore.jobs):,} jobs, "
          f"{len(gcs.objects):,} objects, {watched[0]:,} projects and {watched[1]:,} jobs "
          "watched by the listeners "
          f"({time.monotonic() - started:.0f} s).\n")
    print("| pass | Firestore reads | reads per project | GCS class A | GCS class B |")
    print("|---|---:|---:|---:|---:|")
    rows = [(f"full sweep ({spec.sweep.ranges} ranges, K={spec.sweep.parallel})", full),
            ("listener first start (no state)", first),
            ("listener scheduled restart (resume token)", scheduled),
            ("listener restart after a broken stream (no token)", broken),
            ("stale-job cleanup, every active job queried (safety net, CLI)", stale),
            ("stale-job cleanup from the jobs listener's view", from_view)]
    for name, billed in rows:
        print(f"| {name} | {billed.reads:,} | {billed.reads / n:.3f} | {billed.class_a:,} | "
              f"{billed.class_b:,} |")
    print(f"| heartbeat (one beat) | {beat} | | | |")

    scale = args.target / n
    full_rounds = DAY / defaults.SWEEP_INTERVAL.total_seconds()
    print(f"\nWere every round a full pass (as before delta rounds), the timed sweeps alone "
          f"would read {full.reads * full_rounds * scale:,.0f} documents a day at "
          f"{args.target:,} projects ({full.reads * full_rounds / n:.2f} per project).")
    sweeps = (f"timed sweeps (delta rounds, {CHANGE_PER_HOUR:.0%} of users changing storage "
              "per hour, one full pass a day)")
    timer = (f"stale-job timer (a simulated day: the listener's view, every active job queried "
             f"every {defaults.STALE_FULL_PASS_EVERY}, {day['stale_candidates']:,} candidates "
             "read)")
    simulated = {sweeps, timer}  # already a day's counts: scaled, not multiplied by runs
    schedule = [
        (sweeps, rounds, 1),
        ("scheduled listener restarts", scheduled,
         DAY / defaults.RESUBSCRIBE_INTERVAL.total_seconds()),
        (timer, Billed(day["stale_reads"], day["stale_gcs_lists"], 0),
         DAY / defaults.STALE_INTERVAL.total_seconds()),
    ]
    print(f"\nPer day at {args.target:,} projects on the default schedule (sweep every "
          f"{defaults.SWEEP_INTERVAL}, listeners resubscribed every "
          f"{defaults.RESUBSCRIBE_INTERVAL}, stale jobs every {defaults.STALE_INTERVAL}, "
          f"a heartbeat every {defaults.HEARTBEAT_INTERVAL}); the app's own changes and "
          "restarts of the process come on top:\n")
    print("| source | runs a day | Firestore reads | reads per project | GCS class A | "
          "GCS class B | Firestore USD a day | GCS USD a day |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    total = [0.0, 0.0, 0.0]
    for name, billed, runs in schedule:
        reads, class_a, class_b = billed.times(scale * (1 if name in simulated else runs))
        total = [total[0] + reads, total[1] + class_a, total[2] + class_b]
        low, high, gcs_usd = dollars(reads, class_a, class_b)
        print(f"| {name} | {runs:,.0f} | {reads:,.0f} | {reads / args.target:.2f} | "
              f"{class_a:,.0f} | {class_b:,.0f} | {low:,.2f}-{high:,.2f} | {gcs_usd:,.2f} |")
    beats = DAY / defaults.HEARTBEAT_INTERVAL.total_seconds()
    total[0] += beats * beat
    print(f"| heartbeats | {beats:,.0f} | {beats * beat:,.0f} | | | | | |")
    low, high, gcs_usd = dollars(*total)
    print(f"| **total** | | **{total[0]:,.0f}** | **{total[0] / args.target:.2f}** | "
          f"{total[1]:,.0f} | {total[2]:,.0f} | **{low:,.2f}-{high:,.2f}** | "
          f"**{gcs_usd:,.2f}** |")
    print("\nAn estimate at list prices (Firestore $0.03-0.06 per 100,000 reads by location, "
          "GCS $0.005 per 1,000 class A and $0.0004 per 1,000 class B operations), not a "
          "bill: free tiers, discounts, writes, storage and network are left out.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
