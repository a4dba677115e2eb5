"""`make soak`: `reel-reconciler watch` beside the app simulator for SOAK_DURATION seconds, under
faults on a schedule, then judged from the recorded history of every document.

    python -m tests.soak.run --duration 600
    python -m tests.soak.run --duration 60 --broken hands-off   # must report violations

Prints a table, then one JSON line; exits 1 on any violation (0 otherwise). `--broken` runs a
deliberately broken reconciler instead (tests/soak/broken.py: hands-off disabled, or writes
over versions it did not read) to prove the checker sees what it must.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.api_core.exceptions import NotFound
from rich.console import Console
from rich.table import Table

from devkit.app import ReelApp
from devkit.app import Timing as AppTiming
from devkit.emulators import Emulators, fake_gcs_server, firestore_emulator, free_port
from devkit.history import History
from devkit.seed import World
from reel_reconciler.logs import CHANGES
from tests.soak.broken import BREAKS
from tests.soak.checker import INVARIANTS, Stuck, Timing, Verdict, check
from tests.soak.faults import Faults, Reconciler
from tests.soak.workload import Workload
from tests.support.patience import PATIENCE

REPO = Path(__file__).resolve().parents[2]
STALE, SETTLE, SWEEP, STALE_INTERVAL = 8.0, 2.0, 15.0, 2.0
CAUGHT_BY = {"hands-off": "hands_off", "precondition": "precondition"}
"""The invariant each broken reconciler must be caught by."""


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Sampler(threading.Thread):
    """The reconciler's RSS every second, and exits nobody asked for."""

    def __init__(self, reconciler: Reconciler) -> None:
        super().__init__(daemon=True, name="soak-sampler")
        self.reconciler = reconciler
        self.samples: list[tuple[float, int, float]] = []
        self.stopped = threading.Event()
        self.paused = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            proc = self.reconciler.proc
            if proc is None or self.paused.is_set():
                continue
            if proc.poll() is not None:
                self.reconciler.died += 1
                self.reconciler.run()
                continue
            rss = _rss_mib(proc.pid)
            if rss is not None:
                self.samples.append((time.time(), proc.pid, rss))

    def growth(self, warmup: float) -> tuple[float, float, bool]:
        """RSS after warm-up and at the end of the last process's life; grew: by more than a
        quarter (and 20 MiB), not counting the first `warmup` seconds of that process."""
        if not self.samples:
            return 0.0, 0.0, False
        last_pid = self.samples[-1][1]
        mine = [(t, rss) for t, pid, rss in self.samples if pid == last_pid]
        born = mine[0][0]
        settled = [rss for t, rss in mine if t - born >= warmup] or [mine[-1][1]]
        start = statistics.median(settled[:5])
        end = statistics.median(settled[-5:])
        return start, end, end > start * 1.25 and end - start > 20


DRAIN = 30.0
"""Seconds the reconciler has to drain after SIGTERM."""


def _terminate(reconciler: Reconciler) -> int | None:
    """SIGTERM, and its exit status; None if it hung (its stacks dumped, then killed)."""
    proc = reconciler.proc
    assert proc is not None
    proc.terminate()
    try:
        return proc.wait(DRAIN)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        proc.kill()
        proc.wait(10)
        return None


def _schedule(duration: float, faults: Faults, gcs_down: float) -> list[tuple[float, str,
                                                                            Callable[[], None]]]:
    return [
        (0.15 * duration, "firestore_crash", lambda: faults.firestore_crash(down=5.0)),
        (0.30 * duration, "gcs_down", lambda: faults.gcs_down(gcs_down)),
        (0.50 * duration, "reconciler_kill", faults.reconciler_kill),
        (0.58 * duration, "burst", lambda: faults.burst(500)),
    ]


def soak(duration: float, broken: str | None, seed: int, console: Console) -> dict[str, Any]:
    timing = Timing(stale=timedelta(seconds=STALE), settle=timedelta(seconds=SETTLE),
                    sweep=timedelta(seconds=SWEEP), stitch=timedelta(seconds=STALE),
                    patience=PATIENCE)
    quiet = STALE + SWEEP + SETTLE + 15  # the bound as written: a slow run is judged by patience
    if duration < quiet + 40:
        raise SystemExit(f"--duration must be at least {quiet + 40:.0f} s")
    with tempfile.TemporaryDirectory(prefix="reel-soak-") as tmp:
        workdir = Path(tmp)
        emulators = Emulators(firestore_emulator(workdir),
                              fake_gcs_server(workdir, root=workdir / "gcs"))
        emulators.gcs.start()
        emulators.firestore.start()
        os.environ.update(emulators.env())
        try:
            return _run(duration, broken, seed, console, timing, quiet, workdir, emulators)
        finally:
            emulators.firestore.stop()
            emulators.gcs.stop()


