"""`make demo`: the embedded default, always on. Starts both emulators, seeds the original
write-up's cases, starts `reel-reconciler watch`, and lets the app simulator run live
generations beside it (one succeeds, one fails part-way, one stalls, one goes zombie, one
stitcher dies after its upload) while a live view shows projects going wrong and healing;
then a before/after table with each case's time to heal. Last, the breaker: a sweep pointed
at an empty bucket trips instead of emptying every project.

The timings are shortened so that it all fits in a minute: a job is stale after 6 s instead
of 30 minutes, and so is a stitch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from devkit.app import ReelApp, Timing
from devkit.emulators import free_port, running_emulators
from devkit.seed import World
from reel_reconciler import defaults
from tools.demo_cases import seed

console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)

STALE = 6.0
"""Seconds of silence after which a job is stale, and a stitch stuck."""
WATCH_ARGS = ["--settle", "2s", "--stale-timeout", f"{STALE:g}s", "--stale-interval", "2s",
              "--sweep-interval", "8s", "--log-format", "json"]
DEADLINE = 45.0
"""Seconds the live part may take at most."""


@dataclass
class Case:
    """One project of the demo: what it is, what it should end as, when it went wrong."""

    project_id: str
    title: str
    expect: str
    """The status it should end in."""
    went_wrong: float | None = None
    """time.time() when it went wrong; None for a live case still fine."""
    done: threading.Event = field(default_factory=threading.Event)


def _succeeds(app: ReelApp, case: Case) -> None:
    app.create_project(case.project_id, prompts=4)
    app.generation(case.project_id).start().run()


def _fails_part_way(app: ReelApp, case: Case) -> None:
    app.create_project(case.project_id, prompts=4)
    app.generation(case.project_id, fail_at=2).start().run()


def _stalls(app: ReelApp, case: Case) -> None:
    app.create_project(case.project_id, prompts=3)
    generation = app.generation(case.project_id, hang_at=1).start().run_in_thread()
    generation.hanging.wait()
    case.went_wrong = time.time()
    generation.crash()


def _goes_zombie(app: ReelApp, case: Case) -> None:
    app.create_project(case.project_id, prompts=3)
    generation = app.generation(case.project_id, hang_at=1).start().run_in_thread()
    generation.hanging.wait()
    job = app.world.jobs().document(generation.job_id)
    while not (job.get().to_dict() or {}).get("timedOutAt"):
        time.sleep(0.3)
    generation.resume()
    generation.join(DEADLINE)


def _stitcher_dies(app: ReelApp, case: Case) -> None:
    app.create_project(case.project_id, prompts=2)
    app.generation(case.project_id).start().run()
    time.sleep(1.1)  # GCS times have a second's grain: the reel is newer than its clips
    app.stitch(case.project_id).upload()
    case.went_wrong = time.time()


LIVE: list[tuple[str, str, str, Callable[[ReelApp, Case], None]]] = [
    ("live-succeeds", "live: a generation that succeeds (Scenario 2: the worker owns it)",
     "ready", _succeeds),
    ("live-fails", "live: fails at prompt 3 of 4 (its message stays)", "error",
     _fails_part_way),
    ("live-stalls", "live: the worker dies after 1 clip", "error", _stalls),
    ("live-zombie", "live: silent past the timeout, then resumes (not fought)", "ready",
     _goes_zombie),
    ("live-stitch", "live: the stitcher dies after its upload", "ready", _stitcher_dies),
]


def _run_case(app: ReelApp, case: Case, work: Callable[[ReelApp, Case], None]) -> None:
    try:
        work(app, case)
    finally:
        case.done.set()


def _documents(world: World) -> dict[str, dict[str, Any]]:
    return {snap.id: snap.to_dict() or {} for snap in world.projects().stream()}


def _clips(doc: dict[str, Any]) -> str:
    clips = doc.get("clipFilenames") or []
    return f"{sum(1 for c in clips if c)}/{len(doc.get('promptList') or [])}"


def _healed_at(doc: dict[str, Any]) -> datetime | None:
    summary = doc.get("lastReconciliation") or {}
    at = summary.get("at")
    return at if isinstance(at, datetime) else None


def _view(cases: list[Case], docs: dict[str, dict[str, Any]], started: float) -> Table:
    table = Table(title=f"reel-reconciler watch, {time.time() - started:4.1f} s",
                  title_justify="left")
    for column in ("project", "case", "status", "clips", "reel", "our last write"):
        table.add_column(column)
    for case in cases:
        doc = docs.get(case.project_id, {})
        summary = doc.get("lastReconciliation") or {}
        ours = (f"{summary.get('originalStatus')} → {summary.get('correctedStatus')}"
                if summary else "")
        table.add_row(case.project_id, case.title, str(doc.get("status", "…")), _clips(doc),
                      "yes" if doc.get("stitchedFilename") else "", ours)
    return table


def _settled(cases: list[Case], docs: dict[str, dict[str, Any]]) -> bool:
    """Every live case finished and every case in its expected final status."""
    for case in cases:
        doc = docs.get(case.project_id, {})
        if not case.done.is_set() or not doc:
            return False
        if doc.get("status") != case.expect:
            return False
    return True


def _summary(cases: list[Case], before: dict[str, tuple[str, str]],
             docs: dict[str, dict[str, Any]], started: float) -> Table:
    table = Table(title="before → after, and time to heal", title_justify="left")
    for column in ("project", "case", "status", "clips", "healed after"):
        table.add_column(column)
    for case in cases:
        doc = docs.get(case.project_id, {})
        s0, c0 = before.get(case.project_id, ("(new)", ""))
        s1, c1 = str(doc.get("status")), _clips(doc)
        healed = _healed_at(doc)
        wrong = case.went_wrong if case.went_wrong is not None else started
        heal = f"{healed.timestamp() - wrong:.1f} s" if healed else "not written"
        table.add_row(case.project_id, case.title, s0 if s0 == s1 else f"{s0} → [bold]{s1}[/]",
                      c0 if c0 == c1 else f"{c0} → [bold]{c1}[/]", heal)
    return table


def _wrong_bucket(world: World, env: dict[str, str]) -> bool:
    """The breaker: a one-shot sweep in Enforce pointed at an existing but empty bucket (a
    typo, a new environment) trips instead of emptying every project."""
    wrong = "reel-maker-demo-empty"
    world.gcs.create_bucket(wrong)
    before = _documents(world)
    run = subprocess.run([sys.executable, "-m", "reel_reconciler.cli", "sweep", "--bucket", wrong,
                          "--settle", "0s", "--output", "json"],
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    after = _documents(world)
    changed = sorted(pid for pid in before if before[pid] != after.get(pid))
    breaker = world.db.collection(defaults.BREAKER_COLLECTION).document("cli").get().to_dict()
    actions = json.loads(run.stdout).get("actions", {}) if run.stdout.strip() else {}
    table = Table(title=f"a wrong bucket: `reel-reconciler sweep --bucket {wrong}` (Enforce)",
                  title_justify="left")
    for column in ("projects", "held (skipped)", "written", "breaker"):
        table.add_column(column)
    tripped = bool(breaker and breaker.get("tripped"))
    table.add_row(str(len(before)), str(actions.get("skipped", 0)), str(len(changed)),
                  f"tripped: {breaker.get('reason')}" if breaker and tripped else "not tripped")
    console.print(table)
    console.print("resume with `reel-reconciler resume-writes TOKEN --reconciler cli` once "
                  "the bucket is right; `sweep --dry-run` lists what that would write")
    return tripped and not changed


def main() -> int:
    console.print("Starting Google's Firestore emulator and fake-gcs-server ...")
    with running_emulators() as emulators:
        world = World.create(emulators.gcp_project, bucket="reel-maker-demo")
        seeded = seed(world)
        docs = _documents(world)
        before = {pid: (str(doc.get("status")), _clips(doc)) for pid, doc in docs.items()}
        expectations = {"pwYISGEqG6Oxb8sdtGoy": "ready", "vErT1cAlTeSt00000001": "ready",
                        "scenario3-crashed-job": "error",
                        "scenario4-false-claims": "draft", "failed-no-clips": "error",
                        "partial-failure": "error", "stuck-stitch": "ready",
                        "healthy-ready": "ready", "scenario1-older-job": "ready"}
        cases = [Case(pid, title, expectations[pid]) for pid, title in seeded]
        for case in cases:
            case.done.set()
        live = [(Case(pid, title, expect), work) for pid, title, expect, work in LIVE]
        cases += [case for case, _ in live]
        port = free_port()
        env = {**os.environ, **emulators.env(), "REEL_BUCKET": world.bucket,
               "REEL_STITCH_TIMEOUT": f"{STALE:g}s"}
        console.print(f"Firestore at {emulators.firestore.host}, GCS at {emulators.gcs.host}: "
                      f"{len(seeded)} projects seeded; starting `reel-reconciler watch "
                      f"{' '.join(WATCH_ARGS)}` (metrics on :{port})")
        log = open(os.devnull, "wb")  # noqa: SIM115 - closed after the process ends
        watch = subprocess.Popen([sys.executable, "-m", "reel_reconciler.cli", "watch",
                                  "--metrics-port", str(port), *WATCH_ARGS],
                                 env=env, stdout=log, stderr=subprocess.STDOUT)
        started = time.time()
        app = ReelApp(world, Timing(window=0.1, per_prompt=0.8, exists_check=0.2))
        for case, work in live:
            threading.Thread(target=_run_case, args=(app, case, work), daemon=True).start()
        try:
            with Live(console=console, refresh_per_second=4) as view:
                while time.time() - started < DEADLINE:
                    docs = _documents(world)
                    view.update(Group(_view(cases, docs, started)))
                    if _settled(cases, docs) or watch.poll() is not None:
                        break
                    time.sleep(0.5)
        finally:
            watch.send_signal(signal.SIGTERM)
            code = watch.wait(30)
            log.close()
        docs = _documents(world)
        console.print()
        console.print(_summary(cases, before, docs, started))
        console.print(f"watch stopped on SIGTERM with exit status {code}")
        console.print()
        braked = _wrong_bucket(world, env)
        return 0 if code == 0 and _settled(cases, docs) and braked else 1


if __name__ == "__main__":
    sys.exit(main())
