"""The operator end to end: a real kube-apiserver, the shipped CRD and RBAC, the operator as a
subprocess authenticated as the shipped ServiceAccount, and the real emulators."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client

from devkit.app import ReelApp
from devkit.emulators import Emulators, firestore_emulator
from devkit.notifications import Notifications
from devkit.seed import World
from reel_reconciler import defaults
from tests.support.harness import (
    GROUP,
    PLURAL,
    REPO,
    VERSION,
    Cluster,
    Operator,
    metric,
    spec_for,
    start_operator,
    started,
    stop_operator,
    wait_for,
)
from tests.support.patience import bound, holds

pytestmark = pytest.mark.cluster


@pytest.fixture
def operator(cluster: Cluster, emulators: Emulators,
             # A fixture cannot take usefixtures: requested so that the emulators are reset
             # before the operator starts, not under its listeners.
             world: World,  # noqa: ARG001
             tmp_path: Path) -> Iterator[Operator]:
    handle = start_operator(cluster, emulators.env(), tmp_path / "operator.log", "--standalone")
    try:
        yield handle
    finally:
        stop_operator(handle)


def test_a_deleted_clip_heals_through_storage_notifications(
        cluster: Cluster, emulators: Emulators, notified: tuple[World, Notifications],
        tmp_path: Path) -> None:
    """Sweeps an hour apart: only the bucket's notifications can bring the deletion. A
    subscription deleted while the operator runs shows in ListenerHealthy, which recovers
    once the subscription is back."""
    world, notes = notified
    env = {**emulators.env(), "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"],
           "PUBSUB_EMULATOR_HOST": notes.pubsub.host}
    op = start_operator(cluster, env, tmp_path / "operator.log", "--standalone")
    try:
        spec = spec_for(world)
        spec["storage"]["notifications"] = {"subscription": notes.path}
        op.create("main", spec)
        started(op, "main")
        _, paths = world.generated_project("p-ready", status="ready", prompts=2, in_gcs=2,
                                           in_db=2)
        mine = {"reconciler": f"{op.namespace}.main"}
        wait_for(lambda: metric(op.metrics(), "reel_reconciler_notifications_total",
                                event_type="OBJECT_FINALIZE", outcome="queued", **mine) >= 2,
                 15, lambda: f"the uploads' notifications\n{op.logs()}")
        world.gcs.bucket(world.bucket).blob(paths[1]).delete()
        wait_for(lambda: world.project("p-ready")["clipFilenames"][1] is None, 15,
                 lambda: f"the deletion to heal\n{op.logs()}")
        notes.delete_subscription()
        wait_for(lambda: (op.condition("main", "ListenerHealthy") or {}).get("reason")
                 == "SubscriptionMissing", 30,
                 lambda: f"ListenerHealthy to name the missing subscription\n{op.logs()}")
        notes.create_subscription()
        wait_for(lambda: op.condition_is("main", "ListenerHealthy", "True"), 60,
                 lambda: f"ListenerHealthy back once the subscription is\n{op.logs()}")
    finally:
        stop_operator(op)


def test_stuck_project_is_corrected_by_the_listener_within_5s(operator: Operator,
                                                              world: World) -> None:
    operator.create("main", spec_for(world))
    started(operator, "main")
    _, paths = world.generated_project("p-9f1c2e", status="generating", prompts=3, in_gcs=3,
                                       in_db=0, job_status="failed")
    written = time.monotonic()
    wait_for(lambda: world.project("p-9f1c2e")["status"] == "ready", 5,
             f"the listener to correct the project\n{operator.logs()}")
    assert time.monotonic() - written < bound(5)
    assert world.project("p-9f1c2e")["clipFilenames"] == paths
    text = operator.metrics()
    mine = {"reconciler": f"{operator.namespace}.main"}
    assert metric(text, "reel_reconciler_reconcile_total", trigger="listener",
                   action="corrected", **mine) >= 1
    assert metric(text, "reel_reconciler_corrections_total", kind="restored_clip", **mine) >= 1
    assert metric(text, "reel_reconciler_recovered_video_seconds_total", **mine) == 3 * 8
    for listener in ("projects", "jobs", "heartbeat"):
        assert metric(text, "reel_reconciler_listener_up", listener=listener, **mine) == 1
        assert metric(text, "reel_reconciler_listener_last_event_timestamp_seconds",
                       listener=listener, **mine) > 0
    assert metric(text, "reel_reconciler_gcs_requests_total", op="list", outcome="ok",
                   **mine) >= 1
    # listener events are reconciled in batches: one read for the batch, then its commit (a
    # batch with one correction writes it alone)
    def made(op: str) -> float:
        return metric(text, "reel_reconciler_firestore_requests_total", op=op, outcome="ok",
                      **mine)

    assert made("get_projects") >= 1
    assert made("update_projects") + made("update_project") >= 1
    assert "reel_reconciler_queue_depth{" in text
    assert "p-9f1c2e" not in text, "ids must never be metric labels"
    assert "user-1" not in text, "ids must never be metric labels"
    ready = requests.get(f"http://127.0.0.1:{operator.metrics_port}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["reconcilers"] == 1


def test_annotations_force_reconciles_and_report(operator: Operator, world: World) -> None:
    _, paths = world.generated_project("behind", status="ready", prompts=3, in_gcs=3, in_db=3)
    operator.create("main", spec_for(world))
    started(operator, "main")
    world.delete_object(paths[1])

    operator.annotate("main", "reelmaker.io/reconcile-projects", "behind,no-such-project")
    wait_for(lambda: world.project("behind")["status"] == "draft", 15,
             f"the annotation to correct the project\n{operator.logs()}")
    messages = wait_for(lambda: operator.events("ProjectsReconciled") or None, 15, "events")
    assert messages == ["2 project(s) reconciled: corrected 1, error 1; see "
                        "status.lastProjectReports"], "one Event per request"
    reports = wait_for(lambda: operator.get("main")["status"].get("lastProjectReports"), 10,
                       "reports in status")
    assert [r["projectId"] for r in reports] == ["behind", "no-such-project"]
    assert [r["action"] for r in reports] == ["corrected", "error"]

    operator.annotate("main", "reelmaker.io/reconcile-requested-at", "2026-11-24T10:00:00Z")
    wait_for(lambda: operator.get("main")["status"].get("lastHandledReconcileAt")
             == "2026-11-24T10:00:00Z", 20, f"the echo\n{operator.logs()}")
    assert operator.get("main")["status"]["lastSweep"]["scanned"] == 1


def test_a_project_whose_corrections_are_undone_is_one_event_not_a_war(
        operator: Operator, world: World) -> None:
    """Another writer puts the project back after each correction: after two, one
    ProjectFlapping Event, however often it goes on; corrections themselves post none."""
    world.generated_project("p-flap", status="generating", prompts=2, in_gcs=2, in_db=0,
                            job_status="failed")
    operator.create("main", spec_for(world, flapping={"corrections": 2, "hold": "1h"}))
    started(operator, "main")
    app = ReelApp(world)
    back = {"status": "generating", "clipFilenames": []}
    for _ in (1, 2):
        wait_for(lambda: world.project("p-flap")["status"] == "ready", 30,
                 lambda: f"a correction\n{operator.logs()}")
        app.update_project("p-flap", back)
    messages = wait_for(lambda: operator.events("ProjectFlapping") or None, 30,
                        lambda: f"the flapping Event\n{operator.logs()}")
    assert len(messages) == 1, messages
    assert messages[0].startswith("project p-flap: flapping: "), messages
    mine = {"reconciler": f"{operator.namespace}.main"}

    def held() -> float:
        return metric(operator.metrics(), "reel_reconciler_drift_detected_total",
                      kind="flapping", **mine)

    seen = held()
    app.update_project("p-flap", back)
    wait_for(lambda: held() > seen, 30, lambda: f"the next look at p-flap\n{operator.logs()}")
    assert world.project("p-flap")["status"] == "generating", "held, not fought"
    text = operator.metrics()
    assert metric(text, "reel_reconciler_flapping_holds_total", **mine) == 1
    assert metric(text, "reel_reconciler_reconcile_total", action="corrected", **mine) == 2
    assert len(operator.events("ProjectFlapping")) == 1
    assert operator.events("ProjectsReconciled") == []


def test_sweep_timer_finds_clip_deleted_behind_ready_project(operator: Operator,
                                                             world: World) -> None:
    _, paths = world.generated_project("behind", status="ready", prompts=2, in_gcs=2, in_db=2)
    world.delete_object(paths[0])
    operator.create("swept", spec_for(world, sweep={"interval": "2s"}))
    started(operator, "swept")
    wait_for(lambda: world.project("behind")["clipFilenames"] == [None, paths[1]], 20,
             f"the sweep timer\n{operator.logs()}")
    summary = wait_for(lambda: operator.get("swept")["status"].get("lastSweep"), 10, "summary")
    assert summary["scanned"] >= 1


def test_observe_mode_reports_drift_and_writes_nothing(operator: Operator,
                                                       world: World) -> None:
    world.generated_project("stuck", status="generating", prompts=2, in_gcs=2, in_db=0,
                            job_status="failed")
    before = world.update_time("stuck")
    operator.create("watcher", spec_for(world, mode="Observe", sweep={"interval": "2s"}))
    started(operator, "watcher")
    wait_for(lambda: operator.condition_is("watcher", "Drifted", "True"), 20,
             f"Drifted=True\n{operator.logs()}")
    drifted = operator.condition("watcher", "Drifted")
    assert drifted is not None
    assert drifted["reason"] == "DriftFound"
    assert world.update_time("stuck") == before
    assert "reel_reconciler_drift_detected_total" in operator.metrics()


def test_configuration_errors_become_conditions_not_crashes(operator: Operator,
                                                            world: World) -> None:
    operator.create("nobucket", spec_for(world, storage={"bucket": "no-such-bucket-here"}))
    wait_for(lambda: operator.condition_is("nobucket", "Ready", "False"), 30,
             f"Ready=False\n{operator.logs()}")
    ready = operator.condition("nobucket", "Ready")
    assert ready is not None
    assert ready["reason"] == "ConnectFailed"
    assert "does not exist" in ready["message"]
    assert operator.proc.poll() is None, "the operator must not crash"
    with pytest.raises(client.ApiException) as rejected:
        operator.create("badmode", spec_for(world, mode="Sometimes"))
    assert rejected.value.status == 422


def test_suspend_stops_all_work(operator: Operator, world: World) -> None:
    operator.create("paused", spec_for(world, suspend=True))
    wait_for(lambda: operator.condition_is("paused", "Ready", "False"), 30, "Suspended")
    assert operator.condition("paused", "Ready")["reason"] == "Suspended"  # type: ignore[index]
    world.generated_project("stuck", status="generating", prompts=1, in_gcs=1, in_db=0,
                            job_status="failed", job_created_ago=timedelta(hours=1))
    holds(lambda: world.project("stuck")["status"] == "generating", 3,
          "a suspended reconciler leaving the stuck project alone")
    operator.api.patch_namespaced_custom_object(GROUP, VERSION, operator.namespace, PLURAL,
                                                "paused", {"spec": {"suspend": False}})
    wait_for(lambda: world.project("stuck")["status"] == "ready", 30,
             f"the resumed listener\n{operator.logs()}")


def test_firestore_outage_restarts_listeners_and_recovers(
        cluster: Cluster, emulators: Emulators, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Firestore down while the operator runs: the refused streams end, the listeners go
    unhealthy, are restarted, recover, and a project written afterwards heals."""
    fs = firestore_emulator(tmp_path)
    fs.start()
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", fs.host)
    world = World.create(emulators.gcp_project)
    env = {**emulators.env(), "FIRESTORE_EMULATOR_HOST": fs.host,
           "REEL_RETRY_DEADLINE": "2", "REEL_REQUEST_TIMEOUT": "2"}
    op = start_operator(cluster, env, tmp_path / "operator.log", "--standalone")
    try:
        op.create("main", spec_for(world, listeners={"heartbeatInterval": "1s",
                                                     "silenceThreshold": "4s"}))
        started(op, "main")
        restarts_before = metric(op.metrics(), "reel_reconciler_listener_restarts_total")
        fs.stop()
        wait_for(lambda: op.condition_is("main", "ListenerHealthy", "False"), 30,
                 f"ListenerHealthy=False\n{op.logs()}")
        readyz = f"http://127.0.0.1:{op.metrics_port}/readyz"
        assert requests.get(readyz, timeout=5).status_code == 503
        time.sleep(2)
        fs.start()
        wait_for(lambda: op.condition_is("main", "ListenerHealthy", "True"), 60,
                 f"ListenerHealthy=True again\n{op.logs()}")
        restarts = metric(op.metrics(), "reel_reconciler_listener_restarts_total",
                           reason="closed")
        assert restarts > restarts_before
        assert requests.get(readyz, timeout=5).status_code == 200
        world = World.create(emulators.gcp_project, bucket=world.bucket)
        world.generated_project("after", status="generating", prompts=2, in_gcs=2, in_db=0,
                                job_status="failed")
        wait_for(lambda: world.project("after")["status"] == "ready", 15,
                 f"the project written after the restart\n{op.logs()}")
    finally:
        stop_operator(op)
        fs.stop()


