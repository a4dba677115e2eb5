"""Every call the product makes with the `kubernetes` client gives up on a server that took
the request and went quiet (a real socket that never answers), instead of waiting forever.

The shipped timeout is lowered for speed; the calls must read it when they run. Each call
runs in a thread given a bound: a call made without a timeout outlives it and fails the test.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from kubernetes import client

from reel_reconciler import defaults
from reel_reconciler.api.errors import ApiError
from reel_reconciler.api.service_accounts import ServiceAccounts
from reel_reconciler.operator.status import WRITE_ATTEMPTS, StatusWriter
from tests.support.netfault import SilentServer
from tests.support.patience import bound

TIMEOUT = 1.0


@pytest.fixture
def silent(monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentServer]:
    monkeypatch.setattr(defaults, "KUBE_REQUEST_TIMEOUT", timedelta(seconds=TIMEOUT))
    server = SilentServer().start()
    try:
        yield server
    finally:
        server.close()  # also frees a call that hung, so the thread below can end


def _configuration(server: SilentServer) -> client.Configuration:
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.port}"
    return configuration


def _finishes(call: Callable[[], Any], within: float) -> tuple[float, BaseException | None]:
    """How long `call` took and what it raised; fails if it is still running after `within`."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)
        else:
            outcome.append(None)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within)
    assert outcome, f"still waiting on a silent API server after {within:.0f}s: no timeout"
    return time.monotonic() - started, outcome[0]


def test_a_service_token_review_on_a_silent_server_is_a_503(silent: SilentServer) -> None:
    accounts = ServiceAccounts(client.ApiClient(_configuration(silent)))
    elapsed, raised = _finishes(lambda: accounts.authorize("token", "ns", "main"),
                                bound(TIMEOUT + 5))
    assert isinstance(raised, ApiError), raised
    assert raised.status == 503
    assert "cannot be reached" in str(raised)
    assert elapsed >= TIMEOUT
    assert [request.split(b" ")[:2] for request in silent.requests] == [
        [b"POST", b"/apis/authentication.k8s.io/v1/tokenreviews"]]


def test_a_status_write_on_a_silent_server_gives_up_after_its_attempts(
        silent: SilentServer, caplog: pytest.LogCaptureFixture) -> None:
    """Each attempt goes out on a new connection: the one that timed out is dropped."""
    previous = client.Configuration.get_default_copy()
    client.Configuration.set_default(_configuration(silent))
    try:
        writer = StatusWriter("ns", "main")
    finally:
        client.Configuration.set_default(previous)
    writer.set("Ready", True, "Started", "watching")
    with caplog.at_level(logging.WARNING, logger="reel_reconciler.operator.status"):
        elapsed, raised = _finishes(lambda: asyncio.run(writer.write()),
                                    bound(WRITE_ATTEMPTS * TIMEOUT + 5))
    assert raised is None, "a failed status write is logged, not raised"
    assert elapsed >= WRITE_ATTEMPTS * TIMEOUT
    path = b"/apis/reelmaker.io/v1/namespaces/ns/reelreconcilers/main/status"
    assert [request.split(b" ")[:2] for request in silent.requests] == [
        [b"PATCH", path]] * WRITE_ATTEMPTS
    failed = [r for r in caplog.records if r.getMessage() == "status write failed"]
    assert [getattr(r, "attempts", None) for r in failed] == [WRITE_ATTEMPTS]
