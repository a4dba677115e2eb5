"""What GKE needs from the chart: egress to the metadata server under a NetworkPolicy, a key
file as the alternative to Workload Identity, and an uninstall that leaves nothing behind."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import google.auth
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import service_account

from reel_reconciler.operator.deletion import build_parser as deletion_parser
from tests.chart.rendering import ALL_ON, hook_of_kind, is_hook, of_kind, run, template
from tools.manifests import CHART

NETWORK_POLICY = ["--set", "networkPolicy.enabled=true"]
WITH_RECONCILER = ["--set", "reconciler.create=true",
                   "--set", "reconciler.spec.storage.bucket=my-reels"]


def _peer_allows(peer: dict[str, Any], ip: str) -> bool:
    """An ipBlock peer holds the address; pod and namespace selectors name pods, never an
    address outside the cluster such as the metadata server's."""
    block = peer.get("ipBlock")
    if block is None:
        return False
    address = ipaddress.ip_address(ip)
    return address in ipaddress.ip_network(block["cidr"]) and not any(
        address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))


def _port_allows(entry: dict[str, Any], port: int, protocol: str) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    if "port" not in entry:
        return True
    return bool(entry["port"] <= port <= entry.get("endPort", entry["port"]))


def egress_allows(policy: dict[str, Any], ip: str, port: int, protocol: str = "TCP") -> bool:
    """NetworkPolicy egress as Kubernetes reads it: a rule without `to` reaches every peer, a
    rule without `ports` every port; the rules add up."""
    for rule in policy["spec"].get("egress", []):
        peers = rule.get("to")
        ports = rule.get("ports")
        if (peers is None or any(_peer_allows(p, ip) for p in peers)) and (
                ports is None or any(_port_allows(p, port, protocol) for p in ports)):
            return True
    return False


def test_network_policy_lets_the_pod_reach_the_metadata_server(helm: Path) -> None:
    policy = of_kind(template(helm, *NETWORK_POLICY), "NetworkPolicy")
    assert egress_allows(policy, "169.254.169.254", 80)
    assert egress_allows(policy, "169.254.169.252", 988)
    # Only those ports: the rules name the address and the port together.
    assert not egress_allows(policy, "169.254.169.254", 988)
    assert not egress_allows(policy, "169.254.169.254", 8080)
    assert not egress_allows(policy, "10.1.2.3", 80)
    # What was there before stays: DNS anywhere, HTTPS and the API server port.
    assert egress_allows(policy, "10.0.0.10", 53, "UDP")
    assert egress_allows(policy, "142.250.1.1", 443)


def test_metadata_server_egress_can_be_turned_off(helm: Path) -> None:
    policy = of_kind(template(helm, *NETWORK_POLICY,
                              "--set", "networkPolicy.metadataServer.enabled=false"),
                     "NetworkPolicy")
    assert not egress_allows(policy, "169.254.169.254", 80)
    assert not egress_allows(policy, "169.254.169.252", 988)
    assert "169.254" not in json.dumps(policy)
    assert egress_allows(policy, "142.250.1.1", 443)


def test_extra_egress_rules_are_appended_as_given(helm: Path) -> None:
    given = {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
             "ports": [{"port": 3128, "protocol": "TCP"}]}
    egress = of_kind(template(helm, *ALL_ON), "NetworkPolicy")["spec"]["egress"]
    assert egress[-1] == given
    policy = of_kind(template(helm, *ALL_ON), "NetworkPolicy")
    assert egress_allows(policy, "10.20.3.4", 3128)
    assert not egress_allows(of_kind(template(helm, *NETWORK_POLICY), "NetworkPolicy"),
                             "10.20.3.4", 3128)
    named = of_kind(template(helm, *NETWORK_POLICY,
                             "--set", "networkPolicy.extraEgress[0].ports[0].port=proxy",
                             "--set", "networkPolicy.extraEgress[0].ports[0].protocol=TCP"),
                    "NetworkPolicy")
    assert named["spec"]["egress"][-1] == {"ports": [{"port": "proxy", "protocol": "TCP"}]}


@pytest.mark.parametrize("bad", [
    ["--set", "networkPolicy.metadataServer.enable=true"],
    ["--set", "networkPolicy.extraEgress[0].ports[0].protocol=ICMP"],
    ["--set", "networkPolicy.extraEgress[0].ports[0].port=70000"],
    ["--set", "networkPolicy.extraEgress[0].from[0].podSelector.matchLabels.a=b"],
    ["--set", "networkPolicy.extraEgress[0].to[0].ipBlock.except[0]=10.0.0.0/8"],
    ["--set", "gcpCredentials.existingSecret=Not_A_Name"],
    ["--set", "gcpCredentials.key=dir/key.json"],
    ["--set", "gcpCredentials.key=.."],
    ["--set", "gcpCredentials.keyFile=x"],
    ["--set", "reconciler.uninstallHook.timeoutSeconds=0"],
    ["--set", "reconciler.uninstallHook.timeout=60s"],
], ids=lambda bad: bad[1])
def test_schema_rejects_bad_gke_values(helm: Path, bad: list[str]) -> None:
    out = run(helm, "template", "x", CHART, *bad)
    assert out.returncode != 0, f"{bad} was accepted"
    assert "schema" in out.stderr.lower() or "values don't meet" in out.stderr, out.stderr


