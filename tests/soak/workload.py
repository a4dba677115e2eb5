"""Many users' generations with random outcomes, made by the app simulator, and the moments
each one left a project for the reconciler to heal."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore

from devkit.app import Generation, ReelApp
from tests.soak.checker import Stuck
from tests.support.patience import bound

log = logging.getLogger(__name__)

OUTCOMES: dict[str, float] = {
    "success": 0.24, "partial_failure": 0.14, "hang": 0.14, "zombie": 0.10, "stitch": 0.10,
    "crashed_stitcher": 0.08, "stitcher_after_upload": 0.05, "regenerate_clip": 0.08,
    "edit": 0.07,
}
NEEDS_READY = {"stitch", "crashed_stitcher", "stitcher_after_upload", "regenerate_clip", "edit"}


class Workload:
    """Runs episodes on a thread each; a project is in one episode at a time, and rests a
    stale timeout after it (a user does not regenerate the second a project heals)."""

    def __init__(self, app: ReelApp, stale: float, seed: int, users: int = 12) -> None:
        self.app = app
        self.stale = stale
        self.random = random.Random(seed)
        self.users = [f"soak-user-{i:02d}" for i in range(users)]
        self.stuck: list[Stuck] = []
        self.outcomes: Counter[str] = Counter()
        self.aborted: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._rested: dict[str, float] = {}
        self._ready: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._made = 0

    @property
    def generations(self) -> int:
        return sum(self.outcomes[kind] for kind in OUTCOMES if kind not in ("edit",))

    def run(self, until: float, pace: float = 0.4) -> None:
        """Start episodes until `until` (time.time()), then wait for the running ones."""
        while time.time() < until:
            self._start_one()
            time.sleep(pace * self.random.uniform(0.5, 1.5))
        for thread in self._threads:
            thread.join(timeout=max(0.0, until + 4 * self.stale - time.time()))

    def _start_one(self) -> None:
        kind = self.random.choices(list(OUTCOMES), weights=list(OUTCOMES.values()))[0]
        project_id = self._pick(kind in NEEDS_READY)
        if project_id is None:
            kind, project_id = "success", self._new_project()
        self.outcomes[kind] += 1
        work: Callable[[str], None] = getattr(self, f"_{kind}")
        thread = threading.Thread(target=self._episode, args=(kind, project_id, work),
                                  daemon=True, name=f"soak-{kind}-{project_id}")
        self._threads.append(thread)
        thread.start()

    def _pick(self, ready: bool) -> str | None:
        """A project nobody (the app or the reconciler) wrote for a while: users come back
        to a project less often than the stale timeout, or every heal would look like a
        write war."""
        now = time.time()
        with self._lock:
            pool = self._ready if ready else set(self._rested)
            idle = sorted(p for p in pool if p not in self._busy
                          and now - self._rested.get(p, 0.0) > 1.5 * self.stale)
        for project_id in self.random.sample(idle, min(3, len(idle))):
            written = self.app.world.update_time(project_id).timestamp()
            with self._lock:
                if now - written > 1.5 * self.stale and project_id not in self._busy:
                    self._busy.add(project_id)
                    return project_id
        return None

    def _new_project(self) -> str:
        with self._lock:
            self._made += 1
            project_id = f"soak-{self._made:04d}"
            self._busy.add(project_id)
        user = self.random.choice(self.users)
        self.app.create_project(project_id, user=user, prompts=self.random.randint(2, 4))
        return project_id

    def _episode(self, kind: str, project_id: str, work: Callable[[str], None]) -> None:
        try:
            work(project_id)
        except Exception as exc:  # a fault hit the app: its worker died, as a real one would
            self.aborted[kind] += 1
            log.info("episode aborted", extra={"kind": kind, "project": project_id,
                                               "error": str(exc)[:200]})
        finally:
            with self._lock:
                self._busy.discard(project_id)
                self._rested[project_id] = time.time()

    def _left_stuck(self, project_id: str, kind: str) -> None:
        with self._lock:
            self.stuck.append(Stuck(project_id, datetime.now(UTC), kind))
            self._ready.discard(project_id)

    def _finished(self, project_id: str, generation: Generation | None = None) -> None:
        with self._lock:
            if generation is None or generation.outcome in (None, "completed"):
                self._ready.add(project_id)
            else:
                self._ready.discard(project_id)

    # --- the episodes --------------------------------------------------------------------

    def _generation(self, project_id: str, **kw: Any) -> Generation:
        self.app.timing.per_prompt = self.random.uniform(0.2, 0.6)
        return self.app.generation(project_id, **kw).start()

    def _success(self, project_id: str) -> None:
        generation = self._generation(project_id)
        generation.outcome = generation.run()
        self._finished(project_id, generation)

    def _partial_failure(self, project_id: str) -> None:
        prompts = len(self.app.world.project(project_id)["promptList"])
        generation = self._generation(project_id, fail_at=self.random.randrange(prompts))
        generation.outcome = generation.run()
        self._finished(project_id, generation)

    def _hang(self, project_id: str) -> None:
        generation = self._generation(project_id, hang_at=0).run_in_thread()
        generation.hanging.wait(30)
        self._left_stuck(project_id, "worker died")
        generation.crash()
        generation.join(bound(60))

    def _zombie(self, project_id: str) -> None:
        generation = self._generation(project_id, hang_at=0).run_in_thread()
        generation.hanging.wait(30)
        job = self.app.world.jobs().document(generation.job_id)
        deadline = time.time() + 4 * self.stale
        while time.time() < deadline and not self._timed_out(job):
            time.sleep(0.5)
        generation.resume()
        generation.join(bound(120))
        self._finished(project_id, generation)

    @staticmethod
    def _timed_out(job: firestore.DocumentReference) -> bool:
        data = job.get().to_dict() or {}
        return data.get("status") == "failed"

    def _stitch(self, project_id: str) -> None:
        stitch = self.app.stitch(project_id)
        time.sleep(self.random.uniform(0.5, 2.0))
        stitch.succeed()
        self._finished(project_id)

    def _crashed_stitcher(self, project_id: str) -> None:
        self.app.stitch(project_id)
        self._left_stuck(project_id, "stitcher died")

    def _stitcher_after_upload(self, project_id: str) -> None:
        stitch = self.app.stitch(project_id)
        time.sleep(1.1)  # the reel must be newer than its clips, at GCS's second grain
        stitch.upload()
        self._left_stuck(project_id, "stitcher died after its upload")

    def _regenerate_clip(self, project_id: str) -> None:
        prompts = len(self.app.world.project(project_id)["promptList"])
        generation = self.app.regenerate_clip(project_id, self.random.randrange(prompts))
        time.sleep(self.random.uniform(0.2, 1.0))
        generation.start()
        generation.outcome = generation.run()
        self._finished(project_id, generation)

    def _edit(self, project_id: str) -> None:
        prompts = list(self.app.world.project(project_id)["promptList"])
        self.app.edit_prompts(project_id, [*prompts, f"shot {len(prompts)} (added)"])
        with self._lock:
            self._ready.discard(project_id)
