"""The seed's algorithm, re-implemented faithfully to be measured against (../shared/seed).

`ReelStateReconciler.reconcile_project(project_id)` loads the project document, checks every
claimed clip with its own `blob.exists()` call, one after another, and applies the seed's
status rules; a sweep calls it for each project in turn. It reads no job, lists nothing and
restores nothing (D1), and counts a storage error as a missing clip (D2): those are the defects
this project fixes, kept here because they are what is being measured.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import google.cloud.storage as storage
from google.cloud import firestore


@dataclass
class SeedReport:
    """The seed's report keys (camelCase in its JSON)."""

    project_id: str
    original_status: str
    corrected_status: str
    claimed_clips: int
    verified_clips: int
    missing_clips: list[str] = field(default_factory=list)
    action: str = "no_change"

    def as_json(self) -> dict[str, Any]:
        return {"projectId": self.project_id, "originalStatus": self.original_status,
                "correctedStatus": self.corrected_status, "claimedClips": self.claimed_clips,
                "verifiedClips": self.verified_clips, "missingClips": self.missing_clips,
                "action": self.action}


def seed_status(current: str, prompt_count: int, verified: int) -> str:
    """The seed's state logic, rule for rule (its `_determine_status`)."""
    if prompt_count == 0:
        return "draft"
    if verified == prompt_count:
        return "ready"
    if verified > 0:
        return "generating" if current == "generating" else "draft"
    return "error" if current == "generating" else "draft"


class SeedReconciler:
    """One request per claimed clip, in sequence; a write only when auto_fix is on."""

    def __init__(self, db: firestore.Client, gcs: storage.Client, bucket: str,
                 collection: str = "reel_maker_projects") -> None:
        self.projects = db.collection(collection)
        self.bucket = gcs.bucket(bucket)
        self.bucket_name = bucket
        self.firestore_reads = 0
        self.firestore_requests = 0
        self.firestore_writes = 0
        self.gcs_requests = 0

    def project_ids(self, page_size: int, limit: int | None = None) -> Iterator[str]:
        """Every project id, page by page (the seed had no sweep: this is the loop around it)."""
        after: Any = None
        seen = 0
        while limit is None or seen < limit:
            size = page_size if limit is None else min(page_size, limit - seen)
            query = self.projects.order_by("__name__").select([]).limit(size)
            if after is not None:
                query = query.start_after(after)
            page = list(query.stream())
            self.firestore_requests += 1
            self.firestore_reads += max(1, len(page))
            for snapshot in page:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield snapshot.id
            if len(page) < size:
                return
            after = page[-1]

    def _exists(self, path: str) -> bool:
        name = path
        if path.startswith("gs://"):
            name = path[len("gs://"):].partition("/")[2]
        self.gcs_requests += 1
        try:
            return bool(self.bucket.blob(name).exists())
        except Exception:
            return False  # the seed's D2: an error counts as "clip missing"

    def reconcile_project(self, project_id: str, auto_fix: bool = False) -> SeedReport | None:
        snapshot = self.projects.document(project_id).get()
        self.firestore_requests += 1
        self.firestore_reads += 1
        if not snapshot.exists:
            return None
        data = snapshot.to_dict() or {}
        status = str(data.get("status"))
        prompts = data.get("promptList") or []
        claims = data.get("clipFilenames") or []
        verified: list[str | None] = []
        missing: list[str] = []
        for path in claims:
            if isinstance(path, str) and path and self._exists(path):
                verified.append(path)
            else:
                verified.append(None)
                if isinstance(path, str) and path:
                    missing.append(path)
        count = sum(1 for path in verified if path)
        corrected = seed_status(status, len(prompts) if isinstance(prompts, list) else 0, count)
        changed = corrected != status or verified != list(claims)
        report = SeedReport(project_id, status, corrected,
                            sum(1 for path in claims if path), count, missing,
                            "corrected" if changed else "no_change")
        if changed and auto_fix:
            snapshot.reference.update({"clipFilenames": verified, "status": corrected})
            self.firestore_requests += 1
            self.firestore_writes += 1
        return report
