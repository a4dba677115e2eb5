"""Running helm and the linters on the chart: shared by the tests in tests/chart."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tools.manifests import CHART, REPO

ALL_FEATURES = Path(__file__).resolve().parent / "all-features.yaml"
ALL_ON = ["--values", str(ALL_FEATURES)]
VALUE_SETS = {"defaults": [], "all-features": ALL_ON}


def run(*argv: str | Path, cwd: Path = REPO, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False,
                          cwd=cwd, **kw)


def render_text(helm: Path, *args: str) -> str:
    """`helm template` as release reel-reconciler in namespace reel-reconciler."""
    out = run(helm, "template", "reel-reconciler", CHART, "-n", "reel-reconciler", *args)
    assert out.returncode == 0, out.stderr
    return out.stdout


def template(helm: Path, *args: str) -> list[dict[str, Any]]:
    """The rendered objects, CRDs included."""
    return [doc for doc in yaml.safe_load_all(render_text(helm, "--include-crds", *args)) if doc]


def is_hook(doc: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one release object of a kind, hooks aside (fails when there are none or several)."""
    found = [doc for doc in docs if doc["kind"] == kind and not is_hook(doc)]
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


def hook_of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one Helm hook object of a kind."""
    found = [doc for doc in docs if doc["kind"] == kind and is_hook(doc)]
    assert len(found) == 1, f"expected one {kind} hook, rendered {len(found)}"
    return found[0]


def template_error(helm: Path, *args: str) -> str:
    """stderr of a `helm template` that must fail."""
    out = run(helm, "template", "reel-reconciler", CHART, "-n", "reel-reconciler", *args)
    assert out.returncode != 0, f"helm template {' '.join(args)} rendered:\n{out.stdout[:2000]}"
    return out.stderr
