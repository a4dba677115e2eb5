"""The operator across a kube-apiserver restart it is not told about: its watch-stream and its
pooled connections die silently, and the timeouts alone bring it back."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from devkit.emulators import Emulators
from devkit.seed import World
from reel_reconciler import defaults
from reel_reconciler.operator.status import WRITE_ATTEMPTS
from tests.cluster.cluster import Cluster as ControlPlane
from tests.cluster.cluster import restart_apiserver, write_kubeconfig
from tests.support.harness import (
    GROUP,
    PLURAL,
    VERSION,
    Cluster,
    Operator,
    spec_for,
    start_operator,
    started,
    stop_operator,
    wait_for,
)
from tests.support.netfault import StallingProxy
from tests.support.patience import bound

pytestmark = pytest.mark.cluster

RECOVERY = (defaults.WATCH_CLIENT_TIMEOUT + defaults.KUBE_CONNECT_TIMEOUT
            + WRITE_ATTEMPTS * defaults.KUBE_REQUEST_TIMEOUT).total_seconds() + 20
"""From the moment the connections go quiet: the watch-stream given up on, a new one opened,
a status write that may first meet every dead pooled connection, and 20 s for the apiserver
to come back, Kopf's reconnect backoff and the reconciler's own restart."""


def _through(proxy: StallingProxy, cluster: Cluster, directory: Path) -> Cluster:
    """The same ServiceAccount, reaching the apiserver through the proxy."""
    config = json.loads(cluster.kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    path = write_kubeconfig(directory / "through-proxy.kubeconfig", config)
    return dataclasses.replace(cluster, kubeconfig=path)


def _suspended(op: Operator, name: str, generation: int) -> bool:
    ready = op.condition(name, "Ready") or {}
    return bool(ready.get("reason") == "Suspended"
                and ready.get("observedGeneration") == generation)


def test_a_spec_change_after_a_silent_apiserver_restart_is_seen(
        cluster: Cluster, kube_cluster: ControlPlane, emulators: Emulators, world: World,
        tmp_path: Path) -> None:
    """The operator reaches the apiserver through a proxy that, like a load balancer losing
    its backends, keeps its clients' connections open but silent when the apiserver restarts.
    `suspend: true` set afterwards must show in Ready within RECOVERY.

    It can fail in two ways, each a real hang. The watch-stream opened before the restart
    never ends by itself: the apiserver's close at server_timeout is lost with the flow, so
    without watching.client_timeout (and on a Kopf older than 1.44, which has no inactivity
    timeout) the operator never hears of the change. And the status write that follows goes
    out first on the connection the client pooled before the restart, which the proxy froze:
    without a request timeout it waits forever. Loopback alone cannot show either: the
    kernel closes both ends at once there, and a closed stream is reopened at once.
    """
    server = urllib.parse.urlsplit(kube_cluster.server)
    assert server.hostname is not None
    assert server.port is not None
    proxy = StallingProxy(server.hostname, server.port).start()
    op = start_operator(_through(proxy, cluster, tmp_path), emulators.env(),
                        tmp_path / "operator.log", "--standalone")
    try:
        op.create("main", spec_for(world))
        started(op, "main")
        before = kube_cluster.pids["kube-apiserver"]
        frozen = proxy.stall()
        stalled = time.monotonic()
        restart_apiserver(kube_cluster)
        assert kube_cluster.pids["kube-apiserver"] != before
        # The watch-stream and the status writer's pooled connection, at least.
        assert frozen >= 2, f"only {frozen} connection(s) went through the proxy"

        patched: Any = op.api.patch_namespaced_custom_object(
            GROUP, VERSION, op.namespace, PLURAL, "main", {"spec": {"suspend": True}})
        generation = patched["metadata"]["generation"]
        wait_for(lambda: _suspended(op, "main", generation), RECOVERY,
                 lambda: f"Ready=False/Suspended for generation {generation}\n{op.logs()}")
        assert time.monotonic() - stalled < bound(RECOVERY)
        assert op.proc.poll() is None, "the operator must not exit"
    finally:
        stop_operator(op)
        proxy.close()
