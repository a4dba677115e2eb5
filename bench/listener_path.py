"""`make bench-listener`: write-to-correction latency through the listener path.

    python -m bench.listener_path [--projects 1000] [--concurrency 8] [--rate 200]

Stuck projects (`generating`, their worker dead for three hours, some or all of their clips
in the bucket) are written in one burst while a reconciler runs as the operator runs one
ReelReconciler: the same runtime (change feeds, work queue, engine) in a process of its
own, settle window 0, against the Firestore emulator and fake-gcs-server. Each project's
latency is the server's update time of the corrected document minus the server's update time
of the burst write that made it stuck: both stamped by the same emulator clock.

The runtime's process is this module too, started with `--serve SPEC_JSON`: it prints
`ready` once its listeners are attached and stops when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from google.cloud import firestore

from bench.data import Generator, Project
from bench.measure import cpu_seconds
from bench.run import BATCH, BUCKET, GCP_PROJECT, REPO, start_gcs
from devkit.emulators import Emulator, firestore_emulator

PROJECTS = "reel_maker_projects"
JOBS = "reel_maker_jobs"


def stuck_projects(count: int) -> list[Project]:
    """`count` projects stuck in `generating`, three to a user, from the benchmark's generator."""
    generator = Generator(count, seed=7, bucket=BUCKET)
    users = generator.users()
    projects: list[Project] = []
    while len(projects) < count:
        user = next(users)
        projects += [generator.project(user, "generating_stuck")
                     for _ in range(min(3, count - len(projects)))]
    return projects


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def write_jobs(db: firestore.Client, projects: list[Project]) -> None:
    """The dead workers' jobs, before the reconciler starts: they are not what is measured."""
    jobs = db.collection(JOBS)
    for chunk in _chunks([job for project in projects for job in project.jobs], BATCH):
        batch = db.batch()
        for job in chunk:
            batch.set(jobs.document(job["jobId"]), job)
        batch.commit(timeout=120)


def burst(projects: list[Project], writers: int) -> tuple[dict[str, datetime], float]:
    """Every project document in batches of BATCH from `writers` threads at once; returns each
    document's write time (the server's) and how long the burst took."""
    chunks = list(_chunks(projects, BATCH))

    def writer(mine: list[list[Project]]) -> dict[str, datetime]:
        client = firestore.Client(project=GCP_PROJECT)
        written: dict[str, datetime] = {}
        for chunk in mine:
            batch = client.batch()
            for project in chunk:
                batch.set(client.collection(PROJECTS).document(project.id), project.doc)
            results = batch.commit(timeout=120)
            written.update((project.id, result.update_time)
                           for project, result in zip(chunk, results, strict=True))
        return written

    written: dict[str, datetime] = {}
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=writers) as pool:
        for part in pool.map(writer, [chunks[i::writers] for i in range(writers)]):
            written.update(part)
    return written, time.monotonic() - started


def wait_corrected(db: firestore.Client, count: int, timeout: float,
                   runtime: subprocess.Popen[str]) -> float:
    """Seconds until no project is left in `generating` (one count query every 250 ms: each
    is a scan of the collection in the emulator, taken from the reconciler's share)."""
    query: Any = db.collection(PROJECTS).where(
        filter=firestore.FieldFilter("status", "==", "generating")).count()
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if runtime.poll() is not None:
            raise RuntimeError(f"the reconciler exited with {runtime.returncode} mid-run")
        if int(query.get()[0][0].value) == 0:
            return time.monotonic() - started
        time.sleep(0.25)
    raise RuntimeError(f"projects still generating after {timeout:.0f}s (of {count})")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q of the values at or below."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def start_runtime(spec: dict[str, Any], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.listener_path", "--serve", json.dumps(spec)],
        cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=log.open("w"), text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"the reconciler did not start: {log.read_text()[-3000:]}")
    return proc