def _run(duration: float, broken: str | None, seed: int, console: Console, timing: Timing,
         quiet: float, workdir: Path, emulators: Emulators) -> dict[str, Any]:
    world = World.create(emulators.gcp_project, bucket="reel-soak")
    history = History(world)
    history.start()
    port = free_port()
    env = {**os.environ, **emulators.env(), "REEL_BUCKET": world.bucket,
           "REEL_STITCH_TIMEOUT": f"{STALE:g}s"}
    log = (workdir / "watch.log").open("ab")
    args = ["--settle", f"{SETTLE:g}s", "--stale-timeout", f"{STALE:g}s", "--stale-interval",
            f"{STALE_INTERVAL:g}s", "--sweep-interval", f"{SWEEP:g}s", "--metrics-port",
            str(port), "--log-format", "json", "--request-timeout", "5", "--retry-deadline", "5"]

    # The broken reconcilers are the product wrapped by a test double, in its own process.
    entry = ["tests.soak.broken", broken] if broken else ["reel_reconciler.cli"]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", *entry, "watch", *args],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    reconciler = Reconciler(start)
    reconciler.run()
    app = ReelApp(world, AppTiming(window=0.05, per_prompt=0.4, exists_check=0.1))
    workload = Workload(app, STALE, seed)
    faults = Faults(app, history, emulators.firestore, emulators.gcs, reconciler, workdir,
                    emulators.gcp_project)
    sampler = Sampler(reconciler)
    sampler.start()
    began = time.time()
    episodes = threading.Thread(target=workload.run, args=(began + duration - quiet,),
                                daemon=True, name="soak-workload")
    episodes.start()
    for at, kind, inject in _schedule(duration, faults, gcs_down=min(30.0, duration / 8)):
        time.sleep(max(0.0, began + at - time.time()))
        console.print(f"[{time.time() - began:5.1f} s] fault: {kind}")
        sampler.paused.set()
        try:
            inject()
        finally:
            sampler.paused.clear()
    episodes.join(timeout=max(1.0, began + duration - time.time()))
    time.sleep(max(0.0, began + duration - time.time()))
    sampler.stopped.set()
    sampler.join(5)
    code = _terminate(reconciler)
    log.close()
    lines = (workdir / "watch.log").read_text(errors="replace").splitlines()
    conflicts = sum(1 for line in lines if "write conflict" in line)
    logged = sum(1 for record in map(_record, lines) if record.get("logger") == CHANGES
                 and record.get("document") == "project" and record.get("outcome") == "written")
    history.stop()
    end = datetime.now(UTC)
    objects = _objects(world, workdir)
    stuck = [*workload.stuck, *faults.stuck]
    verdict = check(history, timing, stuck, objects, faults.outages, end)
    if reconciler.died:
        verdict.flag("crashed", f"the reconciler exited {reconciler.died} time(s) on its own")
    if code is None:
        verdict.flag("crashed", f"the reconciler did not exit within {DRAIN}s of SIGTERM "
                     "(its threads' stacks are in watch.log)")
    elif code != 0:
        verdict.flag("crashed", f"the reconciler exited {code} on SIGTERM")
    if verdict.writes < 0.9 * logged:
        verdict.flag("history_gap", f"the reconciler logged {logged} corrections, the "
                     f"history saw {verdict.writes}")
    _keep(workdir, history, verdict, stuck)
    rss_start, rss_end, grew = sampler.growth(warmup=20.0)
    if grew:
        verdict.flag("rss_growth", f"{rss_start:.0f} MiB after warm-up, {rss_end:.0f} at the end")
    return _summary(duration, workload, faults, verdict, rss_start, rss_end, history, broken,
                    conflicts)


