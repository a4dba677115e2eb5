"""deploy/ for users without Helm, rendered from the chart so the two never drift.

`python -m tests.support.manifests` (or `make manifests`) writes the files; a test
renders again and compares.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "reel-reconciler"
HEADER = "# Generated from charts/reel-reconciler by `make manifests`; edit the chart, not this.\n"
FILES = {
    "deploy/rbac.yaml": ("ServiceAccount", "ClusterRole", "ClusterRoleBinding"),
    "deploy/operator.yaml": ("Deployment", "Service"),
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


def main() -> int:
    from tests.cluster.kubectl import find_helm

    for path, text in render(find_helm()).items():
        (REPO / path).write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
