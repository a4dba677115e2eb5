"""`helm uninstall` of a release with its own ReelReconciler (reconciler.create) leaves nothing
Terminating. Kopf keeps a finalizer on every ReelReconciler it serves, and Helm deletes custom
resources after the operator's Deployment, ServiceAccount and RBAC: without the chart's
pre-delete hook nobody is left to remove it.

No kubelet or Job controller runs here, so the test plays both, as a cluster would: it runs
the hook Job's container command with the Job's ServiceAccount while Helm waits for the Job,
then records the Job as complete; and it stops the operator (SIGTERM) once Helm has deleted
its Deployment."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devkit.emulators import Emulators
from devkit.kubectl import find_helm
from devkit.seed import World
from reel_reconciler.operator import KOPF_FINALIZER
from tests.cluster.fixtures import api_client
from tests.e2e.released import (
    operator_ports,
    pod_env,
    start_deployed_operator,
    token_kubeconfig,
)
from tests.support.harness import (
    GROUP,
    PLURAL,
    REPO,
    VERSION,
    Operator,
    spec_for,
    started,
    stop_operator,
    wait_for,
)
from tests.support.patience import bound

pytestmark = pytest.mark.cluster
NAME = "main"


@dataclass
class Release:
    name: str
    namespace: str
    kube_cluster: Any
    api: client.ApiClient
    helm: Path

    @property
    def fullname(self) -> str:
        return f"{self.name}-reel-reconciler"

    def helm_args(self, *args: str) -> list[str]:
        return [str(self.helm), *args, "--namespace", self.namespace,
                "--kubeconfig", str(self.kube_cluster.kubeconfig)]

    def reconciler(self) -> dict[str, Any] | None:
        try:
            obj: Any = client.CustomObjectsApi(self.api).get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, NAME)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(obj)

    def finalizers(self) -> list[str]:
        return list(((self.reconciler() or {}).get("metadata") or {}).get("finalizers") or [])

    def exists(self, read: Any) -> bool:
        try:
            read()
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True


@pytest.fixture
def release(kube_cluster: Any) -> Iterator[Release]:
    """A release name and namespace; afterwards the namespace is deleted, and a
    ReelReconciler a failed test left behind is released first."""
    name = f"rr{uuid.uuid4().hex[:6]}"
    rel = Release(name, f"uninstall-{name}", kube_cluster, api_client(kube_cluster),
                  find_helm())
    yield rel
    if rel.reconciler() is not None:
        client.CustomObjectsApi(rel.api).patch_namespaced_custom_object(
            GROUP, VERSION, rel.namespace, PLURAL, NAME, {"metadata": {"finalizers": None}})
    core = client.CoreV1Api(rel.api)
    if rel.exists(lambda: core.read_namespace(rel.namespace)):
        core.delete_namespace(rel.namespace)


def install(rel: Release, world: World, tmp_path: Path, timeout_seconds: int) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "watchNamespaces": [rel.namespace],
        "reconciler": {"create": True, "name": NAME, "spec": spec_for(world),
                       "uninstallHook": {"timeoutSeconds": timeout_seconds}}}))
    done = subprocess.run(
        rel.helm_args("install", rel.name, "charts/reel-reconciler", "--create-namespace",
                      "--wait=false", "--values", str(values), *operator_ports()),
        cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def serving(rel: Release, emulators: Emulators, tmp_path: Path) -> Operator:
    """The chart's operator, running, with its finalizer on the chart's ReelReconciler."""
    op = start_deployed_operator(rel.kube_cluster, rel.api, rel.namespace, rel.fullname,
                                 emulators.env(), tmp_path / "operator.log")
    started(op, NAME)
    wait_for(lambda: KOPF_FINALIZER in rel.finalizers(), 30,
             lambda: f"Kopf's finalizer on the ReelReconciler\n{op.logs()}")
    return op


def run_hook_pod(rel: Release) -> str:
    """The hook Job's pod, played: its container command with its ServiceAccount's token.
    Returns what delete-reconciler reported (its last log record's outcome)."""
    batch = client.BatchV1Api(rel.api)
    job_name = f"{rel.fullname}-uninstall"
    job: Any = wait_for(lambda: batch.read_namespaced_job(job_name, rel.namespace), 60,
                   "helm to create the uninstall hook Job")
    pod = job.spec.template.spec
    [container] = pod.containers
    assert container.command[0] == "reel-reconciler"  # the console script: reel_reconciler.cli
    kubeconfig = token_kubeconfig(rel.kube_cluster, rel.namespace, pod.service_account_name)
    ran = subprocess.run(
        [sys.executable, "-m", "reel_reconciler.cli", *container.command[1:], *container.args],
        cwd=REPO, capture_output=True, text=True, check=False,
        env={**pod_env(container), "PATH": "/usr/bin:/bin", "KUBECONFIG": str(kubeconfig)},
        timeout=bound(2 * job.spec.active_deadline_seconds))
    assert ran.returncode == 0, ran.stderr
    records = [json.loads(line) for line in ran.stderr.splitlines() if line.startswith("{")]
    outcome = str(records[-1].get("outcome"))
    # What the Job controller records once the pod exits 0; Helm waits for it.
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [{"type": kind, "status": "True", "lastTransitionTime": now,
                   "lastProbeTime": now} for kind in ("SuccessCriteriaMet", "Complete")]
    batch.patch_namespaced_job_status(job_name, rel.namespace, {"status": {
        "startTime": now, "completionTime": now, "succeeded": 1, "conditions": conditions}})
    return outcome


def uninstall_with_hook(rel: Release, op: Operator) -> str:
    helm = subprocess.Popen(
        rel.helm_args("uninstall", rel.name, "--timeout", f"{int(bound(120))}s"),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        outcome = run_hook_pod(rel)
        # Helm deletes the Deployment; the kubelet would then stop the pod with SIGTERM.
        apps = client.AppsV1Api(rel.api)
        wait_for(lambda: not rel.exists(lambda: apps.read_namespaced_deployment(
            rel.fullname, rel.namespace)), 60, "helm to delete the operator's Deployment")
        stop_operator(op)
        output, _ = helm.communicate(timeout=bound(60))
    finally:
        if helm.poll() is None:
            helm.kill()
    assert helm.returncode == 0, output
    return outcome


def test_uninstall_while_the_operator_runs_lets_it_release_the_reconciler(
        release: Release, emulators: Emulators, world: World, tmp_path: Path) -> None:
    install(release, world, tmp_path, timeout_seconds=60)
    op = serving(release, emulators, tmp_path)
    try:
        outcome = uninstall_with_hook(release, op)
    finally:
        stop_operator(op)
    assert release.reconciler() is None, "the ReelReconciler outlived the uninstall"
    assert outcome == "released", f"the operator should have released it\n{op.logs()}"
    # The hook's own objects go once it succeeded, the release's with the uninstall.
    rbac, core = client.RbacAuthorizationV1Api(release.api), client.CoreV1Api(release.api)
    hook = f"{release.fullname}-uninstall"
    assert not release.exists(lambda: rbac.read_namespaced_role(hook, release.namespace))
    for account in (hook, release.fullname):
        assert not release.exists(lambda name=account: core.read_namespaced_service_account(
            name, release.namespace))


def test_uninstall_after_the_operator_stopped_still_removes_the_reconciler(
        release: Release, emulators: Emulators, world: World, tmp_path: Path) -> None:
    """The operator was already gone (scaled down, crash-looping): its finalizer stays on the
    object, and the hook removes it once the operator has not answered in timeoutSeconds."""
    install(release, world, tmp_path, timeout_seconds=2)
    op = serving(release, emulators, tmp_path)
    stop_operator(op)
    assert KOPF_FINALIZER in release.finalizers(), "Kopf left no finalizer: nothing to prove"
    outcome = uninstall_with_hook(release, op)
    assert release.reconciler() is None, "the ReelReconciler outlived the uninstall"
    assert outcome == "forced"


def test_without_the_hook_the_reconciler_is_left_terminating(
        release: Release, emulators: Emulators, world: World, tmp_path: Path) -> None:
    """What the hook prevents (`--no-hooks`), and the way out the chart README gives:
    `reel-reconciler delete-reconciler`."""
    install(release, world, tmp_path, timeout_seconds=60)
    op = serving(release, emulators, tmp_path)
    stop_operator(op)
    done = subprocess.run(release.helm_args("uninstall", release.name, "--no-hooks"),
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    stuck = release.reconciler()
    assert stuck is not None, stuck
    assert stuck["metadata"].get("deletionTimestamp"), stuck
    assert KOPF_FINALIZER in stuck["metadata"]["finalizers"]

    ran = subprocess.run(
        [sys.executable, "-m", "reel_reconciler.cli", "delete-reconciler", NAME,
         "-n", release.namespace, "--timeout", "1s", "--log-format", "json"],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=bound(30),
        env={"PATH": "/usr/bin:/bin", "KUBECONFIG": str(release.kube_cluster.kubeconfig)})
    assert ran.returncode == 0, ran.stderr
    assert release.reconciler() is None
