"""The Reel Maker app as the other writer: its writes, made the way it makes them.

Every write here is what the app does to a project or a job: a blind `set()` or `update()` with
server timestamps, no transaction and no precondition, so the app always wins a race. Timing is
in the test's hands: a pause between a job write and the project write that follows it, a
delay per prompt, a failure at prompt k, a hang that a test releases. Written from the app's
behaviour as docs/design.md describes it (its code carries no license).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from devkit.seed import CLIP_BYTES, World

NOW = firestore.SERVER_TIMESTAMP


def new_job_id() -> str:
    return f"reeljob-{uuid.uuid4().hex[:12]}"


@dataclass
class Timing:
    """How the app's steps are spaced in time."""

    window: float = 0.05
    """Between a job write and the project write after it (the app reads, then updates)."""
    per_prompt: float = 0.0
    """The model call for one prompt."""
    exists_check: float = 0.0
    """The GCS existence checks at the start, before the project is written."""


class Gate:
    """Lets a fault freeze the app's writes: `close()` waits for the writes in flight and
    holds new ones until `open()` (a soak stops the app's traffic around a database restore)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._closed = False
        self._busy = 0

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._closed)
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.wait_for(lambda: self._busy == 0)

    def open(self) -> None:
        with self._cond:
            self._closed = False
            self._cond.notify_all()


@dataclass
class ReelApp:
    """One Reel Maker deployment writing into `world`."""

    world: World
    timing: Timing = field(default_factory=Timing)
    gate: Gate = field(default_factory=Gate)

    def _project(self, project_id: str) -> Any:
        return self.world.projects().document(project_id)

    def job_ref(self, job_id: str) -> Any:
        return self.world.jobs().document(job_id)

    def update_project(self, project_id: str, fields: dict[str, Any]) -> None:
        """The app's project write: read the document, then update it blind."""
        ref = self._project(project_id)
        with self.gate.writing():
            ref.get()
            ref.update({**fields, "updatedAt": NOW})

    def update_job(self, job_id: str, fields: dict[str, Any]) -> None:
        with self.gate.writing():
            self.job_ref(job_id).update({**fields, "updatedAt": NOW})

    def put_object(self, name: str) -> str:
        with self.gate.writing():
            return self.world.put_object(name, CLIP_BYTES)

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    # --- a project -------------------------------------------------------------------------

    def create_project(self, project_id: str, *, user: str = "user-1", prompts: int = 3,
                       status: str = "draft") -> None:
        with self.gate.writing():
            self._set_project(project_id, user, prompts, status)

    def _set_project(self, project_id: str, user: str, prompts: int, status: str) -> None:
        self._project(project_id).set({
            "userId": user, "userEmail": f"{user}@example.com", "title": f"reel {project_id}",
            "orientation": "portrait", "durationSeconds": 8, "compression": "optimized",
            "model": "veo-3.0-fast-generate-001", "audioEnabled": True,
            "promptList": [f"shot {i}" for i in range(prompts)], "clipFilenames": [],
            "status": status, "createdAt": NOW, "updatedAt": NOW})

    def edit_prompts(self, project_id: str, prompts: Sequence[str]) -> None:
        """Editing prompts never touches `clipFilenames` (step 9)."""
        self.update_project(project_id, {"promptList": list(prompts)})

    # --- generation (steps 1-4, 6, 7, 11) --------------------------------------------------

    def generation(self, project_id: str, *, keep: Sequence[int] = (), wipe: bool = False,
                   fail_at: int | None = None, hang_at: int | None = None,
                   file: str = "sample_0.mp4") -> Generation:
        """A generation of every prompt not in `keep`. `wipe` is the old start that wrote
        `clipFilenames: []`; `fail_at` fails that prompt; `hang_at` waits before it until
        `resume()` (a worker the stale timeout will take for dead)."""
        data = self._project(project_id).get().to_dict()
        return Generation(self, project_id, data["userId"], new_job_id(), list(data["promptList"]),
                          list(data.get("clipFilenames") or []), list(keep), wipe, fail_at,
                          hang_at, file)

    def regenerate_clip(self, project_id: str, index: int, **kw: Any) -> Generation:
        """The regenerate route: `generating` first, with no job; the generation starts after
        (step 7). The caller starts it, after whatever pause it wants to test."""
        self.update_project(project_id, {"status": "generating"})
        data = self._project(project_id).get().to_dict()
        keep = [i for i in range(len(data["promptList"])) if i != index]
        return self.generation(project_id, keep=keep, **kw)

    # --- the app's own timeout cleanup (step 5) --------------------------------------------

    def timeout_cleanup(self, minutes: float) -> list[str]:
        """The app's cron: processing jobs started more than `minutes` ago become failed,
        their projects `error`. Returns the job ids it failed."""
        failed = []
        cutoff = datetime.now(UTC).timestamp() - minutes * 60
        processing = FieldFilter("status", "==", "processing")
        for snapshot in self.world.jobs().where(filter=processing).stream():
            job = snapshot.to_dict()
            started = job.get("startedAt")
            if started is None or started.timestamp() > cutoff:
                continue
            words = f"{minutes:g} minutes"
            self.update_job(snapshot.id, {"status": "failed",
                                          "error": f"Job timed out after {words}"})
            self.update_project(job["projectId"], {
                "status": "error",
                "errorInfo": {"message": f"Generation timed out after {words}"}})
            failed.append(snapshot.id)
        return failed

    # --- stitching (step 8) ----------------------------------------------------------------

    def stitch(self, project_id: str) -> Stitch:
        """The stitch route: `stitching`, then a stitcher the caller finishes, fails or drops."""
        self.update_project(project_id, {"status": "stitching"})
        data = self._project(project_id).get().to_dict()
        return Stitch(self, project_id, data["userId"])


