"""Find Prometheus' binaries (Debian package `prometheus`) and run a real Prometheus server.

The server runs in its own process group on a free loopback port with a temporary config
and data directory, and is stopped (group and all) when the context exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from devkit.emulators import free_port
from tests.support.patience import bound

INSTALL_HINT = ("install Debian's package `prometheus` (apt-get install -y prometheus: "
                "/usr/bin/prometheus and /usr/bin/promtool)")


class MissingPrometheus(RuntimeError):
    """A Prometheus binary is not installed; the message says how to install it."""


def binary(name: str) -> Path:
    """Path of `prometheus` or `promtool`: $PROMETHEUS / $PROMTOOL first, then $PATH."""
    override = os.environ.get(name.upper())
    found = override or shutil.which(name)
    if not found or not Path(found).is_file():
        where = f"${name.upper()}={override}" if override else "$PATH"
        raise MissingPrometheus(f"{name} not found in {where}: {INSTALL_HINT}, "
                                f"or set {name.upper()} to the binary")
    return Path(found)


class PrometheusError(RuntimeError):
    """The Prometheus HTTP API answered with an error (bad query, server down)."""


@dataclass
class PrometheusServer:
    """A running Prometheus and a small client for its HTTP API."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/{path}; returns `data`, raises PrometheusError on an error answer."""
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        try:
            body = response.json()
        except ValueError as exc:
            raise PrometheusError(f"{path}: HTTP {response.status_code}: "
                                  f"{response.text[:300]}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: "
                                  f"{body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the result vector (or a one-element list for a scalar)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result)

    def query_range(self, expr: str, start: float, end: float,
                    step: float) -> list[dict[str, Any]]:
        """Range query; a list of {metric, values: [[t, "v"], ...]}."""
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}",
                        step=f"{step:.3f}")
        return list(data["result"])

    def wait_for_samples(self, expr: str, timeout: float = 30.0) -> None:
        """Wait until `expr` returns something (e.g. the first scrape of a target)."""
        deadline = time.monotonic() + bound(timeout)
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(PrometheusError, requests.RequestException):
                if self.query(expr):
                    return
            time.sleep(0.2)
        raise AssertionError(f"Prometheus never returned data for {expr!r} within "
                             f"{bound(timeout):.0f}s; "
                             f"log tail: {self.log.read_text()[-1500:]}")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {self.proc.returncode}: "
                               f"{self.log.read_text()[-2000:]}")


def scrape_config(target: str, keep_reconciler: str | None, rule_files: list[Path],
                  interval: str = "1s") -> dict[str, Any]:
    """A config scraping one target; optionally keep only one reconciler's series."""
    job: dict[str, Any] = {
        "job_name": "reel-reconciler",
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "static_configs": [{"targets": [target]}],
    }
    if keep_reconciler is not None:
        # Other tests of the same process register series for other reconcilers in the
        # default registry: keep ours only, so every panel's data comes from this scenario.
        job["metric_relabel_configs"] = [{
            "source_labels": ["reconciler"], "action": "keep",
            "regex": keep_reconciler.replace(".", r"\."),
        }]
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [job],
    }


@contextlib.contextmanager
def running_prometheus(workdir: Path, config: dict[str, Any],
                       timeout: float = 30.0) -> Iterator[PrometheusServer]:
    """Start Prometheus with `config` (written as JSON, which is YAML) and stop it on exit."""
    executable = binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "prometheus.yml"
    config_file.write_text(json.dumps(config, indent=2))
    port = free_port()
    log = workdir / "prometheus.log"
    argv = [str(executable), f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=workdir)
    server = PrometheusServer(url=f"http://127.0.0.1:{port}", proc=proc, log=log)
    try:
        deadline = time.monotonic() + bound(timeout)
        while True:
            server.check_alive()
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready within {timeout}s: "
                                   f"{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