def test_two_replicas_one_active_and_failover(cluster: Cluster, emulators: Emulators,
                                              world: World, tmp_path: Path) -> None:
    """Kopf peering: the higher priority replica works, the other waits; when the active one
    is killed without a goodbye, the other takes over within a minute."""
    peering: Any = client.CustomObjectsApi(cluster.api)
    peering.create_namespaced_custom_object(
        "kopf.dev", "v1", cluster.namespace, "kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
         "metadata": {"name": "reel-reconciler", "namespace": cluster.namespace}})
    args = ("--peering", "reel-reconciler")
    active = start_operator(cluster, emulators.env(), tmp_path / "active.log", *args,
                            "--priority", "200")
    standby: Operator | None = None
    try:
        active.create("main", spec_for(world))
        started(active, "main")
        standby = start_operator(cluster, emulators.env(), tmp_path / "standby.log", *args,
                                 "--priority", "100")
        # Both replicas are registered in the peering object; a standby that sees a higher
        # priority at its first look starts paused (Kopf logs nothing for that case).
        wait_for(lambda: len(peering.get_namespaced_custom_object(
            "kopf.dev", "v1", cluster.namespace, "kopfpeerings", "reel-reconciler")
            .get("status", {})) == 2, 60, "both replicas in the peering object")
        world.generated_project("first", status="generating", prompts=1, in_gcs=1, in_db=0,
                                job_status="failed")
        wait_for(lambda: world.project("first")["status"] == "ready", 10, "the active replica")
        assert '"projectId": "first"' in active.logs()
        assert '"projectId": "first"' not in standby.logs()

        active.proc.kill()
        killed = time.monotonic()
        world.generated_project("second", status="generating", prompts=1, in_gcs=1, in_db=0,
                                job_status="failed")
        wait_for(lambda: world.project("second")["status"] == "ready", 75,
                 f"the standby to take over\n{standby.logs()}")
        assert time.monotonic() - killed < 60
        # The log line follows the write it reports: it may land a moment after.
        wait_for(lambda: '"projectId": "second"' in standby.logs(), 10,
                 "the standby's log of its correction")
    finally:
        if standby is not None:
            stop_operator(standby)
        if active.proc.poll() is None:
            active.proc.kill()


