"""The reconcile endpoint fuzzed from its own description: Schemathesis generates requests
(valid ones and ones that break the description) from `/openapi.json` and sends them to a
live `watch`, anonymous and as a logged-in user; every default check must hold: no 5xx, each
status, content type and body as described, authentication not ignored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devkit.emulators import Emulators
from devkit.seed import World
from tests.support.endpoint import Endpoint, start_endpoint
from tests.support.tokens import TokenMint, published_keys

EXAMPLES = 150
"""Per operation and generation mode."""


@pytest.fixture(scope="module")
def mint(emulators: Emulators) -> Iterator[TokenMint]:
    with published_keys(TokenMint(emulators.gcp_project)) as published:
        yield published


@pytest.fixture(scope="module")
def fuzzed(emulators: Emulators, mint: TokenMint,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    emulators.reset_firestore()
    world = World.create(emulators.gcp_project)
    for project_id, user in (("p-1", "alice"), ("p-2", "bob"), ("0", "alice")):
        world.add_project(project_id, user=user)
    endpoint = start_endpoint(emulators, world, tmp_path_factory.mktemp("fuzz") / "watch.log",
                              "--api-firebase-certs-url", mint.certs_url,
                              "--api-rate-limit", "1000000/minute")
    try:
        yield endpoint
    finally:
        endpoint.watch.kill()


OWN_PROJECTS = ("p-1", "0")
"""alice's: a logged-in alice is answered 200 with a report, which is checked too."""


def _fuzz(endpoint: Endpoint, headers: dict[str, str] | None) -> set[int]:
    described = schemathesis.openapi.from_url(f"{endpoint.base}/openapi.json")
    operations = [result.ok() for result in described.get_all_operations()]
    assert operations, "the description has no operation"
    strategies = [operation.as_strategy(generation_mode=mode)
                  for operation in operations for mode in schemathesis.GenerationMode]
    strategies += [operation.as_strategy(path_parameters={"projectId": project_id})
                   for operation in operations for project_id in OWN_PROJECTS]
    strategy = st.one_of(strategies)
    statuses: set[int] = set()

    @given(case=strategy)
    @settings(max_examples=EXAMPLES * len(operations) * 2, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        statuses.add(case.call_and_validate(headers=headers).status_code)

    check()
    assert "Traceback" not in endpoint.log_text()
    return statuses


def test_anonymous_callers(fuzzed: Endpoint) -> None:
    assert _fuzz(fuzzed, None) <= {401, 404, 405}


def test_a_logged_in_user(fuzzed: Endpoint, mint: TokenMint) -> None:
    statuses = _fuzz(fuzzed, {"Authorization": f"Bearer {mint.token('alice')}"})
    assert {200, 400, 404} <= statuses, statuses
