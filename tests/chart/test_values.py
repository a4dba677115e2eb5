"""The values users expect from a chart, each rendered with helm and read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reel_reconciler.cli.worker import parallel_of, subscription_of
from reel_reconciler.defaults import SWEEP_PARALLEL
from reel_reconciler.operator.main import build_parser
from tests.chart.rendering import ALL_ON, of_kind, run, template, template_error
from tools.manifests import CHART

SELECTOR = {"app.kubernetes.io/name": "reel-reconciler",
            "app.kubernetes.io/instance": "reel-reconciler"}


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = of_kind(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [operator] = pod_spec(docs)["containers"]
    return operator


def notes(helm: Path, *args: str) -> str:
    """NOTES.txt as `helm install` prints it (a client-side dry run needs no cluster)."""
    out = run(helm, "install", "reel-reconciler", CHART, "-n", "reel-reconciler",
              "--dry-run=client", *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("NOTES:", 1)[1]


def test_notes_warn_while_the_image_is_the_bare_default_name(helm: Path) -> None:
    assert "WARNING: image.repository is the bare name" in notes(helm)
    pushed = notes(helm, "--set", "image.repository=team/reel-reconciler")
    assert "WARNING" not in pushed
    assert "reconcile-requested-at" in pushed


def test_name_override_renames_objects_and_the_name_label(helm: Path) -> None:
    docs = template(helm, "--set", "nameOverride=reels")
    deployment = of_kind(docs, "Deployment")
    assert deployment["metadata"]["name"] == "reel-reconciler-reels"
    assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "reels"
    assert of_kind(docs, "Service")["spec"]["selector"]["app.kubernetes.io/name"] == "reels"


def test_fullname_override_names_every_object(helm: Path) -> None:
    docs = template(helm, "--set", "fullnameOverride=rr", "--set", "replicaCount=2")
    for kind in ("Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                 "PodDisruptionBudget", "ClusterKopfPeering"):
        assert of_kind(docs, kind)["metadata"]["name"] == "rr", kind
    assert of_kind(docs, "ConfigMap")["metadata"]["name"] == "rr-dashboard"
    assert "--peering=rr" in container(docs)["args"]
    assert pod_spec(docs)["serviceAccountName"] == "rr"


def test_common_labels_are_on_every_templated_object(helm: Path) -> None:
    """CRDs come from crds/, which Helm never templates: the only objects without them."""
    docs = [doc for doc in template(helm, *ALL_ON) if doc["kind"] != "CustomResourceDefinition"]
    assert len(docs) >= 12
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        assert labels.get("team") == "reels", f"{doc['kind']} {doc['metadata']['name']}"
        assert labels.get("cost-center") == "video", f"{doc['kind']} {doc['metadata']['name']}"
    pod_labels = of_kind(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["team"] == "reels"
    assert "team" not in of_kind(docs, "Deployment")["spec"]["selector"]["matchLabels"]


def test_topology_spread_constraints_default_to_the_pod_selector(helm: Path) -> None:
    [zone] = pod_spec(template(helm, *ALL_ON))["topologySpreadConstraints"]
    assert zone["topologyKey"] == "topology.kubernetes.io/zone"
    assert zone["labelSelector"] == {"matchLabels": SELECTOR}
    own = pod_spec(template(
        helm, "--set", "topologySpreadConstraints[0].maxSkew=2",
        "--set", "topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname",
        "--set", "topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule",
        "--set", "topologySpreadConstraints[0].labelSelector.matchLabels.tier=ops"))
    assert own["topologySpreadConstraints"] == [{
        "maxSkew": 2, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"tier": "ops"}}}]
    assert "topologySpreadConstraints" not in pod_spec(template(helm))


def test_extra_volumes_are_added_to_the_tmp_volume(helm: Path) -> None:
    docs = template(helm, *ALL_ON)
    assert [v["name"] for v in pod_spec(docs)["volumes"]] == ["tmp", "gcp-credentials",
                                                               "extra-ca"]
    assert pod_spec(docs)["volumes"][2]["configMap"] == {"name": "extra-ca"}
    assert container(docs)["volumeMounts"][2] == {
        "name": "extra-ca", "mountPath": "/etc/extra-ca", "readOnly": True}
    assert [v["name"] for v in pod_spec(template(helm))["volumes"]] == ["tmp"]


def test_env_from_reaches_the_operator_container(helm: Path) -> None:
    assert container(template(helm, *ALL_ON))["envFrom"] == [
        {"configMapRef": {"name": "reel-settings"}, "prefix": "REEL_"}]
    secret = container(template(helm, "--set", "operator.envFrom[0].secretRef.name=tokens"))
    assert secret["envFrom"] == [{"secretRef": {"name": "tokens"}}]
    assert "envFrom" not in container(template(helm))


def test_every_pod_works_sweep_ranges_from_the_work_subscription_when_given(
        helm: Path) -> None:
    """The operator reads the flags the chart renders: a bad one would crash-loop every pod."""
    subscription = "projects/p/subscriptions/reel-work"
    default = build_parser().parse_args(container(template(helm))["args"])
    assert default.work_subscription is None
    args = container(template(helm, "--set", f"operator.workSubscription={subscription}",
                              "--set", "operator.sweepParallel=2",
                              "--set", "replicaCount=2"))["args"]
    parsed = build_parser().parse_args(args)
    assert (subscription_of(parsed.work_subscription), parallel_of(parsed.sweep_parallel)) \
        == (subscription, 2)
    assert "--peering=reel-reconciler" in args, "standby pods take ranges too"
    alone = container(template(helm, "--set", f"operator.workSubscription={subscription}"))
    assert parallel_of(build_parser().parse_args(alone["args"]).sweep_parallel) \
        == SWEEP_PARALLEL


def test_termination_grace_period(helm: Path) -> None:
    assert pod_spec(template(helm))["terminationGracePeriodSeconds"] == 60
    assert pod_spec(template(helm, *ALL_ON))["terminationGracePeriodSeconds"] == 90


def test_ephemeral_storage_is_requested_and_limited(helm: Path) -> None:
    resources = container(template(helm))["resources"]
    assert resources["requests"]["ephemeral-storage"] == "64Mi"
    assert resources["limits"]["ephemeral-storage"] == "256Mi"


def test_dashboard_namespace(helm: Path) -> None:
    def namespace(*args: str) -> str:
        config_map = of_kind(template(helm, *args), "ConfigMap")
        return str(config_map["metadata"]["namespace"])

    assert namespace() == "reel-reconciler"
    assert namespace(*ALL_ON) == "monitoring"


def test_standby_replicas_prefer_other_nodes_unless_affinity_is_given(helm: Path) -> None:
    anti = pod_spec(template(helm, *ALL_ON))["affinity"]["podAntiAffinity"]
    [term] = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"] == {"topologyKey": "kubernetes.io/hostname",
                                       "labelSelector": {"matchLabels": SELECTOR}}
    assert "affinity" not in pod_spec(template(helm))
    given = pod_spec(template(helm, "--set", "replicaCount=2", "--set",
                              "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuring"
                              "Execution.nodeSelectorTerms[0].matchExpressions[0].key=pool"))
    assert set(given["affinity"]) == {"nodeAffinity"}


def test_default_pod_disruption_budget_lets_the_single_replica_drain(helm: Path) -> None:
    docs = template(helm)
    assert of_kind(docs, "Deployment")["spec"]["replicas"] == 1
    spec = of_kind(docs, "PodDisruptionBudget")["spec"]
    assert spec == {"maxUnavailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow",
                    "selector": {"matchLabels": SELECTOR}}


def test_pod_disruption_budget_min_available_and_eviction_policy(helm: Path) -> None:
    spec = of_kind(template(helm, *ALL_ON), "PodDisruptionBudget")["spec"]
    assert spec["minAvailable"] == 1
    assert "maxUnavailable" not in spec
    spec = of_kind(template(helm, "--set", "podDisruptionBudget.maxUnavailable=50%",
                            "--set", "podDisruptionBudget.unhealthyPodEvictionPolicy="
                            "IfHealthyBudget"), "PodDisruptionBudget")["spec"]
    assert spec["maxUnavailable"] == "50%"
    assert spec["unhealthyPodEvictionPolicy"] == "IfHealthyBudget"


@pytest.mark.parametrize(("replicas", "min_available"),
                         [(1, "1"), (2, "2"), (2, "3"), (1, "50%"), (3, "100%"), (3, "67%")])
def test_pod_disruption_budget_that_blocks_every_drain_fails_to_render(
        helm: Path, replicas: int, min_available: str) -> None:
    error = template_error(helm, "--set", f"replicaCount={replicas}",
                           "--set", f"podDisruptionBudget.minAvailable={min_available}")
    assert "would block every node drain" in error, error
    assert f"podDisruptionBudget.minAvailable={min_available}" in error, error
    assert f"replicaCount={replicas}" in error, error


@pytest.mark.parametrize(("replicas", "min_available"), [(2, "1"), (3, "50%"), (3, "66%")])
def test_pod_disruption_budget_below_the_replicas_renders(
        helm: Path, replicas: int, min_available: str) -> None:
    docs = template(helm, "--set", f"replicaCount={replicas}",
                    "--set", f"podDisruptionBudget.minAvailable={min_available}")
    assert str(of_kind(docs, "PodDisruptionBudget")["spec"]["minAvailable"]) == min_available