def test_crd_defaults_validation_and_example(cluster: Cluster, kubectl: Path,
                                             kube_cluster: Any) -> None:
    """The shipped CRD: server-side defaults fill an almost empty spec, bad specs get 422,
    and the shipped example is accepted (server-side dry run)."""
    api = client.CustomObjectsApi(cluster.api)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ReelReconciler",
            "metadata": {"name": "minimal"}, "spec": {"storage": {"bucket": "reels-bucket"}}}
    created: Any = api.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL,
                                                  body)
    spec = created["spec"]
    assert spec["mode"] == "Enforce"
    assert spec["settle"] == "30s"
    assert spec["concurrency"] == 8
    assert spec["rateLimit"] == 500
    assert spec["sweep"] == {"interval": "30m", "fullEvery": "24h",
                             "ranges": defaults.SWEEP_RANGES,
                             "parallel": defaults.SWEEP_PARALLEL}
    assert spec["staleJobs"] == {"interval": "5m", "timeout": "30m"}
    assert spec["firestore"]["projectsCollection"] == "reel_maker_projects"
    bad: dict[str, Any]
    for bad in ({"storage": {}}, {"storage": {"bucket": "b" * 3}, "sweep": {"interval": "soon"}},
                {"storage": {"bucket": "reels-bucket"}, "concurrency": 0},
                {"storage": {"bucket": "reels-bucket"}, "rateLimit": 0}):
        with pytest.raises(client.ApiException) as rejected:
            api.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, {
                **body, "metadata": {"name": "bad"}, "spec": bad})
        assert rejected.value.status == 422
    dry = subprocess.run([str(kubectl), "--kubeconfig", str(kube_cluster.kubeconfig), "apply",
                          "--dry-run=server", "-f", "deploy/examples/reelreconciler.yaml"],
                         cwd=REPO, capture_output=True, text=True, check=False)
    assert dry.returncode == 0, dry.stderr
    printed = subprocess.run([str(kubectl), "--kubeconfig", str(kube_cluster.kubeconfig), "get",
                              "rr", "-n", cluster.namespace], capture_output=True, text=True,
                             check=False)
    assert printed.returncode == 0, printed.stderr
    header = printed.stdout.splitlines()[0].split()
    assert header[:4] == ["NAME", "MODE", "READY", "DRIFTED"]


def test_stale_job_timer_fails_silent_jobs_and_heals_their_projects(operator: Operator,
                                                                    world: World) -> None:
    job, paths = world.generated_project("crashed", status="generating", prompts=2, in_gcs=2,
                                         in_db=0, job_status="processing",
                                         job_updated_ago=timedelta(hours=2))
    operator.create("janitor", spec_for(world, staleJobs={"interval": "2s", "timeout": "30m"}))
    started(operator, "janitor")
    wait_for(lambda: world.job(job)["status"] == "failed", 20,
             f"the stale-job timer\n{operator.logs()}")
    assert world.job(job)["error"] == "Job timed out after 30 minutes"
    wait_for(lambda: world.project("crashed")["clipFilenames"] == paths, 10, "the project")
    summary = wait_for(lambda: operator.get("janitor")["status"].get("lastStaleJobCleanup"),
                       10, "the cleanup summary")
    assert summary["staleJobs"] >= 1
