"""A newcomer's input errors (issue "A newcomer's first hour"): each ends with exit status 2,
exactly one line on stderr saying what to set, and nothing written to Firestore."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from devkit.emulators import free_port
from devkit.seed import World

Cli = Callable[..., CompletedProcess[str]]
REPO = Path(__file__).resolve().parents[2]


def one_line_exit_2(proc: CompletedProcess[str], *needles: str) -> str:
    """The contract: status 2, one line on stderr holding every needle, nothing on stdout."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert proc.stdout == ""
    return lines[0]


@pytest.fixture
def untouched(world: World) -> Iterator[World]:
    """A stuck project any sweep would correct and a job that reported 10 s ago; the test
    must leave both exactly as they were."""
    job, _ = world.generated_project("live", status="generating", prompts=2, in_gcs=1,
                                     in_db=0, job_status="processing",
                                     job_updated_ago=timedelta(seconds=10))
    world.generated_project("stuck", status="generating", prompts=1, in_gcs=1, in_db=0,
                            job_status="failed")
    before = ({pid: world.update_time(pid) for pid in ("live", "stuck")}, world.job(job))
    yield world
    assert ({pid: world.update_time(pid) for pid in ("live", "stuck")}, world.job(job)) == before
    assert world.job(job)["status"] == "processing"


@pytest.mark.parametrize(("args", "env", "needles"), [
    (["sweep", "--stale-timeout", "banana"], {},
     ["invalid --stale-timeout 'banana': not a duration such as 30s, 5m or 1h"]),
    (["sweep"], {"REEL_STALE_TIMEOUT": "banana"},
     ["invalid REEL_STALE_TIMEOUT 'banana': not a duration such as 30s, 5m or 1h"]),
    (["sweep"], {"REEL_STITCH_TIMEOUT": "0s"},
     ["invalid REEL_STITCH_TIMEOUT '0s': must be more than 0"]),
    (["sweep"], {"REEL_SETTLE": "-1s"}, ["invalid REEL_SETTLE '-1s': must be 0s"]),
    (["reconcile", "stuck", "--stale-timeout", "0s"], {},
     ["invalid --stale-timeout '0s': must be more than 0"]),
])
@pytest.mark.usefixtures("untouched")
def test_bad_durations(cli: Cli, args: list[str], env: dict[str, str],
                       needles: list[str]) -> None:
    one_line_exit_2(cli(*args, env=env), *needles)


@pytest.mark.parametrize(("args", "needles"), [
    (["--timeout", "0"], ["invalid --timeout '0': expected a number of minutes, more than 0"]),
    (["--timeout", "-5"], ["invalid --timeout '-5': expected a number of minutes"]),
    (["--timeout", "nan"], ["invalid --timeout 'nan': expected a number of minutes"]),
    (["--timeout", "banana"], ["invalid --timeout 'banana': expected a number of minutes"]),
    (["--timeout", "5m"], ["invalid --timeout '5m'", "use --stale-timeout"]),
    (["--timeout", "5", "--stale-timeout", "5m"], ["--timeout and --stale-timeout set the "
                                                   "same timeout: give one"]),
    (["--stale-timeout", "0s"], ["invalid --stale-timeout '0s': must be more than 0"]),
    (["--stale-timeout", "-5"], ["invalid --stale-timeout '-5': must be more than 0"]),
    (["--stale-timeout", "5"], ["invalid --stale-timeout '5': a duration needs a unit"]),
])
@pytest.mark.usefixtures("untouched")
def test_cleanup_refuses_a_zero_or_negative_timeout(cli: Cli,
                                                    args: list[str], needles: list[str]) -> None:
    """A zero timeout would fail every job at once, the one that reported 10 s ago too."""
    one_line_exit_2(cli("cleanup-stale-jobs", *args), *needles)


@pytest.mark.usefixtures("untouched")
def test_storage_emulator_host_without_its_scheme(cli: Cli) -> None:
    address = os.environ["STORAGE_EMULATOR_HOST"].removeprefix("http://")
    proc = cli("sweep", env={"STORAGE_EMULATOR_HOST": address})
    one_line_exit_2(proc, "STORAGE_EMULATOR_HOST", f"STORAGE_EMULATOR_HOST=http://{address}")


