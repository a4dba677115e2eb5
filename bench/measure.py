"""Run one approach once, in a process of its own (so peak RSS is its own), and print figures.

    python -m bench.measure --approach sweep|seed --bucket B --reports FILE [...]

Emulators are found through FIRESTORE_EMULATOR_HOST and STORAGE_EMULATOR_HOST. The figures
go to stdout as one JSON object; every report goes to --reports, one JSON object a line.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import google.cloud.storage as storage
from google.cloud import firestore

from bench.seed_approach import SeedReconciler
from reel_reconciler.config import Settings
from reel_reconciler.engine import Engine, Trigger, sweep
from reel_reconciler.engine.sweep.ranges import SweepPlan
from reel_reconciler.model import Action, ReconcilerId, Report
from reel_reconciler.stores.firestore import Document, FirestoreStore
from reel_reconciler.stores.gcs import GcsStore

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class CountingFirestore(FirestoreStore):
    """Counts the documents each read returns: Firestore bills reads per document."""

    documents_read = 0

    def _streamed(self, collection: str, query: Any, op: str,
                  page_size: int) -> Iterator[list[Document]]:
        for batch in super()._streamed(collection, query, op, page_size):
            self.documents_read += len(batch)
            yield batch

    def get_projects(self, project_ids: Sequence[str]) -> dict[str, Document]:
        self.documents_read += len(project_ids)
        return super().get_projects(project_ids)

    def jobs_of_projects(self, project_ids: Sequence[str]) -> dict[str, list[Document]]:
        found = super().jobs_of_projects(project_ids)
        self.documents_read += max(1, sum(len(jobs) for jobs in found.values()))
        return found

    def active_jobs(self) -> list[Document]:
        found = super().active_jobs()
        self.documents_read += max(1, len(found))
        return found

    def count_projects(self) -> int:
        total = super().count_projects()
        self.documents_read += 1 + total // 1000  # an aggregation: a read per 1,000 entries
        return total


def cpu_seconds(groups: Sequence[int]) -> float:
    """CPU time (user+system) of every process in the given process groups."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM). Not `ru_maxrss`: after fork and exec that
    starts from the parent's peak, and the parent held the whole data set while seeding."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_sweep(args: argparse.Namespace, out: io.TextIOBase) -> dict[str, Any]:
    # The data's deleted clips are destructive corrections: the brake is not what is measured.
    settings = Settings(bucket=args.bucket, page_size=args.page_size, settle=timedelta(0),
                        gcs_page_size=1000, concurrency=8, max_destructive=100_000)
    bench = ReconcilerId("bench")
    store = CountingFirestore(settings, reconciler=bench)
    engine = Engine(settings, store, GcsStore(settings, reconciler=bench), reconciler=bench)

    def keep(report: Report) -> None:
        """Every report goes to the file for the comparison with the seed; a no_change one
        as the few keys that comparison reads, so that writing 100k of them in full (the
        sweep itself keeps none) does not weigh on the figures of the run it measures."""
        if (report.action is Action.NO_CHANGE and not report.drift_kinds
                and not report.missing_clips and not report.restored_clips
                and report.original_status == report.corrected_status):
            status = json.dumps(report.corrected_status)
            out.write(f'{{"projectId":{json.dumps(report.project_id)},"action":"no_change",'
                      f'"originalStatus":{status},"correctedStatus":{status},'
                      '"missingClips":[],"restoredClips":[]}\n')
        else:
            out.write(json.dumps(report.as_json(), separators=(",", ":")) + "\n")

    profiler = cProfile.Profile() if args.profile else None
    started = time.monotonic()
    if profiler:
        profiler.enable()
    result = sweep(engine, dry_run=not args.enforce, trigger=Trigger.SWEEP, on_report=keep,
                   keep_reports=False, plan=SweepPlan(args.ranges, args.parallel))
    if profiler:
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
        args.profile.write_text(text.getvalue())
    seconds = time.monotonic() - started
    writes = result.actions[Action.CORRECTED] if args.enforce else 0
    return {"projects": result.scanned, "seconds": seconds,
            "gcs_requests": result.gcs_requests,
            "firestore_requests": result.firestore_requests,
            "firestore_reads": store.documents_read, "firestore_writes": writes,
            "would_write": result.drifted, "actions": result.counts(),
            "aborted": result.aborted}


def run_seed(args: argparse.Namespace, out: io.TextIOBase) -> dict[str, Any]:
    project = os.environ.get("GOOGLE_CLOUD_PROJECT")
    seed = SeedReconciler(firestore.Client(project=project), storage.Client(project=project),
                          args.bucket)
    actions: Counter[str] = Counter()
    scanned = 0
    started = time.monotonic()
    for project_id in seed.project_ids(args.page_size, args.limit):
        report = seed.reconcile_project(project_id, auto_fix=args.enforce)
        if report is None:
            continue
        scanned += 1
        actions[report.action] += 1
        out.write(json.dumps(report.as_json(), separators=(",", ":")) + "\n")
    seconds = time.monotonic() - started
    return {"projects": scanned, "seconds": seconds, "gcs_requests": seed.gcs_requests,
            "firestore_requests": seed.firestore_requests,
            "firestore_reads": seed.firestore_reads, "firestore_writes": seed.firestore_writes,
            "would_write": actions["corrected"], "actions": dict(actions), "aborted": None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approach", choices=("sweep", "seed"), required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--reports", type=Path, required=True)
    parser.add_argument("--page-size", type=int, default=300)
    parser.add_argument("--limit", type=int, default=None, help="seed: first N projects only")
    parser.add_argument("--enforce", action="store_true", help="write corrections")
    parser.add_argument("--ranges", type=int, default=1, help="sweep: userId ranges")
    parser.add_argument("--parallel", type=int, default=1, help="sweep: ranges at once")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--process-groups", default="", help="emulators, for their CPU time")
    args = parser.parse_args(argv)
    groups = [int(g) for g in args.process_groups.split(",") if g]
    others0 = cpu_seconds(groups)
    own0 = time.process_time()
    with args.reports.open("w", encoding="utf-8") as out:
        figures = (run_sweep if args.approach == "sweep" else run_seed)(args, out)
    figures["cpu_self"] = time.process_time() - own0
    figures["cpu_emulators"] = cpu_seconds(groups) - others0
    figures["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
