"""deploy/ for users without Helm, rendered from the chart so the two never drift, and the
chart's copy of deploy/crds (the CRDs' single source).

`python -m tools.manifests` (or `make manifests`) writes the files; tests render
and copy again and compare.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "reel-reconciler"
CRD_SOURCE = REPO / "deploy" / "crds"
CRD_COPY = CHART / "crds"
HEADER = "# Generated from charts/reel-reconciler by `make manifests`; edit the chart, not this.\n"
FILES = {
    "deploy/rbac.yaml": ("ServiceAccount", "ClusterRole", "ClusterRoleBinding"),
    "deploy/operator.yaml": ("Deployment", "Service", "PodDisruptionBudget"),
}


def render(helm: Path) -> dict[str, str]:
    """The chart's default objects, as release reel-reconciler in namespace reel-reconciler."""
    out = subprocess.run(
        [str(helm), "template", "reel-reconciler", str(CHART), "--namespace", "reel-reconciler",
         "--set", "dashboard.enabled=false"],
        capture_output=True, text=True, check=True).stdout
    docs = [doc for doc in yaml.safe_load_all(out) if doc]
    rendered = {}
    for path, kinds in FILES.items():
        chosen = [doc for kind in kinds for doc in docs if doc["kind"] == kind]
        for doc in chosen:
            labels = doc["metadata"].get("labels", {})
            labels.pop("helm.sh/chart", None)
            labels.pop("app.kubernetes.io/managed-by", None)
        rendered[path] = HEADER + yaml.safe_dump_all(chosen, sort_keys=False)
    return rendered


def crd_copies() -> dict[str, str]:
    """The chart's crds/ as it must be: byte copies of deploy/crds. Not a symlink, which
    points outside the chart once it is packaged, copied or scanned on its own (checkov)."""
    return {str((CRD_COPY / source.name).relative_to(REPO)): source.read_text()
            for source in sorted(CRD_SOURCE.glob("*.yaml"))}


def main() -> int:
    from devkit.kubectl import find_helm

    for path, text in render(find_helm()).items():
        (REPO / path).write_text(text)
        print(f"wrote {path}")
    if CRD_COPY.is_symlink():
        CRD_COPY.unlink()
    CRD_COPY.mkdir(exist_ok=True)
    copies = crd_copies()
    for stale in set(CRD_COPY.iterdir()) - {REPO / path for path in copies}:
        stale.unlink()
        print(f"removed {stale.relative_to(REPO)}")
    for path, text in copies.items():
        (REPO / path).write_text(text)
        print(f"copied {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
