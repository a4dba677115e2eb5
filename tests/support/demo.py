"""`make demo`: the embedded default. Starts both emulators, seeds the seed write-up's cases,
runs the real CLI (a dry-run sweep, stale-job cleanup, a sweep) and prints before/after."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
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
    ("healthy-ready", "healthy: ready, all 6 clips present",
     {"status": "ready", "prompts": 6, "in_gcs": 6, "in_db": 6}),
]


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
        before = {pid: _state(world, pid) for pid, _, _ in CASES}
        env = {**os.environ, **emulators.env(), "REEL_BUCKET": world.bucket}
        console.print(f"Firestore at {emulators.firestore.host}, GCS at {emulators.gcs.host}, "
                      f"bucket {world.bucket}: seeded {len(CASES)} projects")
        _run(env, "sweep", "--dry-run")
        _run(env, "cleanup-stale-jobs")
        _run(env, "sweep")
        table = Table(title="before → after", title_justify="left")
        for column in ("project", "case", "status", "clips"):
            table.add_column(column)
        for project_id, case, _ in CASES:
            (s0, c0), (s1, c1) = before[project_id], _state(world, project_id)
            table.add_row(project_id, case, s0 if s0 == s1 else f"{s0} → [bold]{s1}[/]",
                          c0 if c0 == c1 else f"{c0} → [bold]{c1}[/]")
        console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