@pytest.mark.usefixtures("untouched")
def test_firestore_emulator_host_with_a_scheme(cli: Cli) -> None:
    address = os.environ["FIRESTORE_EMULATOR_HOST"]
    proc = cli("sweep", env={"FIRESTORE_EMULATOR_HOST": f"http://{address}"})
    one_line_exit_2(proc, "FIRESTORE_EMULATOR_HOST", f"FIRESTORE_EMULATOR_HOST={address}")


# --- the operator: its ports and its cluster, checked before it starts ------------------------


def operator(*args: str, timeout: float = 30, **env: Any) -> CompletedProcess[str]:
    """`reel-reconciler operator` with no cluster at all: not in one, and no kubeconfig."""
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("KUBERNETES_") and k != "KUBECONFIG"}
    full_env.update({k: str(v) for k, v in env.items()})
    return subprocess.run([sys.executable, "-m", "reel_reconciler.cli", "operator", *args],
                          capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=REPO, check=False)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("flag", ["--metrics-port", "--health-port", "--api-port"])
def test_operator_port_in_use(taken_port: int, flag: str, tmp_path: Path) -> None:
    proc = operator(flag, str(taken_port), HOME=tmp_path)
    line = one_line_exit_2(proc)
    assert line.endswith(f"port {taken_port} ({flag}) is in use: choose another with {flag}")


def test_operator_without_a_cluster_fails_fast(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = operator("--metrics-port", str(free_port()), "--health-port", str(free_port()),
                    timeout=60, HOME=tmp_path, KUBECONFIG=tmp_path / "missing")
    assert time.monotonic() - started < 20
    one_line_exit_2(proc, "set KUBECONFIG", "run the operator in a cluster",
                    str(tmp_path / "missing"))


@pytest.mark.parametrize(("args", "wanted"), [
    (["--api-rate-limit", "lots"], "invalid --api-rate-limit 'lots': expected a rate such as "
     "30/minute"),
    (["--api-reconciler", "main"], "invalid --api-reconciler 'main': expected NAMESPACE/NAME"),
    (["--api-port", "0"], "argument --api-port: '0' is not a port number"),
])
def test_operator_endpoint_input_errors(args: list[str], wanted: str, tmp_path: Path) -> None:
    proc = operator("--api-port", str(free_port()), *args, HOME=tmp_path)
    one_line_exit_2(proc, wanted)


@pytest.mark.parametrize(("args", "wanted"), [
    (["main", "-n", "reels", "--timeout", "banana"],
     "invalid --timeout 'banana': not a duration such as 30s, 5m or 1h"),
    (["main", "-n", "reels", "--timeout", "0s"], "invalid --timeout '0s': must be more than 0"),
    (["main"], "the following arguments are required: -n/--namespace"),
])
def test_delete_reconciler_input_errors(args: list[str], wanted: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "reel_reconciler.cli", "delete-reconciler", *args],
                          capture_output=True, text=True, timeout=30, cwd=REPO, check=False)
    one_line_exit_2(proc, "reel-reconciler delete-reconciler: " + wanted)


def test_delete_reconciler_without_a_cluster(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    proc = subprocess.run([sys.executable, "-m", "reel_reconciler.cli", "delete-reconciler", "main",
                           "-n", "reels"], capture_output=True, text=True, timeout=30, cwd=REPO,
                          check=False, env={**env, "HOME": str(tmp_path),
                                            "KUBECONFIG": str(tmp_path / "missing")})
    one_line_exit_2(proc, "set KUBECONFIG", "or run it in a cluster", str(tmp_path / "missing"))


@pytest.mark.usefixtures("untouched")
def test_watch_endpoint_input_errors(cli: Cli) -> None:
    port = str(free_port())
    same = cli("watch", "--metrics-port", port, "--api-port", port)
    one_line_exit_2(same, f"port {port} is given to both --metrics-port and --api-port")
    services = cli("watch", "--api-port", str(free_port()), "--api-service-accounts")
    one_line_exit_2(services, "--api-service-accounts needs --api-reconciler NAMESPACE/NAME")
