"""The demo's seeded cases: the original write-up's scenarios and the app's real failure
shapes, written before the reconciler starts, as a database it meets on its first day. (The
cases with a live worker, Scenario 2 and a zombie, run live: see demo.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from devkit.seed import World

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


def _reel_uploaded(world: World, project_id: str) -> None:
    doc = world.project(project_id)
    time.sleep(1.1)  # GCS times have a second's grain: the reel is newer than its clips
    world.put_object(world.stitched_path(doc["userId"], project_id, "reel_full_demo.mp4"))


BUILT: list[tuple[str, str, Callable[[World, str], None]]] = [
    ("scenario1-older-job", "Scenario 1 as real data: clips under an older job, list wiped",
     _older_job_holds_the_clips),
]
AFTER_SEEDING: dict[str, Callable[[World, str], None]] = {"stuck-stitch": _reel_uploaded}


def seed(world: World) -> list[tuple[str, str]]:
    """Write every case; returns (project id, description) in display order."""
    for project_id, _, spec in CASES:
        world.generated_project(project_id, **spec)
    for project_id, _, build in BUILT:
        build(world, project_id)
    for project_id, after in AFTER_SEEDING.items():
        after(world, project_id)
    return [(pid, case) for pid, case, _ in CASES] + [(pid, case) for pid, case, _ in BUILT]
