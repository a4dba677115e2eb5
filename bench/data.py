"""App-shaped data for the benchmark, generated deterministically from a seed.

The mix is what a sweep meets all day: mostly healthy `ready` projects, drafts never
generated, partial drafts, generations stuck in `generating` (worker dead or still running),
failed generations in `error`, clips and stitched files deleted behind `ready` projects,
regenerations that left older jobs and clips, a few malformed documents and claims outside the
project's folder. Users own a handful of projects each; a few user ids sit next to each other in
GCS byte order (`ab`, `ab-c`, `ab.c`).
"""

from __future__ import annotations

import random
import string
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

ROOT = "reel-maker"
CLIP_SIZE = 16
"""Bytes per object: the listing reports sizes, the content is never read."""

KINDS: list[tuple[str, float]] = [
    ("ready", 0.70),
    ("ready_deleted_clips", 0.05),
    ("draft_new", 0.06),
    ("draft_partial", 0.05),
    ("generating_stuck", 0.03),
    ("generating_active", 0.01),
    ("generating_lost_paths", 0.02),
    ("error", 0.04),
    ("ready_stitched_gone", 0.02),
    ("outside_claim", 0.01),
    ("invalid", 0.01),
]
"""Project kinds and their share: healthy kinds dominate, as in production."""

TRAP_USERS = ("ab", "ab-c", "ab.c", "ab0")


@dataclass
class Project:
    """One project with its jobs and the objects it has in the bucket."""

    id: str
    user: str
    kind: str
    doc: dict[str, Any]
    jobs: list[dict[str, Any]] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)


def _alnum(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=n))


def _job_id(rng: random.Random) -> str:
    return "reeljob-" + "".join(rng.choices("0123456789abcdef", k=12))