@dataclass
class Generation:
    """One generation job and its worker thread's memory of the clip list."""

    app: ReelApp
    project_id: str
    user: str
    job_id: str
    prompts: list[str]
    clips: list[str | None]
    keep: list[int]
    wipe: bool
    fail_at: int | None
    hang_at: int | None
    file: str
    resumed: threading.Event = field(default_factory=threading.Event)
    hanging: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    outcome: str | None = None
    crashed: bool = False
    made: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None

    @property
    def world(self) -> World:
        return self.app.world

    def clip_name(self, index: int) -> str:
        return self.world.clip_path(self.user, self.project_id, self.job_id, index, self.file)

    def todo(self) -> list[int]:
        return [i for i in range(len(self.prompts)) if i not in self.keep]

    def start(self) -> Generation:
        """Step 1 (a)-(c): the job, the existence checks, the project; then the worker (d)."""
        n = len(self.prompts)
        with self.app.gate.writing():
            self._create_job(n)
        self.app.pause(self.app.timing.exists_check)
        kept = [self.clips[i] if i < len(self.clips) else None for i in range(n)]
        self.clips = [kept[i] if i in self.keep else None for i in range(n)]
        fields: dict[str, Any] = {"promptList": self.prompts, "status": "generating",
                                  "errorInfo": None,
                                  "clipFilenames": [] if self.wipe else list(self.clips)}
        if self.todo():
            fields["stitchedFilename"] = None
        self.app.pause(self.app.timing.window)
        self.app.update_project(self.project_id, fields)
        self.app.update_job(self.job_id, {"status": "processing", "startedAt": NOW})
        return self

    def _create_job(self, n: int) -> None:
        self.app.job_ref(self.job_id).set({
            "jobId": self.job_id, "projectId": self.project_id, "userId": self.user,
            "userEmail": f"{self.user}@example.com", "status": "queued", "promptCount": n,
            "completedPrompts": 0, "failedPrompts": 0, "clipRelativePaths": [],
            "bucket": self.world.bucket, "createdAt": NOW, "updatedAt": NOW, "error": None})

    def run(self) -> str:
        """The worker: each prompt in turn (step 2), then failure (3) or completion (4). It
        never looks at the job's status: a worker marked failed goes on, blind (step 6)."""
        try:
            for index in self.todo():
                if index == self.hang_at:
                    self.hanging.set()
                    self.resumed.wait()
                    if self.crashed:
                        return "crashed"
                self.app.pause(self.app.timing.per_prompt)
                if index == self.fail_at:
                    self.fail(f"Video generation failed for prompt {index + 1}: quota exceeded")
                    return "failed"
                self.make(index)
            self.complete()
            return "completed"
        finally:
            self.finished.set()

    def run_in_thread(self) -> Generation:
        def work() -> None:
            try:
                self.outcome = self.run()
            except Exception as exc:  # a fault killed the worker, as it would a real one
                self.outcome = f"crashed: {type(exc).__name__}"

        self._thread = threading.Thread(target=work, name=f"app-{self.job_id}", daemon=True)
        self._thread.start()
        return self

    def resume(self) -> None:
        self.resumed.set()

    def crash(self) -> None:
        """The hanging worker dies without another write."""
        self.crashed = True
        self.resumed.set()

    def join(self, timeout: float) -> str | None:
        """The worker's outcome once its thread ends; `timeout` is the caller's (tests scale
        theirs with their patience)."""
        assert self._thread is not None, "the worker was not started in a thread"
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"worker {self.job_id} still running"
        return self.outcome

    def make(self, index: int) -> None:
        name = self.app.put_object(self.clip_name(index))
        self.clips[index] = name
        self.made.append(name)
        done = len(self.made)
        self.app.update_job(self.job_id, {"completedPrompts": done,
                                          "clipRelativePaths": list(self.clips)})
        self.app.pause(self.app.timing.window)
        self.app.update_project(self.project_id, {"clipFilenames": list(self.clips),
                                                  "status": "generating", "errorInfo": None})

    def fail(self, message: str) -> None:
        done = len(self.made)
        self.app.update_job(self.job_id, {
            "status": "failed", "failedPrompts": len(self.todo()) - done,
            "completedPrompts": done, "clipRelativePaths": list(self.clips), "error": message})
        self.app.pause(self.app.timing.window)
        self.app.update_project(self.project_id, {"status": "error",
                                                  "errorInfo": {"message": message}})

    def complete(self) -> None:
        self.app.update_job(self.job_id, {"status": "completed", "completedAt": NOW})
        self.app.pause(self.app.timing.window)
        self.app.update_project(self.project_id, {"clipFilenames": list(self.clips),
                                                  "status": "ready"})


@dataclass
class Stitch:
    """A stitcher at work on one project."""

    app: ReelApp
    project_id: str
    user: str

    def reel_name(self) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return self.app.world.stitched_path(self.user, self.project_id, f"reel_full_{stamp}.mp4")

    def upload(self) -> str:
        """The stitched reel lands in GCS (a stitcher that dies now never records it)."""
        return self.app.put_object(self.reel_name())

    def succeed(self) -> str:
        name = self.upload()
        self.app.update_project(self.project_id, {"stitchedFilename": name, "status": "ready"})
        return name

    def fail(self, message: str = "ffmpeg exited with status 1") -> None:
        self.app.update_project(self.project_id, {
            "status": "error", "errorInfo": {"message": message, "timestamp": NOW}})
