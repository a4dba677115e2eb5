"""`make bench`: seed app-shaped data, then time the seed's approach and the streaming sweep on it.

    python -m bench.run [--projects N] [--seed-sample N] [--gcs index|fake-gcs-server]

Steps, all on the same data: a warm-up, untimed (one sweep in observe mode: the emulator's JVM
compiles its query paths on first use, which the first measured run would otherwise pay for);
(a) the seed's algorithm (one `exists()` per claimed clip, one project after another) in
observe mode, on the first `--seed-sample` projects when that is fewer than all (its figures
are then extrapolated, and the table says so); (b) the streaming sweep in observe mode; the two
reports compared where the seed is right; (c) the sweep enforcing, which writes the
corrections; (d) the sweep again, with no drift left; with `--profile`, (e) that sweep once
more under cProfile, for the profile only (the profiler's overhead stays out of the table).
(a), (b) and (d) run `--repeat` times and the median run is shown. Each run is a process of its
own, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.cloud import firestore

from bench.data import CLIP_SIZE, Generator, Project
from devkit import gcs_server
from devkit.emulators import Emulator, fake_gcs_binary, firestore_emulator, free_port

REPO = Path(__file__).resolve().parent.parent
GCP_PROJECT = "reel-bench"
BUCKET = "reel-bench"
WRITERS = 4
BATCH = 500


@dataclass
class Seeded:
    projects: int
    jobs: int
    objects: int
    firestore_seconds: float
    gcs_seconds: float
    kinds: Counter[str]


def _batches(projects: Iterator[Project], db: firestore.Client, objects: list[tuple[str, str]],
             tally: Counter[str]) -> Iterator[list[tuple[Any, dict[str, Any]]]]:
    """Writes of at most BATCH documents; object names are collected on the way."""
    projects_ref = db.collection("reel_maker_projects")
    jobs_ref = db.collection("reel_maker_jobs")
    pending: list[tuple[Any, dict[str, Any]]] = []
    for project in projects:
        pending.append((projects_ref.document(project.id), project.doc))
        tally["jobs"] += len(project.jobs)
        for job in project.jobs:
            pending.append((jobs_ref.document(job["jobId"]), job))
        stamp = project.doc["updatedAt"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        objects.extend((name, stamp) for name in project.objects)
        if len(pending) >= BATCH:
            yield pending[:BATCH]
            pending = pending[BATCH:]
    if pending:
        yield pending


def seed_firestore(generator: Generator, objects: list[tuple[str, str]]) -> int:
    """Batched writes of 500 documents from WRITERS threads; returns how many jobs."""
    db = firestore.Client(project=GCP_PROJECT)
    lock = threading.Lock()
    tally: Counter[str] = Counter()
    batches = _batches(iter(generator), db, objects, tally)
    failures: list[BaseException] = []

    def writer() -> None:
        client = firestore.Client(project=GCP_PROJECT)
        while True:
            with lock:
                writes = next(batches, None)
            if writes is None:
                return
            batch = client.batch()
            for ref, data in writes:
                batch.set(ref, data)
            try:
                batch.commit(timeout=120)
            except Exception as exc:
                failures.append(exc)
                return

    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return tally["jobs"]


def start_gcs(kind: str, workdir: Path, objects: list[tuple[str, str]]) -> Emulator:
    """The bucket as a manifest for devkit.gcs_server, or a -data tree for fake-gcs-server."""
    port = free_port()
    if kind == "index":
        manifest = workdir / "objects.tsv"
        with manifest.open("w", encoding="utf-8") as out:
            for name, stamp in objects:
                out.write(f"{name}\t{CLIP_SIZE}\t{stamp}\n")
        argv = [sys.executable, gcs_server.__file__, "--port", str(port), "--bucket", BUCKET,
                "--manifest", str(manifest)]
        server = Emulator("bench-gcs", argv, port, f"/storage/v1/b/{BUCKET}",
                          workdir / "gcs-server.log")
    else:
        root = workdir / "gcs-data"
        content = b"\x00" * CLIP_SIZE
        for name, _ in objects:
            path = root / BUCKET / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        argv = [str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1",
                "-port", str(port), "-backend", "memory", "-data", str(root),
                "-public-host", f"127.0.0.1:{port}", "-external-url",
                f"http://127.0.0.1:{port}", "-log-level", "warn"]
        server = Emulator("fake-gcs-server", argv, port, "/storage/v1/b",
                          workdir / "fake-gcs-server.log")
    server.start(timeout=3600)
    return server


def measure(env: dict[str, str], workdir: Path, name: str, *args: str) -> dict[str, Any]:
    reports = workdir / f"{name}.jsonl"
    proc = subprocess.run([sys.executable, "-m", "bench.measure", "--bucket", BUCKET,
                           "--reports", str(reports), *args],
                          env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed: {proc.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["reports"] = str(reports)
    return figures


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall time, with every run's wall time beside it: on a shared
    2-core machine one run can be 15-30% off the next."""
    ordered = sorted(runs, key=lambda figures: float(figures["seconds"]))
    median = dict(ordered[(len(ordered) - 1) // 2])
    median["all_seconds"] = [round(float(figures["seconds"]), 2) for figures in runs]
    return median


def _load(path: str) -> dict[str, dict[str, Any]]:
    with open(path, encoding="utf-8") as lines:
        return {row["projectId"]: row for row in map(json.loads, lines)}


def _deleted_clips(theirs: dict[str, Any], mine: dict[str, Any]) -> str:
    """How the two compare on a ready project whose clips were deleted."""
    if theirs["correctedStatus"] == mine["correctedStatus"]:
        return "ready with deleted clips: same status"
    if mine["restoredClips"]:
        return "ready with deleted clips: ours restores them from GCS (D1)"
    return "ready with deleted clips: DIFFERENT status"


def compare(seed_path: str, sweep_path: str) -> dict[str, int]:
    """Where the seed is right (a claimed clip is gone), the sweep must say the same."""
    seed, ours = _load(seed_path), _load(sweep_path)
    tally: Counter[str] = Counter()
    for pid, theirs in seed.items():
        mine = ours.get(pid)
        if mine is None:
            tally["missing from the sweep"] += 1
            continue
        if mine.get("driftKinds") == ["invalid_document"]:
            tally["invalid document (seed acts on it)"] += 1
            continue
        if mine["action"] == "skipped":
            tally["skipped: a live job owns it (D3)"] += 1
            continue
        if sorted(theirs["missingClips"]) == sorted(mine["missingClips"]):
            tally["same missing clips"] += 1
        else:
            tally["DIFFERENT missing clips"] += 1
        seed_fix = theirs["action"] == "corrected"
        our_fix = mine["action"] in ("drift", "corrected")
        if theirs["originalStatus"] == "ready" and theirs["missingClips"]:
            tally[_deleted_clips(theirs, mine)] += 1
        if seed_fix and our_fix and theirs["correctedStatus"] == mine["correctedStatus"]:
            tally["both correct it the same way"] += 1
        elif seed_fix and our_fix:
            tally["both correct it; ours restores clips or keeps error (D1, D5)"] += 1
        elif seed_fix:
            tally["only the seed writes (its D5 flip-flop or partial rule)"] += 1
        elif our_fix:
            tally["only the sweep corrects (D1 restore, stitched file)"] += 1
    return dict(tally)


def _row(name: str, f: dict[str, Any], note: str = "") -> str:
    n = max(f["projects"], 1)
    rate = f["projects"] / f["seconds"] if f["seconds"] else 0.0
    return (f"| {name}{note} | {f['projects']:,} | {f['seconds']:.1f} | {rate:,.0f} | "
            f"{f['gcs_requests']:,} ({f['gcs_requests'] / n:.3f}) | "
            f"{f['firestore_requests']:,} | {f['firestore_reads']:,} | "
            f"{f['firestore_writes']:,} ({f['would_write']:,}) | {f['peak_rss_mib']:.0f} | "
            f"{f['cpu_self']:.1f} / {f['cpu_emulators']:.1f} |")


def _rate(figures: dict[str, Any]) -> float:
    return float(figures["projects"]) / max(float(figures["seconds"]), 1e-9)


def extrapolate(sample: dict[str, Any], total: int) -> dict[str, Any]:
    scale = total / max(sample["projects"], 1)
    scaled = dict(sample)
    for key in ("projects", "gcs_requests", "firestore_requests", "firestore_reads",
                "firestore_writes", "would_write"):
        scaled[key] = round(sample[key] * scale)
    for key in ("seconds", "cpu_self", "cpu_emulators"):
        scaled[key] = sample[key] * scale
    return scaled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--seed-sample", type=int, default=2000,
                        help="run the seed's approach on the first N projects only")
    parser.add_argument("--gcs", choices=("index", "fake-gcs-server"), default="index",
                        help="devkit.gcs_server (default), or fake-gcs-server with -data "
                        "(quadratic preload: up to ~10k objects)")
    parser.add_argument("--page-size", type=int, default=1_000_000,
                        help="Firestore documents per request (the emulator scans and sorts "
                        "the whole collection for every query: one query per collection)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of (a), (b) and (d) each; the tables show the median run")
    parser.add_argument("--profile", action="store_true",
                        help="(e): the no-drift sweep once more, under cProfile")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write all figures here")
    args = parser.parse_args(argv)

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="reel-bench-")
        args.workdir = Path(tmp.name)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"# reel-reconciler sweep benchmark: {args.projects:,} projects "
          f"({os.cpu_count()} cores)\n", flush=True)
    fs = firestore_emulator(args.workdir)
    gcs: Emulator | None = None
    saved = dict(os.environ)
    try:
        fs.start()
        os.environ.update({"FIRESTORE_EMULATOR_HOST": fs.host,
                           "GOOGLE_CLOUD_PROJECT": GCP_PROJECT})
        generator = Generator(args.projects)
        objects: list[tuple[str, str]] = []
        started = time.monotonic()
        jobs = seed_firestore(generator, objects)
        fs_seconds = time.monotonic() - started
        started = time.monotonic()
        gcs = start_gcs("index" if args.gcs == "index" else "fake", args.workdir, objects)
        seeded = Seeded(args.projects, jobs, len(objects), fs_seconds,
                        time.monotonic() - started, generator.kinds)
        del objects
        print(f"Seeded {seeded.projects:,} projects, {seeded.jobs:,} jobs and "
              f"{seeded.objects:,} objects in {fs_seconds + seeded.gcs_seconds:.1f}s "
              f"(Firestore {fs_seconds:.1f}s with {WRITERS} writers x {BATCH}-document "
              f"batches; GCS {seeded.gcs_seconds:.1f}s via {args.gcs})", flush=True)
        print("Mix: " + ", ".join(f"{k} {v}" for k, v in seeded.kinds.most_common()) + "\n",
              flush=True)

        env = {**os.environ, "STORAGE_EMULATOR_HOST": f"http://{gcs.host}",
               "FIRESTORE_EMULATOR_HOST": fs.host, "GOOGLE_CLOUD_PROJECT": GCP_PROJECT}
        assert fs.proc is not None
        assert gcs.proc is not None
        common = ["--page-size", str(args.page_size), "--process-groups",
                  f"{fs.proc.pid},{gcs.proc.pid}"]
        sample = min(args.seed_sample, args.projects)
        results: dict[str, Any] = {"seeded": {**seeded.__dict__, "kinds": dict(seeded.kinds)}}
        repeat = args.repeat = max(1, args.repeat)
        steps = [
            ("warmup", ["--approach", "sweep"], 1),
            ("seed", ["--approach", "seed", "--limit", str(sample)], repeat),
            ("sweep", ["--approach", "sweep"], repeat),
            ("sweep_enforce", ["--approach", "sweep", "--enforce"], 1),
            ("sweep_no_drift", ["--approach", "sweep", "--enforce"], repeat),
        ]
        if args.profile:
            steps.append(("sweep_profile", ["--approach", "sweep", "--enforce", "--profile",
                                            str(args.workdir / "profile.txt")], 1))
        for name, extra, times in steps:
            runs = []
            for number in range(times):
                print(f"running {name} ({number + 1}/{times}) ...", file=sys.stderr, flush=True)
                runs.append(measure(env, args.workdir, f"{name}-{number}", *extra, *common))
            results[name] = median_run(runs)
        results["agreement"] = compare(results["seed"]["reports"], results["sweep"]["reports"])
        report(results, args, sample)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
    finally:
        if gcs is not None:
            gcs.stop()
        fs.stop()
        os.environ.clear()
        os.environ.update(saved)
        if tmp is not None:
            tmp.cleanup()
    return 0


