"""`make test` on a fresh machine: it names the first missing prerequisite in one line before
building anything, builds the control plane before pytest starts, and tests never build it
inside their timeout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make") or "make"


def make(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"PATH": path} if path is not None else {})}
    return subprocess.run([MAKE, "--no-print-directory", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_a_missing_firestore_emulator_is_named() -> None:
    line = _one_line(make("prereqs", "FIRESTORE_EMULATOR_LAUNCHER=/nonexistent/launcher"))
    assert "missing prerequisite: Google's Firestore emulator at /nonexistent/launcher" in line
    assert "FIRESTORE_EMULATOR_LAUNCHER" in line


def test_a_missing_chromium_is_named_with_its_package() -> None:
    line = _one_line(make("prereqs", "CHROMIUM=/nonexistent/chromium"))
    assert ("missing prerequisite: Chromium at /nonexistent/chromium for the browser test "
            "(Debian package chromium: apt-get install chromium") in line


def test_a_missing_promtool_is_named_with_its_package(tmp_path: Path) -> None:
    """A PATH with java, go and npm but no promtool (and this interpreter as python)."""
    for tool in ("java", "go", "npm"):
        found = shutil.which(tool) or shutil.which(tool, path="/usr/local/go/bin")
        assert found, f"{tool} is a prerequisite of the suite itself"
        (tmp_path / tool).symlink_to(Path(found).resolve())
    line = _one_line(make("prereqs", f"PYTHON={sys.executable}", path=str(tmp_path)))
    assert line.endswith(
        "missing prerequisite: promtool (Debian package prometheus: apt-get install "
        "prometheus).  Stop.")


def test_a_missing_npm_is_named_with_its_package(tmp_path: Path) -> None:
    for tool in ("java", "go"):
        found = shutil.which(tool) or shutil.which(tool, path="/usr/local/go/bin")
        assert found, f"{tool} is a prerequisite of the suite itself"
        (tmp_path / tool).symlink_to(Path(found).resolve())
    line = _one_line(make("prereqs", f"PYTHON={sys.executable}", path=str(tmp_path)))
    assert "missing prerequisite: node 20+ with npm for the Firebase Auth emulator" in line


def test_make_test_checks_then_builds_the_cluster_before_pytest() -> None:
    dry = make("-n", "test")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()

    def first(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    assert first("prerequisites:") < first("tests.cluster.cluster up") < first("pytest -ra")
    # The web client is built and its unit tests run before pytest loads it in a browser.
    assert (first("prerequisites:") < first("npm --prefix clients/web run --silent build")
            < first("npm --prefix clients/web test") < first("pytest -ra"))


def test_a_test_session_never_builds_the_control_plane(tmp_path: Path) -> None:
    """On a machine where nothing was built, the suite's cluster fixture fails at once with
    the command to run; it neither builds (no Go is called, nothing is written under the
    cache's binaries) nor waits out a test's timeout."""
    calls = tmp_path / "go-calls"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    go = fake_bin / "go"
    go.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\nexit 1\n")
    go.chmod(0o755)
    cache = tmp_path / "cache"
    env = {**os.environ, "REEL_CLUSTER_CACHE": str(cache),
           "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    code = ("from tests.cluster.fixtures import kube_cluster\n"
            "import pytest\n"
            "def test_uses_it(kube_cluster): pass\n")
    (tmp_path / "test_session.py").write_text(code)
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(tmp_path), str(tmp_path / "test_session.py")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode != 0, ran.stdout
    assert "run `make cluster-up` first" in ran.stdout, ran.stdout + ran.stderr
    assert not calls.exists(), calls.read_text()
    assert not (cache / "cluster-bin").exists()
