"""Helpers for the operator tests: run it as a subprocess, read its CRs, metrics and logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
from kubernetes import client

from devkit.emulators import free_port
from devkit.seed import World
from tests.support import patience

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "reelmaker.io", "v1", "reelreconcilers"
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float,
             what: str | Callable[[], str]) -> T:
    """`patience.wait_for`, with the Kubernetes API's errors counted as "not yet"."""
    return patience.wait_for(check, timeout, what,
                             retry_on=(AssertionError, KeyError, client.ApiException))


@dataclass
class Operator:
    namespace: str
    api: client.CustomObjectsApi
    core: client.CoreV1Api
    metrics_port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def create(self, name: str, spec: dict[str, Any]) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ReelReconciler",
                "metadata": {"name": name, "namespace": self.namespace}, "spec": spec}
        self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def get(self, name: str) -> dict[str, Any]:
        obj: Any = self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                         PLURAL, name)
        return obj

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        conditions = self.get(name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), None)

    def condition_is(self, name: str, kind: str, status: str) -> bool:
        found = self.condition(name, kind)
        return found is not None and found["status"] == status

    def annotate(self, name: str, key: str, value: str) -> None:
        self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name,
            {"metadata": {"annotations": {key: value}}})

    def events(self, reason: str) -> list[str]:
        found = self.core.list_namespaced_event(self.namespace)
        return [e.message or "" for e in found.items if e.reason == reason]

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def logs(self) -> str:
        return self.log.read_text()[-5000:]


@dataclass
class Cluster:
    """The namespace and the shipped ServiceAccount's kubeconfig an operator runs with."""

    namespace: str
    kubeconfig: Path
    api: client.ApiClient


def start_operator(cluster: Cluster, env: dict[str, str], log: Path,
                   *args: str) -> Operator:
    """The operator as the container runs it, authenticated as the shipped ServiceAccount."""
    metrics_port = free_port()
    full_env = {**os.environ, **env, "KUBECONFIG": str(cluster.kubeconfig)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reel_reconciler.cli", "operator",
             "--namespace", cluster.namespace,
             "--metrics-port", str(metrics_port), "--health-port", str(free_port()),
             "--log-format", "json", *args],
            cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    return Operator(cluster.namespace, client.CustomObjectsApi(cluster.api),
                    client.CoreV1Api(cluster.api), metrics_port, proc, log)


def stop_operator(op: Operator) -> None:
    if op.proc.poll() is not None:
        return
    op.proc.send_signal(signal.SIGTERM)
    try:
        op.proc.wait(timeout=patience.bound(30))
        return
    except subprocess.TimeoutExpired:
        op.proc.kill()
        op.proc.wait()
    # Raised out here, so that a test failure this stops after stays in the report.
    raise AssertionError(f"operator ignored SIGTERM:\n{op.logs()}")


def spec_for(world: World, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "firestore": {"projectsCollection": world.projects_collection,
                      "jobsCollection": world.jobs_collection},
        "storage": {"bucket": world.bucket},
        "settle": "0s",
        "sweep": {"interval": "1h"},
        "listeners": {"heartbeatInterval": "1s", "silenceThreshold": "6s"},
    }
    spec.update(overrides)
    return spec


def started(op: Operator, name: str) -> None:
    """Ready=True for the spec just written (a Ready left from the generation before, not
    yet replaced by a Suspended one, does not count), then a first heartbeat."""

    def ready_now() -> bool:
        found = op.condition(name, "Ready")
        return (found is not None and found["status"] == "True"
                and found.get("observedGeneration") == op.get(name)["metadata"]["generation"])

    wait_for(ready_now, 60, lambda: f"Ready=True for the current generation of {name}\n"
                                    f"{op.logs()}")
    wait_for(lambda: op.condition_is(name, "ListenerHealthy", "True"), 30,
             f"ListenerHealthy=True on {name}\n{op.logs()}")


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
