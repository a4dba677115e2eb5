"""Ranged sweeps at scale (issue #26): how long one replica takes with K ranges at once, and
a round spread over replicas.

    python -m bench.scale [--projects 100000] [--replicas 4] [--emulated 10000,100000]
                          [--before REV]

Two parts, the same sweep code in both:

- Simulated: the app-shaped data of bench/data.py in stores held in memory behind the
  store protocols the sweep reads (`StreamedProjects`, `ListedObjects`), every request
  delayed as on GCP: a GCS page (or any GCS call) 100 ms at the median with a lognormal tail
  (p99 about 1 s), a Firestore page (or any Firestore call) 30 ms. Run in observe mode with
  ranges off (one stream per store: the sweep before ranges) and with 64 ranges at K = 1, 4,
  8; each time is extrapolated linearly to 1M projects when fewer are run.
- Replicas: the same data, forked into `--replicas` processes (the data shared
  copy-on-write), each holding up to 8 ranges at once and taking the next from one shared
  queue as a worker takes the next message of the work subscription (`SweepPlan.of_share`,
  the code a worker runs); the coordinator then passes the projects without a userId.
  On this machine the replicas share its cores, so the figure is an upper bound; with
  `--apart` each replica runs alone in turn on a fixed share of the ranges, standing for a
  machine of its own, and the round lasts as long as the slowest.
- Emulated: the same data seeded into the Firestore emulator and a GCS stand-in, each sweep
  in a process of its own (bench.measure), with ranges off before (the code of --before, by
  default the commit this branch started from) and after, then 64 ranges at K = 1, 4, 8;
  each size of --emulated seeded once for all its runs.
"""

from __future__ import annotations

import argparse
import bisect
import logging
import math
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

from bench.data import CLIP_SIZE, Generator
from bench.run import GCP_PROJECT, REPO, measure, seed_firestore, start_gcs
from devkit.emulators import firestore_emulator
from devkit.memory import EPOCH, StreamingObjects, StreamingProjects, firestore_order
from reel_reconciler.config import Settings
from reel_reconciler.engine.reconcile import Pipeline
from reel_reconciler.engine.recorder import Recorder
from reel_reconciler.engine.sweep import PROJECT_FIELDS, sweep
from reel_reconciler.engine.sweep.ranges import SweepPlan, plan_ranges
from reel_reconciler.model import ObjectInfo, ReconcilerId
from reel_reconciler.stores.firestore import Document

GCS_MEDIAN = 0.100
GCS_P99 = 1.0
FIRESTORE_PAGE = 0.030
TARGET = 1_000_000
Z99 = 2.3263
"""The standard normal's 99th percentile."""


class Latency:
    """Seconds per request: GCS lognormal (median 100 ms, p99 1 s), Firestore 30 ms."""

    def __init__(self, seed: int = 26) -> None:
        self.rng = random.Random(seed)
        self.sigma = math.log(GCS_P99 / GCS_MEDIAN) / Z99

    def gcs(self, _op: str) -> float:
        return self.rng.lognormvariate(math.log(GCS_MEDIAN), self.sigma)

    def firestore(self, _op: str) -> float:
        return FIRESTORE_PAGE


class IndexedProjects(StreamingProjects):
    """The streams served from lists sorted once (observe mode writes nothing), a userId
    range found by bisection: the store's own cost stays out of the figures."""

    def __init__(self, latency: Callable[[str], float]) -> None:
        super().__init__(latency)
        self._sorted: dict[int, tuple[list[tuple[Any, str]], list[Document]]] = {}

    def _call(self, op: str, what: str) -> None:
        """Every request waits, streamed pages and single reads alike."""
        if self.latency is not None:
            time.sleep(self.latency(op))
        super()._call(op, what)

    def _wait(self, op: str) -> None:
        """Waited in `_call` already."""

    def index(self) -> None:
        for documents in (self.projects, self.jobs):
            keyed = sorted(((firestore_order(doc.data["userId"]), doc.id), doc)
                           for doc in documents.values()
                           if doc.data is not None and "userId" in doc.data)
            self._sorted[id(documents)] = ([key for key, _ in keyed], [doc for _, doc in keyed])

    def _by_user(self, documents: dict[str, Document], op: str, page_size: int,
                 key_range: tuple[str, str | None] | None,
                 fields: Sequence[str] | None) -> Iterator[list[Document]]:
        del fields  # every stand-in document is whole: a projection would save nothing here
        keys, docs = self._sorted[id(documents)]
        first, last = 0, len(keys)
        if key_range is not None:
            lo, hi = key_range
            first = bisect.bisect_left(keys, ((3, lo.encode()), ""))
            last = (bisect.bisect_left(keys, ((3, hi.encode()), "")) if hi is not None
                    else bisect.bisect_left(keys, ((4, ""), "")))
        for start in range(first, last + 1, page_size):
            self._call(op, "stream")
            page = docs[start:min(start + page_size, last)]
            if page:
                yield page
            if len(page) < page_size:
                return


