"""The reconcile endpoint of `watch` against the real emulators, with Firebase ID tokens
signed by keys minted here and published as Google publishes its own."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from openapi_spec_validator import validate

from controller.model import Action
from tests.support.app import ReelApp, Timing
from tests.support.emulators import Emulator, Emulators, MissingPrerequisite, firebase_auth_emulator
from tests.support.endpoint import SEED_KEYS, Endpoint, error_of, start_endpoint
from tests.support.harness import metric
from tests.support.patience import bound, wait_for
from tests.support.seed import World
from tests.support.tokens import TokenMint, emulator_user, published_keys


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
    assert report["action"] == "corrected" and report["missingClips"] == [paths[1]]
    assert report["originalStatus"] == "ready" and report["correctedStatus"] == "draft"
    assert world.project("p-mine")["clipFilenames"] == [paths[0], None, paths[2]]
    assert "Access-Control-Allow-Origin" not in answer.headers, "CORS is off by default"
    again = endpoint.reconcile("p-mine", mint.token("alice"), body={})
    assert again.status_code == 200 and again.json()["report"]["action"] == "no_change"
    text = endpoint.watch.get("/metrics").text
    assert metric(text, "reel_reconciler_reconcile_total", trigger="api",
                  action="corrected") == 1
    assert metric(text, "reel_reconciler_api_requests_total", caller="user", code="200") == 2
    assert "alice" not in text and "p-mine" not in text, "ids are never metric labels"


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


def test_bad_credentials_are_401_and_write_nothing(endpoint: Endpoint, world: World,
                                                   mint: TokenMint) -> None:
    _behind(world, "p-locked", "alice")
    before = world.update_time("p-locked")
    now = int(time.time())
    kubernetes_like = mint.published.sign({"iss": "https://kubernetes.default.svc",
                                           "sub": "system:serviceaccount:x:y",
                                           "aud": ["https://kubernetes.default.svc"],
                                           "exp": now + 600, "iat": now})
    refused = {
        "no header": {},
        "basic": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        "empty bearer": {"Authorization": "Bearer "},
        "not a JWT": {"Authorization": "Bearer not-a-token"},
        "forged": {"Authorization": f"Bearer {mint.forged('alice')}"},
        "expired": {"Authorization": "Bearer " + mint.token(
            "alice", iat=now - 7200, auth_time=now - 7200, exp=now - 3600)},
        "wrong audience": {"Authorization": "Bearer " + mint.token("alice", aud="other-app")},
        "wrong issuer": {"Authorization": "Bearer " + mint.token(
            "alice", iss="https://securetoken.google.com/other-app")},
        "unsigned (alg none)": {"Authorization": f"Bearer {mint.unsigned('alice')}"},
        "service token, service callers off": {"Authorization": f"Bearer {kubernetes_like}"},
    }
    for name, headers in refused.items():
        answer = endpoint.reconcile("p-locked", headers=headers)
        assert answer.status_code == 401, f"{name}: {answer.status_code} {answer.text}"
        assert error_of(answer)["code"] == "unauthenticated", name
        assert answer.headers.get("WWW-Authenticate") == "Bearer", name
    assert world.update_time("p-locked") == before
    text = endpoint.watch.get("/metrics").text
    assert metric(text, "reel_reconciler_api_requests_total", caller="unknown",
                  code="401") == len(refused)


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
        assert "without valid credentials" in error_of(failed[3])["message"]


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
        assert generation.join() == "completed"
    assert actions and all(r["action"] in ("skipped", "no_change") for r in actions), actions
    assert any(r["action"] == "skipped" and r.get("reason") for r in actions)
    doc = world.project("p-live")
    assert doc["status"] == "ready" and doc["clipFilenames"] == generation.made
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
    assert swept["p-out"]["action"] == "skipped" and "p-twin" not in swept
    cleanup = json.loads(forced[2].stdout)
    assert cleanup["staleJobs"] == [] and cleanup["optedOut"] == [job]
    assert ref.get().update_time == written, "written by a trigger"
    assert (ref.get().to_dict(), world.job(job)) == snapshot
    assert world.job(job)["status"] == "processing"


FIREBASE_PROJECT = "demo-reels"
"""A demo- project: the Auth emulator runs it offline."""


@pytest.fixture(scope="module")
def auth_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    try:
        emulator = firebase_auth_emulator(tmp_path_factory.mktemp("firebase"), FIREBASE_PROJECT)
    except MissingPrerequisite as exc:
        pytest.fail(str(exc), pytrace=False)
    emulator.start(timeout=bound(60))
    yield emulator
    emulator.stop()


def test_tokens_of_the_auth_emulator_as_the_frontend_gets_them(
        emulators: Emulators, world: World, tmp_path: Path, auth_emulator: Emulator,
        mint: TokenMint) -> None:
    alice, alice_token = emulator_user(auth_emulator.host, "alice@example.com")
    _mallory, mallory_token = emulator_user(auth_emulator.host, "mallory@example.com")
    _behind(world, "p-alice", alice)
    endpoint = start_endpoint(emulators, world, tmp_path / "watch.log",
                              "--api-firebase-project", FIREBASE_PROJECT,
                              env={"FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.host})
    try:
        mine = endpoint.reconcile("p-alice", alice_token)
        assert mine.status_code == 200, mine.text
        assert mine.json()["report"]["action"] == "corrected"
        theirs = endpoint.reconcile("p-alice", mallory_token)
        assert theirs.status_code == 404 and error_of(theirs)["code"] == "not_found"
        # Another project's token: the audience is still checked.
        other = endpoint.reconcile("p-alice", mint.unsigned(alice))
        assert other.status_code == 401, other.text
        assert "FIREBASE_AUTH_EMULATOR_HOST is set" in endpoint.watch.logs()
    finally:
        endpoint.watch.kill()
