"""Write projects, jobs and clips in the shapes the Reel Maker app leaves (docs/design.md, 2)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import google.cloud.storage as storage
from google.cloud import firestore

CLIP_BYTES = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 48


def now() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return f"reeljob-{uuid.uuid4().hex[:12]}"


@dataclass
class World:
    """The app's data in the emulators: one Firestore database, one bucket."""

    db: firestore.Client
    gcs: storage.Client
    bucket: str
    projects_collection: str = "reel_maker_projects"
    jobs_collection: str = "reel_maker_jobs"
    root_prefix: str = "reel-maker"
    _bucket: Any = field(default=None, repr=False)

    @classmethod
    def create(cls, gcp_project: str, bucket: str | None = None, **kw: Any) -> World:
        db = firestore.Client(project=gcp_project)
        gcs = storage.Client(project=gcp_project)
        name = bucket or f"reels-{uuid.uuid4().hex[:10]}"
        handle = gcs.bucket(name)
        if not handle.exists():
            handle = gcs.create_bucket(name)
        return cls(db=db, gcs=gcs, bucket=name, _bucket=handle, **kw)

    # --- GCS -----------------------------------------------------------------------------

    def clip_path(self, user: str, project: str, job: str, index: int,
                  file: str = "clip.mp4") -> str:
        return f"{self.root_prefix}/{user}/{project}/raw/{job}/prompt-{index:02d}/{file}"

    def stitched_path(self, user: str, project: str, file: str = "final.mp4") -> str:
        return f"{self.root_prefix}/{user}/{project}/stitched/{file}"

    def put_object(self, name: str, data: bytes = CLIP_BYTES) -> str:
        self._bucket.blob(name).upload_from_string(data, content_type="video/mp4")
        return name

    def delete_object(self, name: str) -> None:
        """Test-side deletion, to simulate clips removed behind the app's back."""
        self._bucket.blob(name).delete()

    def object_names(self) -> list[str]:
        return [blob.name for blob in self.gcs.list_blobs(self.bucket)]

    # --- Firestore -----------------------------------------------------------------------

    def projects(self) -> Any:
        return self.db.collection(self.projects_collection)

    def jobs(self) -> Any:
        return self.db.collection(self.jobs_collection)

    def add_project(self, project_id: str, *, user: str = "user-1", status: str = "draft",
                    prompts: int = 3, clips: list[str | None] | None = None,
                    title: str | None = None, **extra: Any) -> dict[str, Any]:
        created = now() - timedelta(hours=3)
        data: dict[str, Any] = {
            "userId": user, "userEmail": f"{user}@example.com",
            "title": title or f"project {project_id}",
            "orientation": "landscape", "durationSeconds": 8, "compression": "optimized",
            "model": "veo-3.0-fast-generate-001", "audioEnabled": True,
            "promptList": [f"shot {i}" for i in range(prompts)],
            "clipFilenames": clips if clips is not None else [None] * prompts,
            "status": status, "createdAt": created, "updatedAt": created,
        }
        data.update(extra)
        self.projects().document(project_id).set(data)
        return data

    def add_job(self, project_id: str, *, user: str = "user-1", status: str = "completed",
                prompt_count: int = 3, job_id: str | None = None,
                created_ago: timedelta = timedelta(hours=2),
                updated_ago: timedelta | None = None, started_ago: timedelta | None = None,
                clip_paths: list[str] | None = None) -> str:
        job_id = job_id or new_job_id()
        data: dict[str, Any] = {
            "jobId": job_id, "projectId": project_id, "userId": user,
            "userEmail": f"{user}@example.com", "status": status,
            "promptCount": prompt_count, "completedPrompts": [], "failedPrompts": [],
            "clipRelativePaths": clip_paths or [], "bucket": self.bucket,
            "createdAt": now() - created_ago,
        }
        if updated_ago is not None:
            data["updatedAt"] = now() - updated_ago
        if started_ago is not None:
            data["startedAt"] = now() - started_ago
        self.jobs().document(job_id).set(data)
        return job_id

    def project(self, project_id: str) -> dict[str, Any]:
        snapshot = self.projects().document(project_id).get()
        data: dict[str, Any] | None = snapshot.to_dict()
        assert data is not None, f"project {project_id} is gone"
        return data

    def update_time(self, project_id: str) -> datetime:
        stamp: datetime = self.projects().document(project_id).get().update_time
        return stamp

    def job(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] | None = self.jobs().document(job_id).get().to_dict()
        assert data is not None, f"job {job_id} is gone"
        return data

    def generated_project(self, project_id: str, *, user: str = "user-1", status: str,
                          prompts: int, in_gcs: int | list[int], in_db: int | list[int],
                          job_status: str = "completed",
                          job_updated_ago: timedelta | None = None,
                          job_started_ago: timedelta | None = None,
                          job_created_ago: timedelta = timedelta(hours=2),
                          **extra: Any) -> tuple[str, list[str]]:
        """A project with one generation job: which clips exist in GCS, which the doc lists."""
        job = new_job_id()
        paths = [self.clip_path(user, project_id, job, i) for i in range(prompts)]
        gcs_idx = range(in_gcs) if isinstance(in_gcs, int) else in_gcs
        db_idx = set(range(in_db) if isinstance(in_db, int) else in_db)
        for i in gcs_idx:
            self.put_object(paths[i])
        self.add_job(project_id, user=user, status=job_status, prompt_count=prompts,
                     job_id=job, created_ago=job_created_ago, updated_ago=job_updated_ago,
                     started_ago=job_started_ago,
                     clip_paths=[paths[i] for i in sorted(db_idx)])
        clips: list[str | None] = [paths[i] if i in db_idx else None for i in range(prompts)]
        self.add_project(project_id, user=user, status=status, prompts=prompts, clips=clips,
                         **extra)
        return job, paths