def serve(spec_json: str) -> int:
    """The reconciler's process: one runtime, as the operator runs it, until stdin closes."""
    from reel_reconciler.logs import setup_logging
    from reel_reconciler.model import ReconcilerId
    from reel_reconciler.runtime import ReconcilerRuntime
    from reel_reconciler.spec import ReconcilerSpec

    setup_logging("INFO", "json")

    async def run() -> None:
        runtime = ReconcilerRuntime(ReconcilerId("listener-path", "bench"), ReconcilerSpec.parse(
            json.loads(spec_json)))
        await runtime.start()
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.read)
        await runtime.stop()

    asyncio.run(run())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8, help="spec.concurrency")
    parser.add_argument("--rate", type=float, default=None,
                        help="spec.rateLimit (reconciles per second); the spec's default if unset")
    parser.add_argument("--writers", type=int, default=2, help="threads writing the burst")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs here")
    parser.add_argument("--serve", metavar="SPEC_JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.serve)

    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return measure(args, args.workdir)
    with tempfile.TemporaryDirectory(prefix="reel-bench-listener-") as tmp:
        return measure(args, Path(tmp))


def measure(args: argparse.Namespace, workdir: Path) -> int:
    print(f"# reel-reconciler listener path: {args.projects:,} stuck projects in one burst "
          f"({os.cpu_count()} cores)\n", flush=True)
    projects = stuck_projects(args.projects)
    objects = [(name, project.doc["updatedAt"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
               for project in projects for name in project.objects]
    fs = firestore_emulator(workdir)
    gcs: Emulator | None = None
    runtime: subprocess.Popen[str] | None = None
    saved = dict(os.environ)
    try:
        fs.start()
        gcs = start_gcs("fake", workdir, objects)
        env = {**os.environ, "FIRESTORE_EMULATOR_HOST": fs.host,
               "STORAGE_EMULATOR_HOST": f"http://{gcs.host}", "GOOGLE_CLOUD_PROJECT": GCP_PROJECT}
        os.environ.update(env)
        db = firestore.Client(project=GCP_PROJECT)
        write_jobs(db, projects)
        spec: dict[str, Any] = {
            "firestore": {"project": GCP_PROJECT, "projectsCollection": PROJECTS,
                          "jobsCollection": JOBS},
            "storage": {"bucket": BUCKET}, "settle": "0s", "concurrency": args.concurrency}
        if args.rate is not None:
            spec["rateLimit"] = args.rate
        runtime = start_runtime(spec, env, workdir / "reconciler.log")
        assert fs.proc is not None
        assert gcs.proc is not None
        groups = {"firestore emulator": fs.proc.pid, "fake-gcs-server": gcs.proc.pid,
                  "reconciler": runtime.pid}  # each leads a process group of its own
        before = {name: cpu_seconds([group]) for name, group in groups.items()}
        written, burst_seconds = burst(projects, args.writers)
        drained = wait_corrected(db, len(projects), args.timeout, runtime)
        cpu = {name: round(cpu_seconds([group]) - before[name], 1)
               for name, group in groups.items()}
        figures = report(db, written, burst_seconds, drained, spec, args)
        figures["cpu_seconds"] = cpu
        print("CPU seconds from the burst to the last correction: " + ", ".join(
            f"{name} {seconds}" for name, seconds in cpu.items()))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        if runtime is not None:
            runtime.communicate(timeout=60)
        if gcs is not None:
            gcs.stop()
        fs.stop()
        os.environ.clear()
        os.environ.update(saved)
    return 0


def report(db: firestore.Client, written: dict[str, datetime], burst_seconds: float,
           drained: float, spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    for snapshot in db.collection(PROJECTS).stream():
        data = snapshot.to_dict() or {}
        statuses[data["status"]] = statuses.get(data["status"], 0) + 1
        if data.get("lastReconciliation") is None:
            raise RuntimeError(f"{snapshot.id} was never corrected")
        latencies.append((snapshot.update_time - written[snapshot.id]).total_seconds())
    figures = {
        "projects": len(latencies), "burst_seconds": round(burst_seconds, 3),
        "drained_seconds": round(drained, 3),
        "p50": percentile(latencies, 50), "p90": percentile(latencies, 90),
        "p99": percentile(latencies, 99), "max": max(latencies),
        "concurrency": args.concurrency, "rate_limit": spec.get("rateLimit", "default"),
        "statuses": statuses,
    }
    print("| projects | burst write s | all corrected after s | p50 s | p90 s | p99 s | max s | "
          "concurrency | rate limit /s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {figures['projects']:,} | {burst_seconds:.2f} | {drained:.2f} | "
          f"{figures['p50']:.2f} | {figures['p90']:.2f} | {figures['p99']:.2f} | "
          f"{figures['max']:.2f} | {args.concurrency} | {figures['rate_limit']} |")
    print("\nCorrected to: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    print("Latency: server update time of the corrected document minus that of the burst "
          "write; settle window 0.")
    return figures


if __name__ == "__main__":
    sys.exit(main())