class IndexedObjects(StreamingObjects):
    """The bucket as one sorted list of names; pages and prefixes found by bisection."""

    def __init__(self, names: list[str], latency: Callable[[str], float]) -> None:
        super().__init__((), latency, page_size=1000)
        self.names = sorted(names)

    def _info(self, name: str) -> ObjectInfo:
        return ObjectInfo(name, CLIP_SIZE, EPOCH)

    def _wait(self) -> None:
        if self.latency is not None:
            time.sleep(self.latency("list"))

    def _under(self, prefix: str, start: str | None = None, end: str | None = None
               ) -> tuple[int, int]:
        first = bisect.bisect_left(self.names, max(prefix, start or ""))
        last = bisect.bisect_left(self.names, prefix + "\U0010ffff")
        if end is not None:
            last = min(last, bisect.bisect_left(self.names, end))
        return first, max(first, last)

    def listing(self, prefix: str, start: str | None = None,
                end: str | None = None) -> Iterator[list[ObjectInfo]]:
        first, last = self._under(prefix, start, end)
        for at in range(first, max(last, first + 1), self.page_size):
            self._wait()
            self.requests.count("list")
            yield [self._info(name) for name in self.names[at:min(at + self.page_size, last)]]

    def list_prefix(self, prefix: str) -> list[ObjectInfo]:
        return [obj for page in self.listing(prefix) for obj in page]

    def any_under(self, prefix: str) -> bool:
        self._wait()
        self.requests.count("list")
        first, last = self._under(prefix)
        return last > first

    def stat(self, name: str) -> ObjectInfo | None:
        self._wait()
        self.requests.count("get_metadata")
        at = bisect.bisect_left(self.names, name)
        return self._info(name) if at < len(self.names) and self.names[at] == name else None


def simulated_stores(projects: int) -> tuple[IndexedProjects, IndexedObjects, int]:
    """The data of bench/data.py in memory: only the fields a sweep reads are kept."""
    latency = Latency()
    store = IndexedProjects(latency.firestore)
    names: list[str] = []
    keep = set(PROJECT_FIELDS)
    for project in Generator(projects):
        doc = {k: v for k, v in project.doc.items() if k in keep}
        store.projects[project.id] = Document(project.id, doc, EPOCH)
        for job in project.jobs:
            store.jobs[job["jobId"]] = Document(job["jobId"], job, EPOCH)
        names.extend(project.objects)
    store.index()
    return store, IndexedObjects(names, latency.gcs), len(names)


def settings() -> Settings:
    # The data's deleted clips are destructive corrections: the brake is not what is measured.
    return Settings(bucket="reel-bench", settle=timedelta(0), gcs_page_size=1000,
                    concurrency=8, max_destructive=100_000)


PLANS = {"off": ("ranges off (one stream per store)", SweepPlan()),
         "1": ("64 ranges, K=1", SweepPlan(ranges=64, parallel=1)),
         "4": ("64 ranges, K=4", SweepPlan(ranges=64, parallel=4)),
         "8": ("64 ranges, K=8", SweepPlan(ranges=64, parallel=8))}


