"""A real Kubernetes control plane (etcd + kube-apiserver) for tests, envtest style.

The binaries are compiled from the Go module in this directory (k8s.io/kubernetes
and go.etcd.io/etcd from the Go module proxy, pinned by go.mod/go.sum), so any
machine with Go and access to the proxy can reproduce them; no image pulls or
release downloads are involved.  Processes run on loopback with fresh state and
certificates generated at every start, in their own process groups, with pid
files so that a later ``down`` (or a pytest session) can find and stop them.

CLI (from the repository root)::

    python tests/cluster/cluster.py up       # build if needed, start or reuse
    python tests/cluster/cluster.py status   # exit 0 when healthy
    python tests/cluster/cluster.py down     # stop and keep nothing running
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parent
REPO_ROOT = MODULE_DIR.parents[1]
# Another place for the build and the state, for a test that needs a machine where nothing
# was built yet.
CACHE_DIR = Path(os.environ.get("REEL_CLUSTER_CACHE") or REPO_ROOT / ".cache")
BIN_DIR = CACHE_DIR / "cluster-bin"
STATE_DIR = CACHE_DIR / "cluster"
LOCK_FILE = CACHE_DIR / "cluster.lock"
BINARIES = ("etcd", "kube-apiserver")
# Service network is bookkeeping only: nothing here routes to it, but the
# apiserver needs a range to allocate the `kubernetes` Service's ClusterIP.
SERVICE_CIDR = "10.0.0.0/24"
READY_TIMEOUT = 120.0
BUILD_NOTICE = (
    "building kube-apiserver and etcd from tests/cluster/go.mod: built once, about 10 minutes "
    "the first time (seconds with a warm Go cache)"
)
NOT_BUILT = (
    "the control plane is not built (or its sources changed): run `make cluster-up` first "
    "(built once, about 10 minutes the first time); tests never build it inside their timeout"
)


class ClusterError(RuntimeError):
    """The control plane could not be built or started; the message says why."""


@dataclass
class Cluster:
    """A running control plane, as recorded in ``.cache/cluster/state.json``."""

    state_dir: Path
    kubeconfig: Path
    server: str
    etcd_url: str
    ca_file: Path
    admin_cert: Path
    admin_key: Path
    pids: dict[str, int]
    started_by: str = "cli"
    started: bool = False
    build_seconds: float | None = None
    start_seconds: float | None = None
    version: str = ""

    def save(self) -> None:
        """Persist what `down` and `status` need in another process."""
        data = asdict(self)
        for key in ("started", "build_seconds", "start_seconds"):
            data.pop(key)
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(value.relative_to(REPO_ROOT))
        (self.state_dir / "state.json").write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path = STATE_DIR) -> Cluster | None:
        """Read the recorded cluster, or None when nothing was recorded."""
        path = state_dir / "state.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        for key in ("state_dir", "kubeconfig", "ca_file", "admin_cert", "admin_key"):
            data[key] = REPO_ROOT / data[key]
        return cls(**data)

    def ssl_context(self) -> ssl.SSLContext:
        """TLS context that trusts the cluster CA and presents the admin cert."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.admin_cert), str(self.admin_key))
        return ctx

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """GET a path on the apiserver as admin; returns (status, body)."""
        request = urllib.request.Request(self.server + path)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.ssl_context()) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def healthy(self) -> bool:
        """True when every recorded process lives and /readyz answers ok."""
        if not all(_alive(pid, name) for name, pid in self.pids.items()):
            return False
        try:
            status, body = self.get("/readyz", timeout=3.0)
        except (OSError, ssl.SSLError):
            return False
        return status == 200 and body.strip() == "ok"


# --------------------------------------------------------------------------- build


def go_binary() -> str:
    """Find the go tool; a missing toolchain is an error, never a reason to skip."""
    found = shutil.which("go")
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    if fallback.exists():
        return str(fallback)
    raise ClusterError(
        "the Go toolchain is not installed (no `go` on PATH or in /usr/local/go/bin); "
        f"it is needed to build etcd and kube-apiserver from {MODULE_DIR / 'go.mod'}"
    )


