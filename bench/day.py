"""Firestore reads of the timed sweep over a simulated day (issue #26): full rounds against
delta rounds.

    python -m bench.day [--projects 10000] [--change 0.01]

The app-shaped data of bench/data.py in the stores held in memory (devkit.memory), the
default schedule (a round every 30 minutes, 64 ranges, `fullEvery` 24h) on a simulated
clock, and every hour `--change` of the users making a new generation of one project (a new
clip in the bucket and the project document pointing at it, as the app writes them). Each
mode first runs one round (the first round of a deployment, or of a day before) and then
counts a day of 48 rounds; every 5 minutes in between the runtime's stale-job timer runs as
the runtime runs it (engine.stale.StaleTimer): from the jobs listener's view of the active jobs
(here the active jobs in the store, as the feed holds them), with its query of every active job
every 6 hours; its reads are counted apart from the rounds'. Reads are counted as Firestore
bills them: one per document a query or a get returns, one for a query that returns none, one
per 1,000 projects counted; GCS list requests are class A operations. The listeners and
notifications are not part of it: they cost the same in both modes. Reading the
fingerprints costs one read per range per round whatever the number of projects: the
figure at 1M projects spreads those over 1M and scales the rest.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from bench.data import CLIP_SIZE, Generator
from devkit.memory import StreamingObjects, StreamingProjects
from reel_reconciler import defaults
from reel_reconciler.config import Settings
from reel_reconciler.engine.reconcile import Engine, Pipeline
from reel_reconciler.engine.recorder import Recorder
from reel_reconciler.engine.stale import ActiveJobs, StaleTimer
from reel_reconciler.engine.sweep import sweep
from reel_reconciler.engine.sweep.delta import Schedule, delta_sweep
from reel_reconciler.engine.sweep.ranges import SweepPlan
from reel_reconciler.model import ACTIVE_JOB_STATUSES, ObjectInfo, ReconcilerId
from reel_reconciler.stores.feedstate import Seen
from reel_reconciler.stores.firestore import ACTIVE_JOB_FIELDS, Document

ROUNDS = int(timedelta(days=1) / defaults.SWEEP_INTERVAL)
CLEANUPS_PER_ROUND = int(defaults.SWEEP_INTERVAL / defaults.STALE_INTERVAL)
PRICE_PER_100K_READS = 0.06
"""US dollars per 100,000 document reads at Firestore's list price (multi-region is higher)."""


class BilledProjects(StreamingProjects):
    """The projects and jobs in memory, each read counted as Firestore bills it, by kind."""

    def __init__(self) -> None:
        super().__init__()
        self.billed: Counter[str] = Counter()

    def _query(self, kind: str, documents: Sequence[Any]) -> None:
        self.billed[kind] += max(1, len(documents))

    def _by_user(self, documents: dict[str, Document], op: str, page_size: int,
                 key_range: tuple[str, str | None] | None,
                 fields: Sequence[str] | None) -> Iterator[list[Document]]:
        pages = 0
        for page in super()._by_user(documents, op, page_size, key_range, fields):
            pages += 1
            self.billed[op] += len(page)
            yield page
        if not pages:
            self.billed[op] += 1

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Document]:
        self.billed["get_jobs"] += len(set(job_ids))
        return super().get_jobs(job_ids)

    def get_projects(self, project_ids: Sequence[str]) -> dict[str, Document]:
        self.billed["get_projects"] += len(set(project_ids))
        return super().get_projects(project_ids)

    def jobs_of_projects(self, project_ids: Sequence[str]) -> dict[str, list[Document]]:
        found = super().jobs_of_projects(project_ids)
        queries = math.ceil(len(set(project_ids)) / 30)
        self.billed["query_jobs"] += max(queries, sum(map(len, found.values())))
        return found

    def active_jobs(self) -> list[Document]:
        found = super().active_jobs()
        self._query("query_active_jobs", found)
        return found

    def count_projects(self) -> int:
        count = super().count_projects()
        self.billed["count_projects"] += max(1, math.ceil(count / 1000))
        return count

    def projects_without_user(self, page_size: int, strings_only: bool = False
                              ) -> Iterator[str]:
        self.billed["scan_projects"] += len(self.projects)
        return super().projects_without_user(page_size, strings_only)

    def projects_of_users(self, users: Sequence[str], fields: Sequence[str] | None = None
                          ) -> list[Document]:
        found = super().projects_of_users(users, fields)
        self.billed["query_user_projects"] += max(math.ceil(len(set(users)) / 30), len(found))
        return found

    def jobs_of_users(self, users: Sequence[str], fields: Sequence[str]) -> list[Document]:
        found = super().jobs_of_users(users, fields)
        self.billed["query_user_jobs"] += max(math.ceil(len(set(users)) / 30), len(found))
        return found

    def count_by_status(self, statuses: Sequence[str]) -> dict[str, int]:
        found = super().count_by_status(statuses)
        self.billed["count_status"] += sum(max(1, math.ceil(n / 1000)) for n in found.values())
        return found

    def projects_not_at_rest(self) -> list[str]:
        found = super().projects_not_at_rest()
        self._query("query_not_at_rest", found)
        return found

    def own_document(self, collection: str, name: str, op: str,
                     fields: Sequence[str] | None = None) -> Document | None:
        self.billed[op] += 1
        return super().own_document(collection, name, op, fields)


