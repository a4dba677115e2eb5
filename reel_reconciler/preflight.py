"""What `watch` and the operator check before they start: their ports are free and, where they
need one, they have a cluster to talk to. Both use it, so it belongs to neither. Past this
point each problem would be a traceback, or a retry every minute that never says what to
set; here it is one line (ConfigError) and exit status 2."""

from __future__ import annotations

import os
import socket

from kubernetes import config

from reel_reconciler.config import ConfigError
from reel_reconciler.usage import port_problem

ANY_HOST = "0.0.0.0"


def check_port(port: int, flag: str, host: str = ANY_HOST) -> None:
    """Bind the port as the server will (SO_REUSEADDR, like aiohttp), then let it go."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1)
        except OSError as exc:
            raise ConfigError(port_problem(port, flag, exc)) from exc


def check_ports(ports: dict[str, int]) -> None:
    """Every port free, and no two flags naming the same one."""
    seen: dict[int, str] = {}
    for flag, port in ports.items():
        if port in seen:
            raise ConfigError(f"port {port} is given to both {seen[port]} and {flag}: "
                              f"choose another with {flag}")
        seen[port] = flag
        check_port(port, flag)


def load_kube_config() -> None:
    """The same cluster Kopf talks to: in-cluster first, else the local kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def check_kube_config(what: str = "the operator") -> None:
    """In a cluster (its service account) or a kubeconfig, as Kopf will log in; without one
    Kopf would retry its login every minute and never say what is missing."""
    try:
        load_kube_config()
    except Exception as exc:  # the client raises ConfigException, OSError or YAML errors
        where = os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ConfigError(
            f"no Kubernetes cluster to talk to ({where}: {exc}): set KUBECONFIG to a "
            f"kubeconfig file, or run {what} in a cluster") from exc
