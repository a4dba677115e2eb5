"""Faults on a schedule: Firestore crashed and restored from its last export, fake-gcs-server
down, the reconciler SIGKILLed, and a burst of stuck projects."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

from devkit.app import ReelApp
from devkit.emulators import Emulator
from devkit.history import History
from devkit.seed import new_job_id
from tests.soak.checker import Stuck


@dataclass
class Reconciler:
    """The `watch` process, restartable; `died` counts exits nobody asked for."""

    start: Callable[[], subprocess.Popen[bytes]]
    proc: subprocess.Popen[bytes] | None = None
    died: int = 0

    def run(self) -> None:
        self.proc = self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Faults:
    app: ReelApp
    history: History
    firestore: Emulator
    gcs: Emulator
    reconciler: Reconciler
    workdir: Path
    gcp_project: str
    counts: Counter[str] = field(default_factory=Counter)
    outages: list[tuple[datetime, datetime]] = field(default_factory=list)
    stuck: list[Stuck] = field(default_factory=list)

    def _outage(self, started: datetime) -> None:
        self.outages.append((started, datetime.now(UTC)))

    def firestore_crash(self, down: float) -> None:
        """Freeze the writers, export, SIGKILL the emulator, and bring it back from the export
        after `down` seconds: a crash and a restore, with nothing in flight lost."""
        self.app.gate.close()
        assert self.reconciler.proc is not None
        os.kill(self.reconciler.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(0.5)
            export = self.workdir / f"export-{self.counts['firestore_crash']}"
            export.mkdir()
            requests.post(
                f"http://{self.firestore.host}/emulator/v1/projects/{self.gcp_project}:export",
                json={"database": f"projects/{self.gcp_project}/databases/(default)",
                      "export_directory": str(export), "export_name": "soak"},
                timeout=60).raise_for_status()
            started = datetime.now(UTC)
            self.history.stop()
            self.firestore.stop(crash=True)
        finally:
            os.kill(self.reconciler.proc.pid, signal.SIGCONT)
        time.sleep(down)
        metadata = export / "soak" / "soak.overall_export_metadata"
        self.firestore.argv = [*self.firestore.argv[:4], f"--import-data={metadata}"]
        self.firestore.start()
        self.history.start()
        self._outage(started)
        self.app.gate.open()
        self.counts["firestore_crash"] += 1

    def gcs_down(self, down: float) -> None:
        started = datetime.now(UTC)
        self.gcs.stop(crash=True)
        time.sleep(down)
        self.gcs.start()
        self._outage(started)
        self.counts["gcs_down"] += 1

    def reconciler_kill(self) -> None:
        started = datetime.now(UTC)
        assert self.reconciler.proc is not None
        self.reconciler.proc.kill()
        self.reconciler.proc.wait(10)
        time.sleep(1.0)
        self.reconciler.run()
        self._outage(started)
        self.counts["reconciler_kill"] += 1

    def burst(self, size: int) -> None:
        """`size` projects stuck in `generating` at once: a dead worker's job, every clip in
        GCS, none listed."""
        world = self.app.world
        names = [f"burst-{self.counts['burst']}-{i:03d}" for i in range(size)]
        jobs = {project_id: new_job_id() for project_id in names}
        user = "soak-burst"
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda pid: [self.app.put_object(world.clip_path(
                user, pid, jobs[pid], i)) for i in range(2)], names))
        for start in range(0, size, 250):
            batch = world.db.batch()
            for project_id in names[start:start + 250]:
                batch.set(world.jobs().document(jobs[project_id]), {
                    "jobId": jobs[project_id], "projectId": project_id, "userId": user,
                    "status": "failed", "promptCount": 2, "error": "worker lost",
                    "createdAt": datetime.now(UTC), "updatedAt": datetime.now(UTC)})
                batch.set(world.projects().document(project_id), {
                    "userId": user, "title": project_id, "promptList": ["a", "b"],
                    "clipFilenames": [], "status": "generating", "durationSeconds": 8})
            with self.app.gate.writing():
                batch.commit()
        at = datetime.now(UTC)
        self.stuck.extend(Stuck(project_id, at, "burst") for project_id in names)
        self.counts["burst"] += 1