def report(results: dict[str, Any], args: argparse.Namespace, sample: int) -> None:
    seed = results["seed"]
    extrapolated = sample < args.projects
    seed_full = extrapolate(seed, args.projects) if extrapolated else seed
    note = f" (first {sample:,}, extrapolated)" if extrapolated else ""
    print("| run | projects | wall s | projects/s | GCS requests (per project) | "
          "Firestore requests | Firestore reads | writes (would write) | peak RSS MiB | "
          "CPU s self / emulators |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(_row("(a) seed approach, observe", seed_full, note))
    print(_row("(b) streaming sweep, observe", results["sweep"]))
    print(_row("(c) streaming sweep, enforce", results["sweep_enforce"]))
    print(_row("(d) streaming sweep, no drift left", results["sweep_no_drift"]))
    ours = results["sweep"]
    print(f"\nRatios (a)/(b): time {seed_full['seconds'] / ours['seconds']:.1f}x, "
          f"projects/s {_rate(ours) / _rate(seed):.1f}x in favour of the sweep, "
          f"GCS requests {seed_full['gcs_requests'] / max(ours['gcs_requests'], 1):.0f}x, "
          f"Firestore requests "
          f"{seed_full['firestore_requests'] / max(ours['firestore_requests'], 1):.0f}x, "
          f"Firestore reads {seed_full['firestore_reads'] / max(ours['firestore_reads'], 1):.2f}x"
          f", peak RSS {seed['peak_rss_mib'] / ours['peak_rss_mib']:.2f}x.")
    print(f"Firestore page size {args.page_size:,}; GCS page size 1,000; settle window 0s "
          "(the data was just written); concurrency 8.")
    runs = ", ".join(f"{label} {results[name]['all_seconds']}" for label, name in
                     (("(a)", "seed"), ("(b)", "sweep"), ("(d)", "sweep_no_drift")))
    print(f"Each of (a), (b), (d) is the median of {args.repeat} run(s); wall s of each: {runs}.")
    print("\nSame data, seed sample vs sweep (observe mode):")
    for key, count in sorted(results["agreement"].items()):
        print(f"- {key}: {count:,}")
    profile = Path(args.workdir / "profile.txt")
    if profile.exists():
        print(f"\nProfile of (e), the no-drift sweep again, main thread, cumulative: {profile}")
        lines = profile.read_text().splitlines()
        print("```\n" + "\n".join(lines[:40]) + "\n```")


if __name__ == "__main__":
    sys.exit(main())
