"""`make demo`: the embedded default. Starts both emulators, seeds the seed write-up's cases and
the app's real failure shapes, runs the real CLI (a dry-run sweep, stale-job cleanup, a sweep)
and prints before/after."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from tests.support.emulators import running_emulators
from tests.support.seed import World

console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)

CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("pwYISGEqG6Oxb8sdtGoy", "horizontal test 1: stuck generating, 0 of 15 clips listed, "
     "15 in GCS (Scenario 1, D1)",
     {"status": "generating", "prompts": 15, "in_gcs": 15, "in_db": 0,
      "job_status": "processing", "job_updated_ago": timedelta(hours=2),
      "title": "horizontal test 1"}),
    ("vErT1cAlTeSt00000001", "vertical test 1: stuck generating, 4 listed, 10 in GCS",
     {"status": "generating", "prompts": 10, "in_gcs": 10, "in_db": 4,
      "job_status": "processing", "job_updated_ago": timedelta(hours=3),
      "title": "vertical test 1", "orientation": "portrait"}),
    ("scenario2-live-worker", "Scenario 2: 7 of 15 done, worker still running",
     {"status": "generating", "prompts": 15, "in_gcs": 7, "in_db": 7,
      "job_status": "processing", "job_updated_ago": timedelta(minutes=1)}),
    ("scenario3-crashed-job", "Scenario 3: job started 2h ago, 3 of 15 clips",
     {"status": "generating", "prompts": 15, "in_gcs": 3, "in_db": 3,
      "job_status": "processing", "job_started_ago": timedelta(hours=2)}),
    ("scenario4-false-claims", "Scenario 4: ready, 15 listed, 3 deleted from GCS",
     {"status": "ready", "prompts": 15, "in_gcs": [i for i in range(15) if i not in (4, 8, 12)],
      "in_db": 15}),
    ("failed-no-clips", "generation failed with no clip (D5: stays error)",
     {"status": "generating", "prompts": 5, "in_gcs": 0, "in_db": 0, "job_status": "failed"}),
    ("partial-failure", "the app's own failure: error, 2 of 4 made, the user's message",
     {"status": "error", "prompts": 4, "in_gcs": 2, "in_db": 2, "job_status": "failed",
      "errorInfo": {"message": "Video generation failed for prompt 3: quota exceeded"}}),
    ("stuck-stitch", "stitching, its stitcher died after uploading the reel",
     {"status": "stitching", "prompts": 3, "in_gcs": 3, "in_db": 3}),
    ("healthy-ready", "healthy: ready, all 6 clips present",
     {"status": "ready", "prompts": 6, "in_gcs": 6, "in_db": 6}),
]


def _older_job_holds_the_clips(world: World, project_id: str) -> None:
    """Scenario 1 as real data has it: the old start wiped the list, its job died, and the
    clips sit under the previous job of the same size."""
    world.generated_project(project_id, status="generating", prompts=8, in_gcs=8,
                            in_db=0, job_created_ago=timedelta(days=2),
                            title="Scenario 1 under an older job")
    world.add_job(project_id, status="processing", prompt_count=8,
                  created_ago=timedelta(hours=2), updated_ago=timedelta(hours=2))
    world.projects().document(project_id).update({"clipFilenames": []})


def _zombie(world: World, project_id: str) -> None:
    """A job failed by a timeout whose worker came back a minute ago and writes on."""
    job, _ = world.generated_project(project_id, status="generating", prompts=6, in_gcs=3,
                                     in_db=3, job_status="failed", title="zombie worker")
    world.jobs().document(job).update({
        "error": "Job timed out after 30 minutes",
        "timedOutAt": datetime.now(UTC) - timedelta(minutes=10),
        "updatedAt": datetime.now(UTC) - timedelta(minutes=1)})


def _reel_uploaded(world: World, project_id: str) -> None:
    doc = world.project(project_id)
    time.sleep(1.1)  # GCS times have a second's grain: the reel is newer than its clips
    world.put_object(world.stitched_path(doc["userId"], project_id, "reel_full_demo.mp4"))


BUILT: list[tuple[str, str, Callable[[World, str], None]]] = [
    ("scenario1-older-job", "Scenario 1 as real data: clips under an older job, list wiped",
     _older_job_holds_the_clips),
    ("zombie-worker", "a worker back after its timeout (a zombie): 3 of 6, writing",
     _zombie),
]
AFTER_SEEDING: dict[str, Callable[[World, str], None]] = {"stuck-stitch": _reel_uploaded}
STITCH_TIMEOUT = 2.0
"""Seconds the demo gives a stitch (30 min by default) before it counts as stuck."""


def _state(world: World, project_id: str) -> tuple[str, str]:
    doc = world.project(project_id)
    clips = doc.get("clipFilenames") or []
    return doc["status"], f"{sum(1 for c in clips if c)}/{len(doc.get('promptList') or [])}"


def _run(env: dict[str, str], *args: str) -> None:
    console.rule(f"[bold]reel-reconciler {' '.join(args)}")
    subprocess.run([sys.executable, "-m", "controller.cli", *args], env=env, check=False)


def main() -> int:
    console.print("Starting Google's Firestore emulator and fake-gcs-server ...")
    with running_emulators() as emulators:
        world = World.create(emulators.gcp_project, bucket="reel-maker-demo")
        for project_id, _, spec in CASES:
            world.generated_project(project_id, **spec)
        for project_id, _, build in BUILT:
            build(world, project_id)
        for project_id, after in AFTER_SEEDING.items():
            after(world, project_id)
        cases = [(pid, case) for pid, case, _ in CASES] + [(pid, c) for pid, c, _ in BUILT]
        before = {pid: _state(world, pid) for pid, _ in cases}
        env = {**os.environ, **emulators.env(), "REEL_BUCKET": world.bucket,
               "REEL_SETTLE": "0s", "REEL_STITCH_TIMEOUT": f"{STITCH_TIMEOUT:g}s"}
        console.print(f"Firestore at {emulators.firestore.host}, GCS at {emulators.gcs.host}, "
                      f"bucket {world.bucket}: seeded {len(cases)} projects (the settle "
                      f"window is off and a stitch times out after {STITCH_TIMEOUT:g} s, so "
                      "that the demo need not wait)")
        _run(env, "sweep", "--dry-run")
        time.sleep(STITCH_TIMEOUT)
        _run(env, "cleanup-stale-jobs")
        _run(env, "sweep")
        table = Table(title="before → after", title_justify="left")
        for column in ("project", "case", "status", "clips"):
            table.add_column(column)
        for project_id, case in cases:
            (s0, c0), (s1, c1) = before[project_id], _state(world, project_id)
            table.add_row(project_id, case, s0 if s0 == s1 else f"{s0} → [bold]{s1}[/]",
                          c0 if c0 == c1 else f"{c0} → [bold]{c1}[/]")
        console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