def _operator(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = of_kind(docs, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return pod, container


def _key_file(email: str) -> str:
    """A service account key file as the Google Cloud console makes one."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": "reels-prod",
                       "private_key_id": "0123456789abcdef", "private_key": pem,
                       "client_email": email, "client_id": "1234567890",
                       "token_uri": "https://oauth2.googleapis.com/token"})


@pytest.mark.parametrize("key", ["key.json", "sa.json"])
def test_gcp_key_secret_is_mounted_read_only_and_found_by_google_auth(
        helm: Path, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Secret is projected as a file, and GOOGLE_APPLICATION_CREDENTIALS names exactly that
    file: laid out as the kubelet would under a scratch root, Google's own library loads it."""
    args = ["--set", "gcpCredentials.existingSecret=reel-reconciler-gcp"]
    if key != "key.json":
        args += ["--set", f"gcpCredentials.key={key}"]
    pod, container = _operator(template(helm, *args))
    [volume] = [v for v in pod["volumes"] if "secret" in v]
    secret = volume["secret"]
    assert secret["secretName"] == "reel-reconciler-gcp"
    assert secret["items"] == [{"key": key, "path": key}]
    assert secret["defaultMode"] == 0o440  # the owner and the pod's group (fsGroup) read it
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    path = env["GOOGLE_APPLICATION_CREDENTIALS"]
    assert "envFrom" not in container  # the key stays out of the environment

    projected = tmp_path / mount["mountPath"].lstrip("/") / secret["items"][0]["path"]
    projected.parent.mkdir(parents=True)
    email = "reconciler@reels-prod.iam.gserviceaccount.com"
    projected.write_text(_key_file(email))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / path.lstrip("/")))
    for name in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):  # set by the session's emulators
        if name not in env:
            monkeypatch.delenv(name, raising=False)
    credentials, project = google.auth.default()
    assert isinstance(credentials, service_account.Credentials)
    assert (credentials.service_account_email, project) == (email, "reels-prod")


def test_no_key_file_by_default(helm: Path) -> None:
    pod, container = _operator(template(helm))
    assert not [v for v in pod["volumes"] if "secret" in v]
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in {e["name"] for e in container["env"]}


def test_uninstall_hook_deletes_the_chart_reconciler_with_a_role_for_it_alone(
        helm: Path) -> None:
    assert not [d for d in template(helm) if is_hook(d)]
    off = template(helm, *WITH_RECONCILER, "--set", "reconciler.uninstallHook.enabled=false")
    assert not [d for d in off if is_hook(d)]

    docs = template(helm, *WITH_RECONCILER, "--set", "reconciler.name=reels",
                    "--set", "reconciler.uninstallHook.timeoutSeconds=45")
    hooks = [d for d in docs if is_hook(d)]
    assert {d["kind"] for d in hooks} == {"ServiceAccount", "Role", "RoleBinding", "Job"}
    for doc in hooks:
        annotations = doc["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-delete"
        assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    job = hook_of_kind(docs, "Job")
    weight = {d["kind"]: int(d["metadata"]["annotations"]["helm.sh/hook-weight"])
              for d in hooks}
    assert max(weight[k] for k in ("ServiceAccount", "Role", "RoleBinding")) < weight["Job"]

    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["reel-reconciler", "delete-reconciler"]
    args = deletion_parser().parse_args(container["args"])
    assert (args.name, args.namespace, args.timeout) == ("reels", "reel-reconciler", "45s")
    assert job["spec"]["activeDeadlineSeconds"] > 2 * 45
    assert container["image"] == _operator(docs)[1]["image"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    role = hook_of_kind(docs, "Role")
    assert role["rules"] == [{"apiGroups": ["reelmaker.io"], "resources": ["reelreconcilers"],
                              "resourceNames": ["reels"], "verbs": ["get", "delete", "patch"]}]
    binding = hook_of_kind(docs, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"],
                                    "namespace": "reel-reconciler"}]
    assert hook_of_kind(docs, "ServiceAccount")["metadata"]["name"] == pod["serviceAccountName"]


def test_uninstall_hook_pod_is_not_taken_for_an_operator_pod(helm: Path) -> None:
    """The Service, the PodDisruptionBudget and the operator's NetworkPolicy select the
    operator's pods; the Job's pod has its own NetworkPolicy (DNS and the API server)."""
    docs = template(helm, *WITH_RECONCILER, *NETWORK_POLICY)
    labels = hook_of_kind(docs, "Job")["spec"]["template"]["metadata"]["labels"]
    selectors = [of_kind(docs, "Service")["spec"]["selector"],
                 of_kind(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                 of_kind(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]]
    for selector in selectors:
        assert not selector.items() <= labels.items(), selector
    own = hook_of_kind(docs, "NetworkPolicy")
    assert own["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert egress_allows(own, "10.96.0.1", 443)
    assert egress_allows(own, "10.0.0.10", 53, "UDP")
    assert not egress_allows(own, "169.254.169.254", 80)
    assert own["spec"]["ingress"] == []