def _record(line: str) -> dict[str, Any]:
    """One JSON log line; {} for anything else (a stack dump, a line cut by a kill)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


ARTIFACTS = REPO / ".cache" / "soak"


def _objects(world: World, workdir: Path) -> dict[str, datetime]:
    """Every object in the bucket with its creation time. A bucket fake-gcs-server lost
    across its restart is a fault of the stand-in, said in one line, its log kept."""
    try:
        return {blob.name: blob.time_created for blob in world.gcs.list_blobs(world.bucket)}
    except NotFound:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(workdir / "fake-gcs-server.log", ARTIFACTS / "fake-gcs-server.log")
        raise SystemExit(f"soak: fake-gcs-server lost the bucket {world.bucket!r} (restarted "
                         f"by the gcs_down fault); its log: {ARTIFACTS / 'fake-gcs-server.log'}"
                         ) from None


def _keep(workdir: Path, history: History, verdict: Verdict, stuck: list[Stuck]) -> None:
    """The reconciler's log and the history of each project named in a violation, for a
    reader of the run; the rest of the work folder goes with the run."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(workdir / "watch.log", ARTIFACTS / "watch.log")
    named = {example.split(": ", 2)[1].split(" ", 1)[0] for example in verdict.examples}
    with (ARTIFACTS / "history.jsonl").open("w") as out:
        for event in stuck:
            if event.project_id in named:
                out.write(json.dumps({"stuck": event.project_id, "at": str(event.at),
                                      "kind": event.kind}) + "\n")
        for project_id in sorted(named):
            for version in history.versions("projects", project_id):
                out.write(json.dumps({"id": project_id, "updateTime": str(version.update_time),
                                      "data": version.data}, default=str) + "\n")
            for job_id in history.documents("jobs"):
                for version in history.versions("jobs", job_id):
                    if (version.data or {}).get("projectId") == project_id:
                        out.write(json.dumps({"job": job_id, "updateTime":
                                              str(version.update_time), "data": version.data},
                                             default=str) + "\n")


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _summary(duration: float, workload: Workload, faults: Faults, verdict: Verdict,
             rss_start: float, rss_end: float, history: History, broken: str | None,
             conflicts: int) -> dict[str, Any]:
    return {
        "durationSeconds": round(duration),
        "generations": workload.generations,
        "outcomes": dict(workload.outcomes),
        "abortedByFaults": sum(workload.aborted.values()),
        "faults": dict(faults.counts),
        "corrections": verdict.writes,
        "conflicts": conflicts,
        "versionsRecorded": history.count(),
        "healSeconds": {"p50": _percentile(verdict.heal_seconds, 0.5),
                        "p99": _percentile(verdict.heal_seconds, 0.99)},
        "violations": {name: verdict.violations[name] for name in INVARIANTS},
        "examples": verdict.examples,
        "rssMiB": {"start": round(rss_start, 1), "end": round(rss_end, 1)},
        "broken": broken,
        "patience": PATIENCE,
    }


def _table(result: dict[str, Any]) -> Table:
    table = Table(title="soak", title_justify="left")
    table.add_column("figure")
    table.add_column("value")
    for key in ("durationSeconds", "generations", "outcomes", "abortedByFaults", "faults",
                "corrections", "versionsRecorded", "healSeconds", "violations", "rssMiB"):
        table.add_row(key, json.dumps(result[key]))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak.run", description=__doc__)
    parser.add_argument("--duration", type=float,
                        default=float(os.environ.get("SOAK_DURATION", "600")),
                        help="seconds (default: SOAK_DURATION or 600)")
    parser.add_argument("--broken", choices=sorted(BREAKS), default=None,
                        help="run a deliberately broken reconciler (the checker's own test): "
                        "exits 0 only if the checker catches it")
    parser.add_argument("--seed", type=int, default=7, help="the workload's random seed")
    args = parser.parse_args(argv)
    console = Console(stderr=True, highlight=False)
    result = soak(args.duration, args.broken, args.seed, console)
    console.print(_table(result))
    for example in result["examples"]:
        console.print(f"  {example}")
    print(json.dumps({k: v for k, v in result.items() if k != "examples"}))
    if args.broken is not None:
        caught = result["violations"][CAUGHT_BY[args.broken]] > 0
        print(f"soak, {args.broken} broken: {int(caught)} passed, {int(not caught)} failed"
              f" ({CAUGHT_BY[args.broken]} violations: "
              f"{result['violations'][CAUGHT_BY[args.broken]]})")
        return 0 if caught else 1
    bad = sum(1 for count in result["violations"].values() if count)
    print(f"soak: {len(result['violations']) - bad} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