class Generator:
    """Projects in a reproducible order: the same (count, seed) gives the same data."""

    def __init__(self, projects: int, seed: int = 6, bucket: str = "reel-bench") -> None:
        self.count = projects
        self.rng = random.Random(seed)
        self.bucket = bucket
        self.now = datetime.now(UTC)
        self.kinds = Counter[str]()

    def users(self) -> Iterator[str]:
        """Firebase-like user ids, the trap ids among them, a few projects each."""
        emitted = 0
        while True:
            if emitted < len(TRAP_USERS) * 50 and emitted % 50 == 0:
                yield TRAP_USERS[emitted // 50]
            else:
                yield _alnum(self.rng, 28)
            emitted += 1

    def __iter__(self) -> Iterator[Project]:
        users = self.users()
        made = 0
        names, weights = zip(*KINDS, strict=True)
        while made < self.count:
            user = next(users)
            for _ in range(min(self.count - made, 1 + int(self.rng.expovariate(1 / 3)))):
                kind = self.rng.choices(names, weights)[0]
                self.kinds[kind] += 1
                yield self.project(user, kind)
                made += 1

    def _clip(self, user: str, pid: str, job: str, index: int) -> str:
        return f"{ROOT}/{user}/{pid}/raw/{job}/prompt-{index:02d}/clip-{index:02d}.mp4"

    def _job(self, pid: str, user: str, status: str, prompts: int, age: timedelta,
             updated: timedelta | None, clips: list[str]) -> dict[str, Any]:
        job: dict[str, Any] = {
            "jobId": _job_id(self.rng), "projectId": pid, "userId": user,
            "userEmail": f"{user.lower()}@example.com", "status": status,
            "promptCount": prompts, "completedPrompts": list(range(len(clips))),
            "failedPrompts": [], "clipRelativePaths": clips, "bucket": self.bucket,
            "createdAt": self.now - age, "startedAt": self.now - age + timedelta(seconds=5),
        }
        if updated is not None:
            job["updatedAt"] = self.now - updated
        return job

    def project(self, user: str, kind: str) -> Project:
        rng = self.rng
        pid = _alnum(rng, 20)
        n = rng.randint(1, 15)
        created = self.now - timedelta(days=rng.randint(1, 300))
        doc: dict[str, Any] = {
            "userId": user, "userEmail": f"{user.lower()}@example.com",
            "title": f"reel {pid[:6]}", "orientation": rng.choice(["portrait", "landscape"]),
            "durationSeconds": rng.choice([4, 6, 8]), "compression": "optimized",
            "model": "veo-3.0-fast-generate-001", "audioEnabled": rng.random() < 0.7,
            "promptList": [f"shot {i}: " + "a slow pan over a harbour at dawn " * 2
                           for i in range(n)],
            "clipFilenames": [None] * n, "status": "draft",
            "createdAt": created, "updatedAt": created + timedelta(hours=1),
        }
        project = Project(pid, user, kind, doc)
        if kind == "draft_new":
            return project
        if kind == "invalid":
            doc["status"] = "exploded"
            return project
        self._regenerations(project, n)
        job_id = _job_id(rng)
        clips = [self._clip(user, pid, job_id, i) for i in range(n)]
        age = timedelta(hours=rng.randint(2, 48))
        status, claimed, job_status, updated = self._current(project, clips, age)
        doc["status"] = status
        doc["clipFilenames"] = [clips[i] if i < claimed else None for i in range(n)]
        if kind == "outside_claim":  # a clip copied from another project of the same user
            borrowed = f"{ROOT}/{user}/elsewhere/raw/{job_id}/prompt-00/x.mp4"
            doc["clipFilenames"][0] = borrowed
            if rng.random() < 0.5:
                project.objects.append(borrowed)
        if status == "ready" and (kind == "ready_stitched_gone" or rng.random() < 0.5):
            stitched = f"{ROOT}/{user}/{pid}/stitched/final-{pid[:6]}.mp4"
            doc["stitchedFilename"] = stitched
            if kind != "ready_stitched_gone":
                project.objects.append(stitched)
        job = self._job(pid, user, job_status, n, age, updated, clips[:claimed])
        job["jobId"] = job_id
        project.jobs.append(job)
        return project

    def _regenerations(self, project: Project, n: int) -> None:
        """Older jobs of the project, with some of their clips still in the bucket."""
        rng, user, pid = self.rng, project.user, project.id
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
            old_age = timedelta(days=rng.randint(2, 30))
            old_n = rng.choice([n, max(1, n - 2)])
            old = _job_id(rng)
            old_clips = [self._clip(user, pid, old, i) for i in range(old_n) if rng.random() < .3]
            project.objects += old_clips
            job = self._job(pid, user, rng.choice(["completed", "failed"]), old_n, old_age,
                            old_age, old_clips)
            job["jobId"] = old
            project.jobs.append(job)

    def _current(self, project: Project, clips: list[str],
                 age: timedelta) -> tuple[str, int, str, timedelta]:
        """The status, claimed clips, job status and job age of the project's kind; the clips
        that kind keeps go into the bucket."""
        rng, kind, n = self.rng, project.kind, len(clips)
        status, claimed, present, job_status, updated = "ready", n, n, "completed", age
        if kind == "ready_deleted_clips":
            gone = set(rng.sample(range(n), min(n, rng.randint(1, 3))))
            project.objects += [c for i, c in enumerate(clips) if i not in gone]
            return status, claimed, job_status, updated
        if kind == "draft_partial":
            status, claimed, job_status = "draft", rng.randint(0, n - 1), "failed"
            present = claimed
        elif kind == "generating_stuck":
            status, job_status, updated = "generating", "processing", timedelta(hours=3)
            present = rng.randint(0, n)
            claimed = rng.randint(0, present)
        elif kind == "generating_active":
            status, job_status, updated = "generating", "processing", timedelta(minutes=1)
            present = rng.randint(0, n - 1)
            claimed = present
        elif kind == "generating_lost_paths":
            status, claimed = "generating", 0
        elif kind == "error":
            status, claimed, present, job_status = "error", 0, 0, "failed"
            project.doc["errorInfo"] = {"message": "Generation failed: quota exceeded"}
        project.objects += clips[:present]
        return status, claimed, job_status, updated