def listener_view(firestore: StreamingProjects) -> ActiveJobs:
    """The active jobs as the jobs listener holds them: the fields it keeps of each."""
    found: dict[str, Seen] = {}
    for job_id, doc in firestore.jobs.items():
        data = doc.data or {}
        if data.get("status") in ACTIVE_JOB_STATUSES:
            stamp = (int(doc.update_time.timestamp()), doc.update_time.microsecond * 1000)
            found[job_id] = Seen(stamp, {name: data[name] for name in ACTIVE_JOB_FIELDS
                                         if name in data}, doc.update_time)
    return found


class Day:
    """One mode's stores, clock and app: the same data and the same changes for each."""

    def __init__(self, projects: int, seed: int) -> None:
        self.firestore = BilledProjects()
        self.gcs = StreamingObjects(page_size=1000)
        generator = Generator(projects, seed=seed)
        self.now = generator.now
        self.users: dict[str, list[str]] = {}
        for project in generator:
            self.firestore.put_project(project.id, project.doc)
            for job in project.jobs:
                self.firestore.put_job(job["jobId"], job)
            for name in project.objects:
                self.gcs.objects[name] = ObjectInfo(name, CLIP_SIZE, self.now, 1)
            if isinstance(project.user, str):
                self.users.setdefault(project.user, []).append(project.id)
        self.rng = random.Random(seed)
        self.generation = 1
        settings = Settings(bucket=generator.bucket, settle=timedelta(0), gcs_page_size=1000,
                            concurrency=8, max_destructive=100_000)
        self.engine = Pipeline(settings, self.firestore, self.gcs,
                               Recorder(ReconcilerId("bench")), clock=lambda: self.now)
        self.root = settings.location.root_prefix
        started = self.now
        self.stale = StaleTimer(defaults.STALE_FULL_PASS_EVERY,
                                clock=lambda: (self.now - started).total_seconds())
        self.stale_billed: Counter[str] = Counter()
        self.stale_queries = 0
        self.stale_candidates = 0
        self.stale_lists = 0
        """GCS listings of the projects of the jobs the timer failed."""

    def view(self) -> ActiveJobs:
        return listener_view(self.firestore)

    def stale_timer(self) -> None:
        """One run of the runtime's stale-job timer, its reads counted in `stale_billed`:
        the jobs silent past the stale timeout are failed and their projects reconciled."""
        rounds, self.firestore.billed = self.firestore.billed, self.stale_billed
        lists = self.gcs.requests.by_op()["list"]
        try:
            # The memory store answers the cleanup's queries, gets and writes as Firestore does.
            result = self.stale.run(cast(Engine, self.engine), False, self.view)
        finally:
            self.firestore.billed = rounds
            self.stale_lists += self.gcs.requests.by_op()["list"] - lists
        assert result.error is None, result.error
        self.stale_queries += result.candidates is None
        self.stale_candidates += result.candidates or 0

    def app(self, share: float) -> int:
        """`share` of the users each regenerate the first clip of one of their projects: the
        new clip in the bucket, then the document pointing at it."""
        users = sorted(self.users)
        changed = self.rng.sample(users, round(len(users) * share))
        for user in changed:
            project_id = self.rng.choice(self.users[user])
            doc = self.firestore.projects[project_id]
            data = dict(doc.data or {})
            clips = list(data.get("clipFilenames") or [])
            if not clips or not data.get("promptList"):
                continue
            self.generation += 1
            name = (f"{self.root}/{user}/{project_id}/raw/reeljob-day{self.generation:08d}/"
                    f"prompt-00/clip.mp4")
            self.gcs.objects[name] = ObjectInfo(name, CLIP_SIZE, self.now, self.generation)
            clips[0] = name
            self.firestore.put_project(project_id, {**data, "clipFilenames": clips,
                                                    "updatedAt": self.now})
        return len(changed)


