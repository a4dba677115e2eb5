"""`make bench-notifications`: from a clip's deletion to its project's correction, through GCS
notifications, with the sweep an hour away.

    python -m bench.notifications [--projects 100] [--deletions 200] [--spread 10]

Ready projects with two clips each are seeded; `reel-reconciler watch` runs against the
Firestore and Pub/Sub emulators and a fake-gcs-server that publishes every object change.
Objects outside the projects' folders are uploaded first: their notifications must cost no
GCS listing. Then clips are deleted, spread evenly over `--spread` seconds, and a recorder of
every version of every project (the soak's) tells when each deleted clip left its project:
the latency is that version's server update time minus the deletion's time (one machine,
one clock). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from bench.run import REPO
from devkit.emulators import fake_gcs_server, firestore_emulator, free_port, pubsub_emulator
from devkit.history import History
from devkit.notifications import Notifications
from devkit.seed import World

GCP_PROJECT = "reel-bench"


def _metric(port: int, name: str, **labels: str) -> float:
    """The sum of `watch`'s samples of `name` whose labels include `labels`."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def _start_watch(bucket: str, log: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """`reel-reconciler watch` on the emulators of the environment, ready; returns it and its
    metrics port."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reel_reconciler.cli", "watch", "--metrics-port", str(port),
             "--log-format", "json", *args],
            cwd=REPO, env={**os.environ, "REEL_BUCKET": bucket}, stdout=out,
            stderr=subprocess.STDOUT)

    def ready() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        except requests.ConnectionError:
            return proc.poll() is not None  # exited: stop waiting, and say so below

    _wait(ready, 60, "watch to become ready")
    if proc.poll() is not None:
        raise SystemExit(f"watch exited: {log.read_text()[-3000:]}")
    return proc, port


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def run(projects: int, deletions: int, spread: float, workdir: Path) -> dict[str, Any]:
    firestore, pubsub = firestore_emulator(workdir), pubsub_emulator(workdir)
    firestore.start()
    pubsub.start()
    notes = Notifications(pubsub, GCP_PROJECT, "reel-objects", "reel-reconciler")
    notes.create_topic()
    notes.create_subscription()
    gcs = fake_gcs_server(workdir, events=(pubsub, GCP_PROJECT, notes.topic))
    gcs.start()
    os.environ.update({"FIRESTORE_EMULATOR_HOST": firestore.host,
                       "STORAGE_EMULATOR_HOST": f"http://{gcs.host}",
                       "PUBSUB_EMULATOR_HOST": pubsub.host, "GOOGLE_CLOUD_PROJECT": GCP_PROJECT})
    watch: subprocess.Popen[bytes] | None = None
    try:
        world = World.create(GCP_PROJECT, bucket="reel-bench")
        clips: list[tuple[str, int, str]] = []
        for i in range(projects):
            _, paths = world.generated_project(f"p{i:04d}", user=f"u{i % 10}", status="ready",
                                               prompts=2, in_gcs=2, in_db=2)
            clips += [(f"p{i:04d}", slot, path) for slot, path in enumerate(paths)]
        history = History(world)
        history.start()
        watch, port = _start_watch(
            world.bucket, workdir / "watch.log", "--settle", "0s", "--sweep-interval", "1h",
            "--stale-interval", "1h", "--notifications-subscription", notes.path,
            "--log-level", "WARNING",
            # every deletion is destructive: the brake is not what is measured
            "--max-destructive", "100000")
        _wait(lambda: _metric(port, "reel_reconciler_notifications_total",
                             outcome="queued") >= len(clips), 120, "the seed's notifications")
        time.sleep(2)
        lists_before = _metric(port, "reel_reconciler_gcs_requests_total",
                              op="list")
        foreign = 200
        for i in range(foreign):
            world.put_object(f"other-app/{i:04d}.bin")
        _wait(lambda: _metric(port, "reel_reconciler_notifications_total",
                             outcome="outside_projects") >= foreign, 120,
              "the foreign objects' notifications")
        time.sleep(1)
        lists_for_foreign = _metric(port, "reel_reconciler_gcs_requests_total",
                                   op="list") - lists_before
        chosen = clips[:deletions]
        deleted: list[tuple[str, int, datetime]] = []
        started = time.monotonic()
        for n, (project_id, slot, path) in enumerate(chosen):
            pause = started + n * spread / len(chosen) - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            world.gcs.bucket(world.bucket).blob(path).delete()
            deleted.append((project_id, slot, datetime.now(UTC)))

        def healed(project_id: str, slot: int, after: datetime) -> datetime | None:
            for version in history.versions("projects", project_id):
                claims = (version.data or {}).get("clipFilenames") or []
                if version.update_time >= after and slot < len(claims) and not claims[slot]:
                    return version.update_time
            return None

        _wait(lambda: all(healed(*d) for d in deleted), 120, "every deletion to heal")
        latencies = [((healed(*d) or d[2]) - d[2]).total_seconds() for d in deleted]
        history.stop()
        return {"projects": projects, "deletions": len(deleted), "spreadSeconds": spread,
                "healSeconds": {"p50": _percentile(latencies, 0.5),
                                "p99": _percentile(latencies, 0.99),
                                "max": round(max(latencies), 3)},
                "foreignNotifications": foreign, "gcsListsForForeign": int(lists_for_foreign)}
    finally:
        if watch is not None:
            watch.kill()
            watch.wait(10)
        gcs.stop()
        pubsub.stop()
        firestore.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notifications", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--deletions", type=int, default=200)
    parser.add_argument("--spread", type=float, default=10.0,
                        help="seconds over which the deletions are spread")
    args = parser.parse_args(argv)
    if not 0 < args.deletions <= 2 * args.projects:
        parser.error("--deletions must be between 1 and twice --projects")
    with tempfile.TemporaryDirectory(prefix="reel-bench-notifications-") as tmp:
        result = run(args.projects, args.deletions, args.spread, Path(tmp))
    table = Table(title="deletion to correction through notifications", title_justify="left")
    table.add_column("figure")
    table.add_column("value")
    for key, value in result.items():
        table.add_row(key, json.dumps(value))
    Console(stderr=True).print(table)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
