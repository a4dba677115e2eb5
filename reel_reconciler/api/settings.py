"""How the endpoint is served: one set of options for the operator and `watch`, checked
once (a bad value is one line naming the flag). The environment is read here, once, at
start: FIREBASE_AUTH_EMULATOR_HOST makes the endpoint accept unsigned tokens, so it is
refused unless the Firebase project is a demo project."""

from __future__ import annotations

import argparse
import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from limits import RateLimitItem, parse

from reel_reconciler import defaults
from reel_reconciler.api.peers import Network, parse_networks
from reel_reconciler.config import ConfigError
from reel_reconciler.usage import invalid, port_number

FIREBASE_CERTS_URL = (
    "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com")
"""Where Google publishes the keys that sign Firebase ID tokens."""
EMULATOR_ENV = "FIREBASE_AUTH_EMULATOR_HOST"
DEMO_PREFIX = "demo-"
"""Firebase's convention: a project id starting so exists only in emulators."""
DEFAULT_TOKEN_AUDIENCE = "reel-reconciler"


@dataclass(frozen=True)
class ApiSettings:
    port: int
    host: str = "0.0.0.0"
    reconciler: str | None = None
    """NAMESPACE/NAME of the ReelReconciler served; None: the only one running here."""
    firebase_project: str | None = None
    """The audience of end users' tokens; None: each reconciler's Firestore project."""
    firebase_certs_url: str = FIREBASE_CERTS_URL
    cors_origins: tuple[str, ...] = ()
    rate_limit: str = defaults.API_RATE_LIMIT
    service_accounts: bool = True
    """Accept Kubernetes ServiceAccount tokens (TokenReview, SubjectAccessReview)."""
    token_audiences: tuple[str, ...] = (DEFAULT_TOKEN_AUDIENCE,)
    """Audiences a ServiceAccount token may carry (one of them)."""
    trusted_proxies: tuple[Network, ...] = ()
    """Peers whose X-Forwarded-For names the client; none by default."""
    auth_emulator: str | None = None
    """FIREBASE_AUTH_EMULATOR_HOST as it was at start: unsigned tokens of the demo project
    `firebase_project` are accepted."""

    def rate(self) -> RateLimitItem:
        return parse_rate(self.rate_limit, "--api-rate-limit")


def parse_rate(text: str, where: str) -> RateLimitItem:
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(invalid(where, "expected a rate such as 30/minute or 5/second",
                                  text)) from exc


def add_api_arguments(parser: argparse.ArgumentParser, service_accounts: bool) -> None:
    """The endpoint's flags, shared by `operator` and `watch`."""
    group = parser.add_argument_group("reconcile endpoint (off unless --api-port is given)")
    group.add_argument("--api-port", type=port_number, default=None, metavar="PORT",
                       help="serve POST /api/reel/projects/ID/reconcile and /openapi.json "
                       "on this port")
    if service_accounts:
        group.add_argument("--api-reconciler", default=None, metavar="NAMESPACE/NAME",
                           help="the ReelReconciler the endpoint serves (default: the only "
                           "one running)")
    group.add_argument("--api-firebase-project", default=None, metavar="PROJECT",
                       help="audience of Firebase ID tokens (default: the Firestore project)")
    group.add_argument("--api-firebase-certs-url", default=FIREBASE_CERTS_URL, metavar="URL",
                       help="where the token signing keys are published, X.509 certificates "
                       "or a JWK set; https unless on a loopback address (default: Google's)")
    group.add_argument("--api-cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="allow browsers on this origin (repeatable; default: no CORS)")
    group.add_argument("--api-rate-limit", default=defaults.API_RATE_LIMIT, metavar="RATE",
                       help="requests per caller, and failed logins per client address "
                       "(default: %(default)s)")
    group.add_argument("--api-trusted-proxies", default="", metavar="CIDR,...",
                       help="proxies whose X-Forwarded-For names the client (default: none, "
                       "the TCP peer is the client)")
    group.add_argument("--api-token-audience", action="append", default=[],
                       metavar="AUDIENCE",
                       help="audience ServiceAccount tokens must carry (repeatable; default: "
                       f"{DEFAULT_TOKEN_AUDIENCE})")
    if not service_accounts:
        group.add_argument("--api-service-accounts", action="store_true",
                           help="also accept Kubernetes ServiceAccount tokens, authorized for "
                           "--api-reconciler NAMESPACE/NAME (needs a kubeconfig)")
        group.add_argument("--api-reconciler", default=None, metavar="NAMESPACE/NAME",
                           help="the ReelReconciler whose 'reconcile' subresource service "
                           "callers must be allowed to update")


def api_settings(args: argparse.Namespace, service_accounts: bool | None = None,
                 environ: Mapping[str, str] | None = None) -> ApiSettings | None:
    """The endpoint's settings from parsed flags and the environment (read now, once); None
    when --api-port is not given."""
    if args.api_port is None:
        return None
    accounts = service_accounts if service_accounts is not None else args.api_service_accounts
    reconciler = args.api_reconciler
    if reconciler is not None and reconciler.count("/") != 1:
        raise ConfigError(invalid("--api-reconciler", "expected NAMESPACE/NAME", reconciler))
    if accounts and service_accounts is None and reconciler is None:
        raise ConfigError("--api-service-accounts needs --api-reconciler NAMESPACE/NAME: the "
                          "ReelReconciler service callers must be allowed to reconcile")
    env = os.environ if environ is None else environ
    emulator = env.get(EMULATOR_ENV, "").strip() or None
    project = args.api_firebase_project
    if emulator is not None and not (project or "").startswith(DEMO_PREFIX):
        raise ConfigError(
            f"{EMULATOR_ENV} is set: the endpoint would accept unsigned tokens, which only a "
            f"Firebase demo project may (--api-firebase-project {DEMO_PREFIX}...); unset it "
            "anywhere else")
    audiences = tuple(args.api_token_audience) or (DEFAULT_TOKEN_AUDIENCE,)
    if not all(audience.strip() for audience in audiences):
        raise ConfigError(invalid("--api-token-audience", "expected a non-empty audience",
                                  ""))
    settings = ApiSettings(
        port=args.api_port, reconciler=reconciler,
        firebase_project=project,
        firebase_certs_url=checked_certs_url(args.api_firebase_certs_url),
        cors_origins=tuple(args.api_cors_origin), rate_limit=args.api_rate_limit,
        service_accounts=accounts, token_audiences=audiences,
        trusted_proxies=trusted_proxies(args.api_trusted_proxies), auth_emulator=emulator)
    settings.rate()
    return settings


def checked_certs_url(url: str) -> str:
    """https, or http on a loopback address (a test's own key server): the keys decide who
    is who, so they never travel in clear over a network."""
    problem = "expected an https URL (http only on a loopback address)"
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise ConfigError(invalid("--api-firebase-certs-url", problem, url)) from exc
    if not host or parts.scheme not in ("https", "http"):
        raise ConfigError(invalid("--api-firebase-certs-url", problem, url))
    if parts.scheme == "http" and not _loopback(host):
        raise ConfigError(invalid("--api-firebase-certs-url", problem, url))
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def trusted_proxies(text: str) -> tuple[Network, ...]:
    if not text.strip():
        return ()
    try:
        return parse_networks(text)
    except ValueError as exc:
        raise ConfigError(invalid("--api-trusted-proxies", f"expected CIDR,... such as "
                                  f"10.0.0.0/8,fd00::/8 ({exc})", text)) from exc
