"""The reconcile endpoint of `watch` against the real emulators, with Firebase ID tokens
signed by keys minted here and published as Google publishes its own, and under attack:
forged claims, hostile input, floods from one address, a proxy in front."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from openapi_spec_validator import validate

from devkit.app import ReelApp, Timing
from devkit.emulators import (
    FIREBASE_PROJECT,
    Emulator,
    Emulators,
    free_port,
)
from devkit.seed import World
from reel_reconciler.model import Action
from tests.support.endpoint import (
    ANONYMOUS_401,
    SEED_KEYS,
    Endpoint,
    error_of,
    refused_logins,
    start_endpoint,
)
from tests.support.harness import metric
from tests.support.patience import bound, wait_for
from tests.support.tokens import TokenMint, b64, compact, emulator_user, published_keys

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mint(emulators: Emulators) -> Iterator[TokenMint]:
    with published_keys(TokenMint(emulators.gcp_project)) as published:
        yield published


def _endpoint(emulators: Emulators, world: World, tmp_path: Path, mint: TokenMint,
              *args: str) -> Iterator[Endpoint]:
    endpoint = start_endpoint(emulators, world, tmp_path / "watch.log",
                              "--api-firebase-certs-url", mint.certs_url, *args)
    try:
        yield endpoint
    finally:
        endpoint.watch.kill()


@pytest.fixture
def endpoint(emulators: Emulators, world: World, tmp_path: Path,
             mint: TokenMint) -> Iterator[Endpoint]:
    yield from _endpoint(emulators, world, tmp_path, mint)


def _behind(world: World, project_id: str, user: str) -> list[str]:
    """A ready project whose second clip was deleted from GCS behind it."""
    _, paths = world.generated_project(project_id, user=user, status="ready", prompts=3,
                                       in_gcs=3, in_db=3)
    world.delete_object(paths[1])
    return paths


def test_the_owner_reconciles_and_gets_the_seeds_report(endpoint: Endpoint, world: World,
                                                        mint: TokenMint) -> None:
    paths = _behind(world, "p-mine", "alice")
    answer = endpoint.reconcile("p-mine", mint.token("alice"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is True
    report = body["report"]
    assert list(report)[:len(SEED_KEYS)] == SEED_KEYS
    assert report["action"] == "corrected"
    assert report["missingClips"] == [paths[1]]
    assert report["originalStatus"] == "ready"
    assert report["correctedStatus"] == "draft"
    assert world.project("p-mine")["clipFilenames"] == [paths[0], None, paths[2]]
    assert "Access-Control-Allow-Origin" not in answer.headers, "CORS is off by default"
    again = endpoint.reconcile("p-mine", mint.token("alice"), body={})
    assert again.status_code == 200
    assert again.json()["report"]["action"] == "no_change"
    text = endpoint.watch.get("/metrics").text
    assert metric(text, "reel_reconciler_reconcile_total", trigger="api",
                  action="corrected") == 1
    assert metric(text, "reel_reconciler_api_requests_total", caller="user", code="200") == 2
    assert "alice" not in text, "ids are never metric labels"
    assert "p-mine" not in text, "ids are never metric labels"


def test_another_users_project_is_as_missing_as_a_missing_one(endpoint: Endpoint, world: World,
                                                               mint: TokenMint) -> None:
    _behind(world, "p-hers", "alice")
    before = world.update_time("p-hers")
    theirs = endpoint.reconcile("p-hers", mint.token("mallory"))
    missing = endpoint.reconcile("p-nowhere", mint.token("mallory"))
    assert theirs.status_code == missing.status_code == 404
    assert error_of(theirs)["code"] == error_of(missing)["code"] == "not_found"
    assert (error_of(theirs)["message"].replace("p-hers", "ID")
            == error_of(missing)["message"].replace("p-nowhere", "ID"))
    assert world.update_time("p-hers") == before
    assert endpoint.reconcile("p-hers", mint.token("alice")).status_code == 200


def _refusals(mint: TokenMint) -> dict[str, dict[str, str]]:
    """Every way a token can be wrong, each as the Authorization header that sends it."""
    now = int(time.time())
    kubernetes_like = mint.published.sign({"iss": "https://kubernetes.default.svc",
                                           "sub": "system:serviceaccount:x:y",
                                           "aud": ["https://kubernetes.default.svc"],
                                           "exp": now + 600, "iat": now})
    tokens = {
        "forged": mint.forged("alice"),
        "no kid": mint.without_kid("alice"),
        "unknown kid": mint.unknown_kid("alice"),
        "HS256 keyed with the certificate": mint.hs256_with_certificate("alice"),
        "ES256": mint.es256("alice"),
        "expired": mint.token("alice", iat=now - 7200, auth_time=now - 7200, exp=now - 3600),
        "iat in the future": mint.token("alice", iat=now + 600),
        "auth_time in the future": mint.token("alice", auth_time=now + 600),
        "aud a list": mint.token("alice", aud=[mint.project]),
        "aud a list of two": mint.token("alice", aud=[mint.project, "other-app"]),
        "wrong audience": mint.token("alice", aud="other-app"),
        "other issuer": mint.token("alice", iss="https://securetoken.google.com/other-app"),
        "issuer with a trailing slash": mint.token(
            "alice", iss=f"https://securetoken.google.com/{mint.project}/"),
        "empty sub": mint.token("alice", sub=""),
        "129-character sub": mint.token("x" * 129, sub="x" * 129),
        "sub a number": mint.token("alice", sub=42),
        "exp a string": mint.token("alice", exp=str(now + 3600)),
        "exp huge": mint.token("alice", exp=10 ** 400),
        "no iat": mint.token("alice", iat=None),
        "unsigned (alg none)": mint.unsigned("alice"),
        "service token, service callers off": kubernetes_like,
        "not a JWT": "not-a-token",
        "bad base64": "@@@.@@@.@@@",
        "a JSON array payload": compact({"alg": "RS256", "kid": mint.published.kid}, {})
        .replace(b64(b"{}"), b64(b"[]")),
    }
    refused = {
        "no header": {},
        "basic": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        "empty bearer": {"Authorization": "Bearer "},
    }
    refused.update({name: {"Authorization": f"Bearer {token}"}
                    for name, token in tokens.items()})
    return refused


def test_bad_credentials_are_401_and_write_nothing(emulators: Emulators, world: World,
                                                   tmp_path: Path, mint: TokenMint) -> None:
    _behind(world, "p-locked", "alice")
    before = world.update_time("p-locked")
    refused = _refusals(mint)
    assert mint.token("alice") != mint.forged("alice")
    for endpoint in _endpoint(emulators, world, tmp_path, mint, "--api-rate-limit",
                              "1000/minute"):
        for name, headers in refused.items():
            answer = endpoint.reconcile("p-locked", headers=headers)
            assert answer.status_code == 401, f"{name}: {answer.status_code} {answer.text}"
            assert error_of(answer) == ANONYMOUS_401, name
            assert answer.headers.get("WWW-Authenticate") == "Bearer", name
        assert world.update_time("p-locked") == before
        assert endpoint.reconcile("p-locked", mint.token("alice")).status_code == 200, (
            "the right token still works")
        text = endpoint.watch.get("/metrics").text
        log = endpoint.log_text()
    assert metric(text, "reel_reconciler_api_requests_total", caller="unknown",
                  code="401") == len(refused)
    assert metric(text, "reel_reconciler_api_refused_logins_total") == len(refused)
    for reason in ("no_credentials", "bad_signature", "unknown_key", "wrong_algorithm",
                   "expired", "not_yet_valid", "wrong_audience", "wrong_issuer",
                   "invalid_claims", "malformed_token"):
        assert metric(text, "reel_reconciler_api_refused_logins_total", reason=reason) >= 1, (
            reason)
    # One log line per refused login, with the address and why; never the token.
    lines = refused_logins(log)
    assert len(lines) == len(refused), lines
    assert all(line["address"] == "127.0.0.1" and line["reason"] for line in lines)
    assert {line["callerKind"] for line in lines} == {"user", "unknown"}
    for headers in refused.values():
        token = headers.get("Authorization", "").removeprefix("Bearer ").strip()
        for piece in token.split("."):
            assert len(piece) < 8 or piece not in log, "a token in the log"


def test_malformed_requests_get_json_errors_and_write_nothing(endpoint: Endpoint, world: World,
                                                              mint: TokenMint) -> None:
    _behind(world, "p-input", "alice")
    before = world.update_time("p-input")
    token = mint.token("alice")
    cases = [
        (endpoint.reconcile("__reserved__", token), 400, "invalid_project_id"),
        (endpoint.reconcile("x" * 1501, token), 400, "invalid_project_id"),
        (endpoint.reconcile("%2E%2E", token), 400, "invalid_project_id"),
        (endpoint.reconcile("p-input", token, data=b"{not json"), 400, "invalid_body"),
        (endpoint.reconcile("p-input", token, body=["p-input"]), 400, "invalid_body"),
        (endpoint.reconcile("p-input", token, data=b'{"pad": "' + b"x" * 20_000 + b'"}'), 413,
         "body_too_large"),
        (endpoint.reconcile("p-input", token, method="GET"), 405, "method_not_allowed"),
        (endpoint.reconcile("p-input", token, method="PUT"), 405, "method_not_allowed"),
        (endpoint.get("/api/reel/projects"), 404, "no_route"),
    ]
    for answer, status, code in cases:
        assert answer.status_code == status, (code, answer.status_code, answer.text)
        assert error_of(answer)["code"] == code, answer.text
    assert world.update_time("p-input") == before


def test_past_the_rate_limit_429_with_retry_after(emulators: Emulators, world: World,
                                                  tmp_path: Path, mint: TokenMint) -> None:
    _behind(world, "p-busy", "alice")
    world.add_project("p-other", user="bob")
    for endpoint in _endpoint(emulators, world, tmp_path, mint, "--api-rate-limit", "3/minute"):
        answers = [endpoint.reconcile("p-busy", mint.token("alice")) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert error_of(answers[3])["code"] == "rate_limited"
        assert 1 <= int(answers[3].headers["Retry-After"]) <= 60
        assert endpoint.reconcile("p-other", mint.token("bob")).status_code == 200, (
            "the limit is per caller")
        # Failed logins count per address: each may cost the reconciler a token check.
        failed = [endpoint.reconcile("p-busy", mint.forged("alice")) for _ in range(4)]
        assert [a.status_code for a in failed] == [401, 401, 401, 429]
        assert error_of(failed[3])["code"] == "rate_limited"
        assert "from this address" in error_of(failed[3])["message"]
        # Before login, a 429 says only that: not the limit, not the caller.
        assert "3 per 1 minute" not in failed[3].text
        # A valid caller from the same address is not charged for its own requests, but
        # neither does it unlock the address: the address is limited before any check.
        assert endpoint.reconcile("p-other", mint.token("bob")).status_code == 429


def test_an_outage_is_503_with_retry_after_and_nothing_written(
        own_gcs: Emulators, tmp_path: Path, mint: TokenMint) -> None:
    world = World.create(own_gcs.gcp_project)
    _behind(world, "p-dark", "alice")
    before = world.update_time("p-dark")
    for endpoint in _endpoint(own_gcs, world, tmp_path, mint):
        own_gcs.gcs.stop()
        answer = endpoint.reconcile("p-dark", mint.token("alice"))
        assert answer.status_code == 503, answer.text
        assert error_of(answer)["code"] == "unavailable"
        assert int(answer.headers["Retry-After"]) > 0
    assert world.update_time("p-dark") == before


def test_openapi_describes_the_endpoint(endpoint: Endpoint) -> None:
    answer = endpoint.get("/openapi.json")
    assert answer.status_code == 200
    spec = answer.json()
    validate(spec)
    operation = spec["paths"]["/api/reel/projects/{projectId}/reconcile"]["post"]
    assert {"200", "400", "401", "404", "429", "503"} <= set(operation["responses"])
    report = spec["components"]["schemas"]["Report"]["properties"]
    assert set(SEED_KEYS) <= set(report)


def test_cors_only_for_configured_origins(emulators: Emulators, world: World, tmp_path: Path,
                                          mint: TokenMint) -> None:
    _behind(world, "p-web", "alice")
    allowed, other = "https://reels.example.com", "https://evil.example.net"
    for endpoint in _endpoint(emulators, world, tmp_path, mint, "--api-cors-origin", allowed):
        preflight = {"Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization"}
        ok = endpoint.reconcile("p-web", method="OPTIONS", headers={"Origin": allowed,
                                                                     **preflight})
        assert ok.status_code == 200, ok.text
        assert ok.headers["Access-Control-Allow-Origin"] == allowed
        assert "AUTHORIZATION" in ok.headers["Access-Control-Allow-Headers"].upper()
        refused = endpoint.reconcile("p-web", method="OPTIONS",
                                     headers={"Origin": other, **preflight})
        assert "Access-Control-Allow-Origin" not in refused.headers
        answer = endpoint.reconcile("p-web", mint.token("alice"), headers={"Origin": allowed})
        assert answer.status_code == 200
        assert answer.headers["Access-Control-Allow-Origin"] == allowed
        assert "Retry-After" in answer.headers.get("Access-Control-Expose-Headers", "")


def test_a_live_generation_raced_through_the_endpoint_is_never_written(
        emulators: Emulators, world: World, tmp_path: Path, mint: TokenMint) -> None:
    app = ReelApp(world, Timing(window=0.1, per_prompt=0.5, exists_check=0.2))
    app.create_project("p-live", user="alice", prompts=3)
    for endpoint in _endpoint(emulators, world, tmp_path, mint, "--api-rate-limit",
                              "10000/minute"):
        generation = app.generation("p-live").start().run_in_thread()
        actions = []
        while not generation.finished.is_set():
            answer = endpoint.reconcile("p-live", mint.token("alice"))
            assert answer.status_code == 200, answer.text
            actions.append(answer.json()["report"])
        assert generation.join(bound(60)) == "completed"
    assert actions, actions
    assert all(r["action"] in ("skipped", "no_change") for r in actions), actions
    assert any(r["action"] == "skipped" and r.get("reason") for r in actions)
    doc = world.project("p-live")
    assert doc["status"] == "ready"
    assert doc["clipFilenames"] == generation.made
    assert "lastReconciliation" not in doc
    assert Action.CORRECTED.value not in {r["action"] for r in actions}


def _log_records(endpoint: Endpoint) -> list[dict[str, Any]]:
    records = []
    for line in endpoint.watch.log.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _opted_out_skips(endpoint: Endpoint, project_id: str) -> int:
    return sum(1 for r in _log_records(endpoint)
               if r.get("projectId") == project_id and r.get("trigger") == "listener"
               and r.get("action") == "skipped"
               and str(r.get("reason", "")).startswith("opted out"))


def test_an_opted_out_project_is_never_written_by_any_trigger(
        emulators: Emulators, world: World, tmp_path: Path, mint: TokenMint,
        cli: Callable[..., CompletedProcess[str]]) -> None:
    """Stuck for ever, with a stale job: every trigger would correct it, and each one only
    reports it. A twin without the opt-out proves the listeners were at work."""
    job, _ = world.generated_project("p-out", user="alice", status="generating", prompts=2,
                                     in_gcs=2, in_db=0, job_status="processing",
                                     job_updated_ago=timedelta(hours=2), reconcilerOptOut=True)
    world.generated_project("p-twin", user="alice", status="generating", prompts=2, in_gcs=2,
                            in_db=0, job_status="failed")
    ref = world.projects().document("p-out")
    endpoint = start_endpoint(emulators, world, tmp_path / "watch.log", "--settle", "0s",
                              "--api-firebase-certs-url", mint.certs_url)
    try:
        wait_for(lambda: world.project("p-twin")["status"] == "ready", 30,
                 lambda: f"the listeners to correct the twin\n{endpoint.watch.logs()}")
        wait_for(lambda: _opted_out_skips(endpoint, "p-out") >= 1, 30,
                 lambda: f"the listeners to report p-out\n{endpoint.watch.logs()}")
        seen = _opted_out_skips(endpoint, "p-out")
        written = ref.update({"title": "renamed by the app"}).update_time  # a fresh event
        snapshot = (ref.get().to_dict(), world.job(job))
        wait_for(lambda: _opted_out_skips(endpoint, "p-out") > seen, 30,
                 lambda: f"the listeners to report p-out again\n{endpoint.watch.logs()}")
        answer = endpoint.reconcile("p-out", mint.token("alice"))
        assert answer.status_code == 200, answer.text
        report = answer.json()["report"]
        assert report["action"] == "skipped", report
        assert report["reason"] == "opted out: reconcilerOptOut is true, nothing is written"
        assert report["correctedStatus"] == "ready", "observed: the drift is reported"
    finally:
        endpoint.watch.kill()
    forced = [cli("reconcile", "p-out", "--output", "json"),
              cli("sweep", "--output", "json"),
              cli("cleanup-stale-jobs", "--output", "json")]
    for proc in forced:
        assert proc.returncode == 0, proc.stderr
    [reconciled] = json.loads(forced[0].stdout)
    assert reconciled["action"] == "skipped"
    swept = {r["projectId"]: r for r in json.loads(forced[1].stdout)["reports"]}
    assert swept["p-out"]["action"] == "skipped"
    assert "p-twin" not in swept
    cleanup = json.loads(forced[2].stdout)
    assert cleanup["staleJobs"] == []
    assert cleanup["optedOut"] == [job]
    assert ref.get().update_time == written, "written by a trigger"
    assert (ref.get().to_dict(), world.job(job)) == snapshot
    assert world.job(job)["status"] == "processing"


def test_tokens_of_the_auth_emulator_as_the_frontend_gets_them(
        emulators: Emulators, world: World, tmp_path: Path, auth_emulator: Emulator) -> None:
    alice, alice_token = emulator_user(auth_emulator.host, "alice@example.com")
    _mallory, mallory_token = emulator_user(auth_emulator.host, "mallory@example.com")
    _behind(world, "p-alice", alice)
    demo = TokenMint(FIREBASE_PROJECT)
    other = TokenMint("demo-other")
    now = int(time.time())
    endpoint = start_endpoint(emulators, world, tmp_path / "watch.log",
                              "--api-firebase-project", FIREBASE_PROJECT,
                              env={"FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.host})
    try:
        mine = endpoint.reconcile("p-alice", alice_token)
        assert mine.status_code == 200, mine.text
        assert mine.json()["report"]["action"] == "corrected"
        theirs = endpoint.reconcile("p-alice", mallory_token)
        assert theirs.status_code == 404
        assert error_of(theirs)["code"] == "not_found"
        # Unsigned, yet every claim is checked: another project, an expired token (115
        # days, as found in review), a token from the future.
        for token in (other.unsigned(alice),
                      demo.unsigned(alice, iat=now - 115 * 86400,
                                    auth_time=now - 115 * 86400, exp=now - 115 * 86400 + 3600),
                      demo.unsigned(alice, iat=now + 3600),
                      demo.unsigned(alice, sub="")):
            refused = endpoint.reconcile("p-alice", token)
            assert refused.status_code == 401, refused.text
            assert error_of(refused) == ANONYMOUS_401
        # The emulator's own shape, re-made here: accepted, so the refusals above are the
        # claims' doing.
        assert endpoint.reconcile("p-alice", demo.unsigned(alice)).status_code == 200
        assert "FIREBASE_AUTH_EMULATOR_HOST is set" in endpoint.log_text()
    finally:
        endpoint.watch.kill()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("FIREBASE_AUTH_EMULATOR_HOST", "KUBECONFIG")
                and not k.startswith("KUBERNETES_")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "reel_reconciler.cli", *args], capture_output=True,
                          text=True, timeout=bound(30), env=full_env, cwd=REPO, check=False)


def _one_line_exit_2(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("command", ["watch", "operator"])
@pytest.mark.parametrize("project", [None, "prod-project", "demoproject", "my-demo-x"])
def test_the_emulator_variable_outside_a_demo_project_refuses_to_start(
        command: str, project: str | None, emulators: Emulators, world: World) -> None:
    args = [command, "--api-port", str(free_port())]
    if project is not None:
        args += ["--api-firebase-project", project]
    proc = _cli(*args, env={**emulators.env(), "REEL_BUCKET": world.bucket,
                            "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"})
    _one_line_exit_2(proc, "FIREBASE_AUTH_EMULATOR_HOST is set", "demo-")


@pytest.mark.parametrize(("args", "needle"), [
    (["--api-firebase-certs-url", "http://keys.example.com/certs"],
     "invalid --api-firebase-certs-url 'http://keys.example.com/certs': expected an https"),
    (["--api-firebase-certs-url", "file:///etc/keys.json"], "invalid --api-firebase-certs-url"),
    (["--api-trusted-proxies", "10.0.0.1/8"], "invalid --api-trusted-proxies '10.0.0.1/8'"),
    (["--api-trusted-proxies", "a-proxy"], "invalid --api-trusted-proxies 'a-proxy'"),
])
def test_unsafe_endpoint_settings_refuse_to_start(args: list[str], needle: str,
                                                   emulators: Emulators, world: World) -> None:
    proc = _cli("watch", "--api-port", str(free_port()), *args,
                env={**emulators.env(), "REEL_BUCKET": world.bucket})
    _one_line_exit_2(proc, needle)


def test_nested_json_in_a_token_is_a_401_then_429_never_a_traceback(
        emulators: Emulators, world: World, tmp_path: Path, mint: TokenMint) -> None:
    depth = 1100
    payload = '{"iss":"https://securetoken.google.com/x","a":' + "[" * depth + "]" * depth + "}"
    header = b64(b'{"alg":"RS256"}')
    token = f"{header}.{b64(payload.encode())}.c2ln"
    assert 2000 < len(token) < 4000
    for endpoint in _endpoint(emulators, world, tmp_path, mint, "--api-rate-limit",
                              "10/minute"):
        codes = [endpoint.reconcile("p-any", token).status_code for _ in range(40)]
        log = endpoint.log_text()
    assert codes == [401] * 10 + [429] * 30, codes
    assert "Traceback" not in log
    assert "RecursionError" not in log
    assert len(refused_logins(log)) == 40


def test_hostile_bodies_after_login_are_400(endpoint: Endpoint, world: World,
                                            mint: TokenMint) -> None:
    _behind(world, "p-body", "alice")
    before = world.update_time("p-body")
    for data in (b"[" * 5000, b'{"a":' * 3000, b'{"a": NaN}', b'{"a": 1, "a": 2}',
                 b"\xff\xfe{}", b'"a string"', b"1e999999"):
        answer = endpoint.reconcile("p-body", mint.token("alice"), data=data)
        assert answer.status_code == 400, (data[:20], answer.status_code, answer.text)
        assert error_of(answer)["code"] == "invalid_body"
    assert "Traceback" not in endpoint.log_text()
    assert world.update_time("p-body") == before


def test_nothing_is_revealed_before_login(emulators: Emulators, world: World, tmp_path: Path,
                                          mint: TokenMint) -> None:
    """No certs URL, project, reconciler, address or version in any answer to a caller not
    identified; the details are in the log."""
    _behind(world, "p-quiet", "alice")
    secrets = [mint.certs_url, "127.0.0.1", emulators.gcp_project, "local/watch", "watch",
               "aiohttp", "Python", "securetoken"]
    for endpoint in _endpoint(emulators, world, tmp_path, mint, "--api-rate-limit",
                              "1000/minute"):
        answers = [endpoint.reconcile("p-quiet", mint.token("alice", aud="other-app")),
                   endpoint.reconcile("p-quiet", mint.token("alice", iss="https://x")),
                   endpoint.reconcile("p-quiet", mint.forged("alice")),
                   endpoint.reconcile("p-quiet")]
        for answer in answers:
            assert answer.status_code == 401
            shown = answer.text + json.dumps(dict(answer.headers))
            for secret in secrets:
                assert secret not in shown, (secret, shown)
        reasons = [line["reason"] for line in refused_logins(endpoint.log_text())]
        assert reasons == ["wrong_audience", "wrong_issuer", "bad_signature",
                           "no_credentials"], "the details are logged"


def test_unreachable_keys_are_a_quiet_503(emulators: Emulators, world: World,
                                           tmp_path: Path, mint: TokenMint) -> None:
    closed = f"http://127.0.0.1:{free_port()}/certs"
    endpoint = start_endpoint(emulators, world, tmp_path / "watch.log",
                              "--api-firebase-certs-url", closed)
    try:
        answer = endpoint.reconcile("p-any", mint.token("alice"))
        assert answer.status_code == 503, answer.text
        assert error_of(answer)["code"] == "unavailable"
        assert int(answer.headers["Retry-After"]) > 0
        assert closed not in answer.text
        assert "127.0.0.1" not in answer.text
        assert closed in endpoint.log_text()
    finally:
        endpoint.watch.kill()


def test_a_jwk_set_url_works(emulators: Emulators, world: World, tmp_path: Path) -> None:
    _behind(world, "p-jwk", "alice")
    with published_keys(TokenMint(emulators.gcp_project), jwks=True) as jwk_mint:
        for endpoint in _endpoint(emulators, world, tmp_path, jwk_mint):
            answer = endpoint.reconcile("p-jwk", jwk_mint.token("alice"))
            assert answer.status_code == 200, answer.text
            assert endpoint.reconcile("p-jwk", jwk_mint.forged("alice")).status_code == 401
        assert jwk_mint.fetches == 1


def test_security_headers(endpoint: Endpoint, world: World, mint: TokenMint) -> None:
    _behind(world, "p-head", "alice")
    answers = {
        "200": endpoint.reconcile("p-head", mint.token("alice")),
        "401": endpoint.reconcile("p-head"),
        "404": endpoint.reconcile("p-nowhere", mint.token("alice")),
        "no route": endpoint.get("/nothing"),
        "openapi": endpoint.get("/openapi.json"),
    }
    assert answers["200"].status_code == 200
    for name, answer in answers.items():
        assert answer.headers["X-Content-Type-Options"] == "nosniff", name
        assert answer.headers["Server"] == "reel-reconciler", name
        if name != "openapi":
            assert answer.headers["Cache-Control"] == "no-store", name


def _client_limited(endpoint: Endpoint, forwarded_for: str, limit: int) -> list[int]:
    return [endpoint.reconcile("p-any", "not-a-token",
                               headers={"X-Forwarded-For": forwarded_for}).status_code
            for _ in range(limit + 1)]


def test_behind_a_trusted_proxy_each_client_has_its_own_limit(
        emulators: Emulators, world: World, tmp_path: Path, mint: TokenMint) -> None:
    limit = ["--api-rate-limit", "2/minute"]
    # Trusting no proxy (the default), X-Forwarded-For is the client's word: ignored.
    for endpoint in _endpoint(emulators, world, tmp_path, mint, *limit):
        assert _client_limited(endpoint, "198.51.100.1", 2) == [401, 401, 429]
        assert _client_limited(endpoint, "198.51.100.2", 0) == [429]
    for endpoint in _endpoint(emulators, world, tmp_path, mint, *limit,
                              "--api-trusted-proxies", "127.0.0.0/8,10.0.0.0/8"):
        assert _client_limited(endpoint, "198.51.100.1", 2) == [401, 401, 429]
        # Another client behind the same proxy, and behind a second trusted hop.
        assert _client_limited(endpoint, "198.51.100.2, 10.1.2.3", 2) == [401, 401, 429]
        # A client lying left of the hop the proxy wrote changes nothing.
        assert _client_limited(endpoint, "203.0.113.9, 198.51.100.1", 0) == [429]
        # IPv6 clients are counted by their /64.
        assert _client_limited(endpoint, "2001:db8:1:2::1", 2) == [401, 401, 429]
        assert _client_limited(endpoint, "2001:db8:1:2:ffff::7", 0) == [429]
        assert _client_limited(endpoint, "2001:db8:1:3::1", 2) == [401, 401, 429]
        log = endpoint.log_text()
    addresses = {line["address"] for line in refused_logins(log)}
    assert {"198.51.100.1", "198.51.100.2", "2001:db8:1:2::1"} <= addresses
    assert "203.0.113.9" not in addresses