def _replica(number: int, store: IndexedProjects, bucket: IndexedObjects, ranges: int,
             parallel: int, work: Any, done: Any) -> None:
    """One replica, forked with the data: `parallel` threads, each taking the next range
    from the shared queue as a worker takes the next message of the subscription, and
    sweeping it alone (`SweepPlan.of_share`), with one engine for them all."""
    bucket.latency = Latency(seed=26 + number).gcs
    engine = Pipeline(settings(), store, bucket, Recorder(ReconcilerId("bench")))
    key_ranges = plan_ranges(ranges)
    totals = {"scanned": 0, "gcs": 0, "firestore": 0, "ranges": 0}
    lock = threading.Lock()

    def take() -> None:
        while (index := work.get()) is not None:
            result = sweep(engine, dry_run=True, keep_reports=False,
                           plan=SweepPlan.of_share([key_ranges[index]]))
            assert result.aborted is None, result.aborted
            with lock:
                totals["scanned"] += result.scanned
                totals["ranges"] += 1

    cpu, before, started = time.process_time(), engine.request_count(), time.monotonic()
    threads = [threading.Thread(target=take) for _ in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    totals["gcs"], totals["firestore"] = (
        now - then for now, then in zip(engine.request_count(), before, strict=True))
    done.put({**totals, "cpu": time.process_time() - cpu,
              "seconds": time.monotonic() - started})


def _fork(context: Any, numbers: Sequence[int], shares: Sequence[Sequence[int]],
          store: IndexedProjects, bucket: IndexedObjects, ranges: int, parallel: int
          ) -> list[dict[str, Any]]:
    """Replicas `numbers` at once, each taking ranges from one queue holding `shares`."""
    work, done = context.Queue(), context.Queue()
    for share in shares:
        for index in share:
            work.put(index)
    for _ in range(len(numbers) * parallel):
        work.put(None)
    processes = [context.Process(target=_replica, args=(n, store, bucket, ranges, parallel,
                                                        work, done)) for n in numbers]
    for process in processes:
        process.start()
    figures = [done.get() for _ in processes]
    for process in processes:
        process.join()
    return figures


def replicated(store: IndexedProjects, bucket: IndexedObjects, projects: int, count: int,
               parallel: int, ranges: int = 64, apart: bool = False) -> dict[str, Any]:
    """A round spread over `count` replicas (processes forked from this one, the data shared
    copy-on-write), each holding up to `parallel` ranges; then the coordinator's pass over
    projects without a usable userId. Its reads of the results are left out: a few a round.

    Together, the replicas share this machine's cores and take ranges from one queue. `apart`
    stands for machines of their own: each replica runs alone in turn on every `count`-th
    range (a fixed share: the queue only balances better), and the round lasts as long as
    the slowest."""
    context = multiprocessing.get_context("fork")
    started = time.monotonic()
    if apart:
        figures = [_fork(context, [n], [range(n, ranges, count)], store, bucket, ranges,
                         parallel)[0] for n in range(count)]
    else:
        figures = _fork(context, range(count), [range(ranges)], store, bucket, ranges,
                        parallel)
    ranges_done = time.monotonic()
    coordinator = Pipeline(settings(), store, bucket, Recorder(ReconcilerId("bench")))
    rest = sweep(coordinator, dry_run=True, keep_reports=False,
                 plan=SweepPlan.of_share([], remainder=True))
    seconds = time.monotonic() - started
    if apart:
        seconds += max(f["seconds"] for f in figures) - (ranges_done - started)
    figures.append({"scanned": rest.scanned, "ranges": 0, "cpu": 0.0, "seconds": 0.0,
                    "gcs": rest.gcs_requests, "firestore": rest.firestore_requests})
    scanned = sum(f["scanned"] for f in figures)
    assert scanned == projects, scanned
    assert sum(f["ranges"] for f in figures) == ranges
    return {"seconds": seconds, "cpu": sum(f["cpu"] for f in figures),
            "gcs": sum(f["gcs"] for f in figures),
            "firestore": sum(f["firestore"] for f in figures),
            "busiest": max(f["ranges"] for f in figures)}


def simulate(projects: int, plans: Sequence[str], replicas: Sequence[int] = (),
             apart: bool = False) -> list[dict[str, Any]]:
    started = time.monotonic()
    store, bucket, objects = simulated_stores(projects)
    print(f"Simulated: {projects:,} projects, {len(store.jobs):,} jobs, {objects:,} objects "
          f"(built in {time.monotonic() - started:.1f}s); GCS {GCS_MEDIAN * 1000:.0f} ms "
          f"median per request, p99 {GCS_P99:.1f} s (lognormal); Firestore "
          f"{FIRESTORE_PAGE * 1000:.0f} ms per request\n", flush=True)
    rows = []
    print("| plan | projects | wall s | CPU s | GCS requests | Firestore requests | "
          f"wall s at {TARGET:,} (extrapolated) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, plan in (PLANS[key] for key in plans):
        engine = Pipeline(settings(), store, bucket, Recorder(ReconcilerId("bench")))
        cpu = time.process_time()
        result = sweep(engine, dry_run=True, keep_reports=False, plan=plan)
        cpu = time.process_time() - cpu
        assert result.aborted is None, result.aborted
        assert result.scanned == projects, result.scanned
        scaled = result.duration_seconds * TARGET / projects
        rows.append({"plan": name, "projects": projects, "seconds": result.duration_seconds,
                     "cpu": cpu, "gcs": result.gcs_requests,
                     "firestore": result.firestore_requests, "at_target": scaled})
        print(f"| {name} | {projects:,} | {result.duration_seconds:.1f} | {cpu:.1f} | "
              f"{result.gcs_requests:,} | {result.firestore_requests:,} | "
              f"{scaled:,.0f} ({scaled / 60:.1f} min) |", flush=True)
    for count in replicas:
        f = replicated(store, bucket, projects, count, 8, apart=apart)
        scaled = f["seconds"] * TARGET / projects
        rows.append({"plan": f"{count} replicas", "projects": projects, **f,
                     "at_target": scaled})
        where = ("each alone in turn, standing for machines of their own" if apart else
                 f"at most {f['busiest']} ranges in one")
        print(f"| 64 ranges over {count} replicas, K=8 each ({where}) | {projects:,} | "
              f"{f['seconds']:.1f} | {f['cpu']:.1f} | "
              f"{f['gcs']:,} | {f['firestore']:,} | {scaled:,.0f} ({scaled / 60:.1f} min) |",
              flush=True)
    return rows


def _before_tree(before: str, workdir: Path) -> Path:
    """The code of `before` (package and bench), unpacked once for every size."""
    old = workdir / "before"
    old.mkdir()
    archive = subprocess.run(["git", "archive", before, "reel_reconciler", "bench"],
                             cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    return old


def _load() -> str:
    """The machine's load averages (1, 5, 15 min): the cores are shared with other work."""
    return " / ".join(f"{figure:.2f}" for figure in os.getloadavg())


def _whole(figures: dict[str, Any], projects: int) -> dict[str, Any]:
    """The figures of a sweep that scanned every project; a stopped one ends the run."""
    if figures["projects"] != projects:
        raise SystemExit(f"a sweep scanned {figures['projects']:,} of {projects:,} projects: "
                         f"{figures['aborted']}")
    return figures


def emulate(projects: int, before: str, old: Path, workdir: Path, repeat: int,
            page_size: int) -> None:
    """The same sweeps on the Firestore emulator and the GCS stand-in (bench.run's), seeded
    once for every run; the before/after pair `repeat` times, in the order before, after,
    after, before, ... so that a drift of the shared machine weighs on both alike."""
    workdir.mkdir()
    with ExitStack() as stack:
        fs = firestore_emulator(workdir)
        fs.start()
        stack.callback(fs.stop)
        stack.enter_context(patch.dict(os.environ, {"FIRESTORE_EMULATOR_HOST": fs.host,
                                                    "GOOGLE_CLOUD_PROJECT": GCP_PROJECT}))
        started = time.monotonic()
        objects: list[tuple[str, str]] = []
        jobs = seed_firestore(Generator(projects), objects)
        gcs = start_gcs("index", workdir, objects)
        stack.callback(gcs.stop)
        print(f"\nEmulated: {projects:,} projects, {jobs:,} jobs, {len(objects):,} objects "
              f"(seeded in {time.monotonic() - started:.1f}s; the Firestore emulator and "
              f"devkit/gcs_server.py; no injected latency; Firestore pages of {page_size:,})",
              flush=True)
        del objects
        # The emulator answers a filtered query (the active jobs) by scanning the collection:
        # at 100,000 projects on a loaded machine that outlasts the default 10 s a request.
        env = {**os.environ, "STORAGE_EMULATOR_HOST": f"http://{gcs.host}",
               "REEL_REQUEST_TIMEOUT": "120", "REEL_RETRY_DEADLINE": "300"}
        assert fs.proc is not None
        assert gcs.proc is not None
        common = ["--page-size", str(page_size),
                  "--process-groups", f"{fs.proc.pid},{gcs.proc.pid}"]
        f = _whole(measure(env, workdir, "warmup", "--approach", "sweep", *common), projects)
        print(f"Untimed warm-up sweep: {f['seconds']:.1f}s; load average {_load()}\n",
              flush=True)
        print("| code | plan | wall s | projects/s | Firestore reads | GCS requests | "
              "Firestore requests | peak RSS MiB | CPU s self / emulators |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        pair = [(f"before ({before})", "ranges off", [],
                 {**env, "PYTHONPATH": f"{old}:{REPO}"}),
                ("after", "ranges off", ["--ranges", "1"], env)]
        runs = [run for turn in range(repeat) for run in (pair if turn % 2 == 0 else pair[::-1])]
        runs += [("after", f"64 ranges, K={k}", ["--ranges", "64", "--parallel", str(k)], env)
                 for k in (1, 4, 8)]
        for number, (code, plan, extra, run_env) in enumerate(runs):
            f = _whole(measure(run_env, workdir, f"run-{number}", "--approach", "sweep",
                               *common, *extra), projects)
            print(f"| {code} | {plan} | {f['seconds']:.1f} | {projects / f['seconds']:,.0f} | "
                  f"{f['firestore_reads']:,} | {f['gcs_requests']:,} | "
                  f"{f['firestore_requests']:,} | {f['peak_rss_mib']:.0f} | "
                  f"{f['cpu_self']:.1f} / {f['cpu_emulators']:.1f} |", flush=True)
        print(f"\nLoad average after {projects:,}: {_load()}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=100_000,
                        help="simulated projects (1,000,000 is the target; 100,000 by default "
                        "and extrapolated: the simulation runs the real policy on every "
                        "project, about 0.2 ms of CPU each; 0: skip)")
    parser.add_argument("--plans", default=",".join(PLANS),
                        help="simulated plans to run, of off,1,4,8 (ranges off, then K)")
    parser.add_argument("--replicas", default="4",
                        help="simulated replicas sharing one round, each K=8, as processes "
                        "taking ranges from one queue (comma-separated counts; '': none)")
    parser.add_argument("--apart", action="store_true",
                        help="run the replicas one at a time, each on its share of the ranges, "
                        "standing for machines of their own (the round lasts as long as the "
                        "slowest) rather than sharing this machine's cores")
    parser.add_argument("--emulated", default="10000",
                        help="projects on the emulators, comma-separated sizes each seeded "
                        "and measured in turn, e.g. 10000,100000 ('' or 0: skip)")
    parser.add_argument("--page-size", default="300",
                        help="Firestore page on the emulators, one for every size or one per "
                        "size of --emulated, comma-separated (300: the controller's default; "
                        "the emulator has no index and sorts the whole collection for every "
                        "page, so at 100,000 a page of 300 costs it about half an hour of CPU "
                        "a sweep)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of the emulated before/after pair")
    parser.add_argument("--before", default="3e35b7f",
                        help="the code for the 'before' run on the emulators")
    args = parser.parse_args(argv)
    try:
        sizes = [int(n) for n in args.emulated.split(",") if n and int(n)]
        pages = [int(n) for n in args.page_size.split(",") if n]
    except ValueError as exc:
        parser.error(f"--emulated and --page-size take comma-separated whole numbers: {exc}")
    if len(pages) == 1:
        pages *= len(sizes)
    if sizes and len(pages) != len(sizes):
        parser.error(f"--page-size: {len(pages)} sizes of page for {len(sizes)} sizes of "
                     "--emulated (give one, or one per size)")
    logging.disable(logging.WARNING)  # the data's skipped and invalid projects, one line each
    print(f"# reel-reconciler ranged sweeps: one replica ({os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')})\n", flush=True)
    if args.projects:
        simulate(args.projects, [p for p in args.plans.split(",") if p],
                 [int(n) for n in args.replicas.split(",") if n], args.apart)
    if sizes:
        with tempfile.TemporaryDirectory(prefix="reel-scale-") as workdir:
            old = _before_tree(args.before, Path(workdir))
            for size, page_size in zip(sizes, pages, strict=True):
                print(f"\nLoad average before {size:,}: {_load()}", flush=True)
                emulate(size, args.before, old, Path(workdir) / f"emulated-{size}", args.repeat,
                        page_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