def kubernetes_version() -> str:
    """The k8s.io/kubernetes release pinned in go.mod (e.g. v1.37.2)."""
    match = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", (MODULE_DIR / "go.mod").read_text(), re.M)
    if not match:
        raise ClusterError("k8s.io/kubernetes is not required in tests/cluster/go.mod")
    return match.group(1)


def _ldflags(version: str) -> str:
    """Stamp the release into the binary, as Kubernetes' own build does.

    Without it the apiserver reports v0.0.0-master, which clients such as
    kubectl flag as an unsupported version skew.
    """
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return " ".join(
        [
            "-s",
            "-w",
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    )


def _build_digest(go: str, ldflags: str) -> str:
    """Hash everything the binaries depend on, so stale binaries get rebuilt."""
    digest = hashlib.sha256()
    sources = [MODULE_DIR / "go.mod", MODULE_DIR / "go.sum", *sorted(MODULE_DIR.glob("cmd/*/*.go"))]
    for path in sources:
        digest.update(path.relative_to(MODULE_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    digest.update(version.encode())
    digest.update(ldflags.encode())
    return digest.hexdigest()


def is_built() -> bool:
    """True when the binaries in .cache/cluster-bin match the sources and the toolchain."""
    stamp = BIN_DIR / ".stamp"
    if not stamp.is_file() or not all((BIN_DIR / name).is_file() for name in BINARIES):
        return False
    return stamp.read_text() == _build_digest(go_binary(), _ldflags(kubernetes_version()))


def build(force: bool = False) -> float | None:
    """Build etcd and kube-apiserver into .cache/cluster-bin.

    Returns the build time in seconds, or None when the binaries were up to date.
    """
    if not force and is_built():
        return None
    go = go_binary()
    ldflags = _ldflags(kubernetes_version())
    digest = _build_digest(go, ldflags)
    stamp = BIN_DIR / ".stamp"

    out_dir = BIN_DIR / ".build"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    # CGO off: static binaries, and no C compiler needed on a fresh machine.
    # -mod=readonly: build exactly what go.mod/go.sum pin, never update them.
    goflags = f"{os.environ.get('GOFLAGS', '')} -mod=readonly".strip()
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": goflags}
    cmd = [go, "build", "-trimpath", "-ldflags", ldflags, "-o", f"{out_dir}/"]
    cmd += [f"./cmd/{name}" for name in BINARIES]
    started = time.monotonic()
    result = subprocess.run(cmd, cwd=MODULE_DIR, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise ClusterError(
            f"building the control plane failed ({' '.join(cmd[:2])} in tests/cluster, "
            f"exit {result.returncode}):\n{_tail(result.stdout + result.stderr, 40)}"
        )
    for name in BINARIES:
        os.replace(out_dir / name, BIN_DIR / name)
    out_dir.rmdir()
    stamp.write_text(digest)
    return elapsed


# --------------------------------------------------------------------------- certificates


def _write_pki(pki: Path) -> None:
    """Generate the CA, serving cert, admin client cert and service-account key.

    ECDSA P-256 keys keep generation instant; kube-apiserver accepts them for
    TLS, client certificates and service-account token signing alike.
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:
        raise ClusterError(f"the `cryptography` package is needed for certificates: {exc}") from exc

    pki.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7)

    def write_key(name: str, key: ec.EllipticCurvePrivateKey) -> None:
        path = pki / name
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    def name(common_name: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("reel-reconciler-test-ca")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_key("ca.key", ca_key)
    (pki / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        filename: str,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        sans: list[x509.GeneralName] | None = None,
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        write_key(f"{filename}.key", key)
        (pki / f"{filename}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    service_ip = ipaddress.IPv4Network(SERVICE_CIDR)[1]
    dns_names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    dns_names.append("kubernetes.default.svc.cluster.local")
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "::1")]
    sans.append(x509.IPAddress(service_ip))
    issue("apiserver", name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, sans)
    issue("admin", name("admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH)

    sa_key = ec.generate_private_key(ec.SECP256R1())
    write_key("sa.key", sa_key)
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def kubeconfig_dict(
    server: str, ca_file: Path, user: dict[str, str], name: str
) -> dict[str, object]:
    """A self-contained kubeconfig (credentials embedded) for one user."""
    ca_data = base64.b64encode(ca_file.read_bytes()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "reel-test",
                "cluster": {"server": server, "certificate-authority-data": ca_data},
            }
        ],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": "reel-test", "user": name}}],
        "current-context": name,
    }


def write_kubeconfig(path: Path, config: dict[str, object]) -> Path:
    """Write a kubeconfig as JSON (valid YAML, so no YAML dependency), private to the user."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------- processes


def _free_port() -> int:
    """Ask the kernel for an unused loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int, name: str) -> bool:
    """True if pid runs one of our binaries (guards against pid reuse and zombies).

    The command name comes from /proc/PID/stat, not cmdline: right after exec
    cmdline can still read as empty.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    state = stat[stat.rindex(")") + 1 :].split()[0]
    return state not in ("Z", "X") and comm == name[:15]


def _reap(pid: int) -> None:
    """Collect an exited child of this process so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _stop_group(pid: int, name: str, timeout: float = 15.0) -> None:
    """Stop the process group led by pid: SIGTERM, then SIGKILL after timeout."""
    if not _alive(pid, name):
        _reap(pid)
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)
            if not _alive(pid, name):
                _reap(pid)
                return
            time.sleep(0.1)
    raise ClusterError(f"{name} (pid {pid}) did not stop")


def _tail(text: str, lines: int = 30) -> str:
    """Last lines of a log, for error messages."""
    return "\n".join(text.splitlines()[-lines:])


def _log_tail(path: Path, lines: int = 30) -> str:
    """Last lines of a log file, or a note that it is missing."""
    try:
        return _tail(path.read_text(errors="replace"), lines)
    except OSError:
        return f"(no log at {path})"


def _spawn(name: str, args: list[str], state_dir: Path) -> int:
    """Start a binary in its own session (so its process group can be killed) and record it."""
    log = (state_dir / f"{name}.log").open("ab")
    with log:
        proc = subprocess.Popen(
            [str(BIN_DIR / name), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=state_dir,
            start_new_session=True,
        )
    (state_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def _wait_until(
    check: Callable[[], bool], pid: int, name: str, state_dir: Path, timeout: float
) -> None:
    """Poll check() until it returns True, failing fast if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid, name):
            _reap(pid)
            raise ClusterError(
                f"{name} exited during start-up; log {state_dir / (name + '.log')}:\n"
                + _log_tail(state_dir / f"{name}.log")
            )
        with contextlib.suppress(OSError, ssl.SSLError, ValueError):
            if check():
                return
        time.sleep(0.2)
    raise ClusterError(
        f"{name} was not ready after {timeout:.0f}s; log tail:\n"
        + _log_tail(state_dir / f"{name}.log")
    )


def _etcd_healthy(url: str) -> bool:
    """etcd's /health answers {"health":"true"} once it can serve requests."""
    with urllib.request.urlopen(url + "/health", timeout=2) as response:
        return bool(json.loads(response.read()).get("health") == "true")


def _start(state_dir: Path, timeout: float, started_by: str) -> Cluster:
    """Start etcd and kube-apiserver with fresh data and certificates."""
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    pki = state_dir / "pki"
    _write_pki(pki)

    etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    server = f"https://127.0.0.1:{api_port}"
    cluster = Cluster(
        state_dir=state_dir,
        kubeconfig=state_dir / "kubeconfig",
        server=server,
        etcd_url=etcd_url,
        ca_file=pki / "ca.crt",
        admin_cert=pki / "admin.crt",
        admin_key=pki / "admin.key",
        pids={},
        started=True,
        started_by=started_by,
        version=kubernetes_version(),
    )
    try:
        cluster.pids["etcd"] = _spawn(
            "etcd",
            [
                "--name=reel-test",
                f"--data-dir={state_dir / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=reel-test={peer_url}",
                # Throwaway data: skipping fsync makes writes fast on slow CI disks.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            state_dir,
        )
        _wait_until(
            lambda: _etcd_healthy(etcd_url), cluster.pids["etcd"], "etcd", state_dir, timeout
        )
        cluster.pids["kube-apiserver"] = _spawn(
            "kube-apiserver", _apiserver_args(cluster), state_dir
        )
        admin = {
            "client-certificate-data": base64.b64encode(cluster.admin_cert.read_bytes()).decode(),
            "client-key-data": base64.b64encode(cluster.admin_key.read_bytes()).decode(),
        }
        write_kubeconfig(
            cluster.kubeconfig, kubeconfig_dict(server, cluster.ca_file, admin, "admin")
        )
        cluster.save()
        _wait_until_ready(cluster, timeout)
    except BaseException:
        _stop_recorded(cluster)
        raise
    return cluster


def _apiserver_args(cluster: Cluster) -> list[str]:
    """kube-apiserver's flags: a function of the recorded cluster, so a restart repeats them."""
    pki = cluster.ca_file.parent
    port = urllib.parse.urlsplit(cluster.server).port
    return [
        f"--etcd-servers={cluster.etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=Node,RBAC",
        f"--service-account-issuer={cluster.server}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # No kubelets or node network: do not publish 127.0.0.1 as an Endpoint.
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true",
        "--profiling=false",
    ]


def _wait_until_ready(cluster: Cluster, timeout: float) -> None:
    """Until the apiserver's /readyz answers ok (its post-start hooks have all run)."""

    def ready() -> bool:
        status, body = cluster.get("/readyz", timeout=3.0)
        return status == 200 and body.strip() == "ok"

    _wait_until(ready, cluster.pids["kube-apiserver"], "kube-apiserver", cluster.state_dir,
                timeout)


def _stop_recorded(cluster: Cluster) -> None:
    """Stop the recorded processes, apiserver first so it does not log etcd errors."""
    for name in reversed(BINARIES):
        pid = cluster.pids.get(name)
        if pid:
            _stop_group(pid, name)
            (cluster.state_dir / f"{name}.pid").unlink(missing_ok=True)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialize up/down between processes (e.g. `make cluster-up` and pytest)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- public API


def _users_dir(cluster: Cluster) -> Path:
    """One empty file per test session (named by pid) that uses the cluster."""
    return cluster.state_dir / "users"


def _live_users(cluster: Cluster) -> list[int]:
    """Pids of test sessions that registered with `up(session=True)` and still run."""
    users = _users_dir(cluster)
    pids = [int(p.name) for p in users.iterdir() if p.name.isdigit()] if users.is_dir() else []
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def up(
    timeout: float = READY_TIMEOUT,
    *,
    session: bool = False,
    may_build: bool = True,
    announce: Callable[[str], None] | None = None,
) -> Cluster:
    """Return a healthy cluster: the recorded one if it still answers, else a new one.

    A recorded cluster of another Kubernetes release than go.mod pins is replaced.
    Building takes minutes: without ``may_build`` (test sessions, inside a timeout)
    unbuilt binaries raise ClusterError saying to run ``make cluster-up``; ``announce``
    is told before a build starts.
    ``session=True`` is for test sessions: the caller is registered as a user and
    must call `release()`; a cluster they start is stopped when the last one
    releases it.  A cluster started or reused by the CLI stays up until `down`.
    ``Cluster.started`` says whether this call started it; ``build_seconds`` and
    ``start_seconds`` say where the time went.
    """
    with _locked():
        existing = Cluster.load()
        if existing and existing.healthy() and existing.version == kubernetes_version():
            cluster = existing
            if not session and cluster.started_by != "cli":
                cluster.started_by = "cli"
                cluster.save()
        else:
            if existing:
                _stop_recorded(existing)
            if not is_built():
                if not may_build:
                    raise ClusterError(NOT_BUILT)
                if announce is not None:
                    announce(BUILD_NOTICE)
            build_seconds = build()
            began = time.monotonic()
            cluster = _start(STATE_DIR, timeout, "session" if session else "cli")
            cluster.build_seconds = build_seconds
            cluster.start_seconds = time.monotonic() - began
        if session:
            _users_dir(cluster).mkdir(exist_ok=True)
            (_users_dir(cluster) / str(os.getpid())).touch()
        return cluster


def restart_apiserver(cluster: Cluster, timeout: float = READY_TIMEOUT) -> None:
    """Stop kube-apiserver and start it again on the same port, returning once it is ready.

    etcd, its data and the certificates are kept, so objects, ServiceAccount tokens and
    kubeconfigs stay valid: to other tests sharing the cluster it is the one they had. Its
    clients see their connections closed and the port refuse connections meanwhile, as in a
    control-plane upgrade. ``cluster`` (and the recorded state) get the new pid.
    """
    name = "kube-apiserver"
    with _locked():
        recorded = Cluster.load(cluster.state_dir)
        if recorded is None or recorded.server != cluster.server or not recorded.healthy():
            raise ClusterError(f"no healthy cluster recorded at {cluster.server} to restart")
        _stop_group(recorded.pids[name], name)
        recorded.pids[name] = _spawn(name, _apiserver_args(recorded), recorded.state_dir)
        cluster.pids[name] = recorded.pids[name]
        recorded.save()
        _wait_until_ready(recorded, timeout)


def release() -> bool:
    """Unregister this test session, stopping a session-started cluster nobody else uses.

    Returns True if the cluster was stopped.
    """
    with _locked():
        existing = Cluster.load()
        if not existing:
            return False
        (_users_dir(existing) / str(os.getpid())).unlink(missing_ok=True)
        if existing.started_by == "cli" or _live_users(existing):
            return False
        _stop_recorded(existing)
        shutil.rmtree(existing.state_dir, ignore_errors=True)
        return True


def down() -> bool:
    """Stop the recorded cluster and delete its state; True if anything was running."""
    with _locked():
        existing = Cluster.load()
        if not existing:
            return False
        running = any(_alive(pid, name) for name, pid in existing.pids.items())
        _stop_recorded(existing)
        shutil.rmtree(existing.state_dir, ignore_errors=True)
        return running


def status() -> Cluster | None:
    """The recorded cluster if it is healthy, else None."""
    existing = Cluster.load()
    return existing if existing and existing.healthy() else None


def _display(path: Path) -> str:
    """Show repository paths relative to the root, as the Makefile user sees them."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: up | down | status | build."""
    parser = argparse.ArgumentParser(description="Test control plane (etcd + kube-apiserver)")
    parser.add_argument("command", choices=["up", "down", "status", "build"])
    parser.add_argument(
        "--timeout", type=float, default=READY_TIMEOUT, help="readiness timeout (s)"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            with _locked():
                seconds = build(force=True)
            print(f"build: {seconds or 0.0:.1f}s -> {_display(BIN_DIR)}")
        elif args.command == "up":
            cluster = up(args.timeout, announce=lambda notice: print(notice, flush=True))
            if not cluster.started:
                print(f"reusing running cluster at {cluster.server}")
            else:
                built = cluster.build_seconds
                print(f"build: {f'{built:.1f}s' if built is not None else 'up to date (0.0s)'}")
                print(f"start: {cluster.start_seconds or 0.0:.1f}s ({cluster.version})")
            print(f"server: {cluster.server}")
            print(f"kubeconfig: {_display(cluster.kubeconfig)}")
        elif args.command == "down":
            print("stopped" if down() else "nothing was running")
        else:
            found = status()
            if not found:
                print("not running")
                return 1
            pids = ", ".join(f"{name} {pid}" for name, pid in found.pids.items())
            print(f"healthy: {found.server} ({pids}); kubeconfig: {_display(found.kubeconfig)}")
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