def simulate(projects: int, change: float, delta: bool, seed: int) -> dict[str, Any]:
    day = Day(projects, seed)
    plan = SweepPlan(defaults.SWEEP_RANGES, defaults.SWEEP_PARALLEL)
    interval = defaults.SWEEP_INTERVAL

    def round_at(number: int) -> None:
        if delta:
            schedule = Schedule(day.now, interval, defaults.SWEEP_FULL_EVERY)
            result = delta_sweep(day.engine, schedule, keep_reports=False, plan=plan)
        else:
            result = sweep(day.engine, keep_reports=False, plan=plan)
        assert result.aborted is None, (number, result.aborted)

    round_at(0)
    day.stale_timer()  # the first run queries and fails the data's stale jobs once
    day.firestore.billed.clear()
    day.stale_billed.clear()
    day.stale_queries = day.stale_candidates = day.stale_lists = 0
    gcs0 = day.gcs.requests.by_op()["list"]
    started = time.monotonic()
    changed = 0
    for number in range(1, ROUNDS + 1):
        for _ in range(CLEANUPS_PER_ROUND):
            day.now += defaults.STALE_INTERVAL
            day.stale_timer()
        changed += day.app(change * interval / timedelta(hours=1))
        round_at(number)
    reads = sum(day.firestore.billed.values())
    stale = sum(day.stale_billed.values())
    fixed = day.firestore.billed["get_fingerprints"]
    return {"mode": "delta" if delta else "full", "projects": projects, "reads": reads,
            "per_project": reads / projects,
            "at_1m": (reads - fixed) / projects + fixed / 1_000_000,
            "gcs_lists": day.gcs.requests.by_op()["list"] - gcs0 - day.stale_lists,
            "changed": changed, "seconds": time.monotonic() - started,
            "by_kind": dict(day.firestore.billed.most_common()),
            "stale_reads": stale, "stale_per_project": stale / projects,
            "stale_queries": day.stale_queries, "stale_candidates": day.stale_candidates,
            "stale_gcs_lists": day.stale_lists,
            "stale_by_kind": dict(day.stale_billed.most_common())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--change", type=float, default=0.01,
                        help="share of the users that change their storage per hour")
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the data's skipped and invalid projects, one line each
    print(f"# Timed sweeps over a simulated day: {args.projects:,} projects, "
          f"{args.change:.0%} of users changing per hour, a round every "
          f"{defaults.SWEEP_INTERVAL.total_seconds() / 60:.0f} min, "
          f"{defaults.SWEEP_RANGES} ranges, fullEvery "
          f"{defaults.SWEEP_FULL_EVERY.total_seconds() / 3600:.0f}h "
          f"({datetime.now(UTC):%Y-%m-%d})\n")
    print("| rounds | reads per project per day | the same at 1M projects | $ per day at 1M "
          "(list price) | GCS lists per day | users changed | sim. s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = [simulate(args.projects, args.change, delta, args.seed) for delta in (False, True)]
    for row in rows:
        at_1m = row["at_1m"]
        print(f"| {row['mode']} | {row['per_project']:.2f} | {at_1m:.2f} | "
              f"{at_1m * 10 * PRICE_PER_100K_READS:.2f} | {row['gcs_lists']:,} | "
              f"{row['changed']:,} | {row['seconds']:.0f} |", flush=True)
    for row in rows:
        kinds = ", ".join(f"{kind} {count / args.projects:.2f}"
                          for kind, count in row["by_kind"].items())
        print(f"\n{row['mode']}: reads per project per day by request: {kinds}")
    stale = rows[-1]
    kinds = ", ".join(f"{kind} {count / args.projects:.3f}"
                      for kind, count in stale["stale_by_kind"].items())
    print(f"\nThe stale-job timer besides ({ROUNDS * CLEANUPS_PER_ROUND} runs: "
          f"{stale['stale_queries']} queries of every active job, "
          f"{stale['stale_candidates']:,} candidates read from the listener's view): "
          f"{stale['stale_per_project']:.3f} reads per project per day ({kinds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
