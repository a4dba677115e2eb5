"""The endpoint's calls to other services: the token keys from a real HTTP server, and the
API server's reviews from a stand-in that answers what a conforming kube-apiserver never
does (an audience it was not asked for, no audience, silence): faults the real one in
tests/e2e cannot be made to show. Each call has a timeout, concurrent identical calls are
one, outcomes are remembered briefly."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from reel_reconciler.api.callers import Audience, Callers, Refused
from reel_reconciler.api.errors import ApiError
from reel_reconciler.api.firebase import FirebaseTokens
from reel_reconciler.api.keys import PublishedKeys
from reel_reconciler.api.outbound import Outbound
from reel_reconciler.api.service_accounts import ServiceAccounts
from reel_reconciler.api.tokens import parse_jwt
from tests.support.tokens import TokenMint, published_keys

AUDIENCE = Audience("demo-reels", "ns", "main")


@pytest.fixture
def mint() -> Iterator[TokenMint]:
    with published_keys(TokenMint("demo-reels")) as published:
        yield published


def test_concurrent_key_fetches_are_one(mint: TokenMint) -> None:
    async def run() -> list[str]:
        outbound = Outbound()
        tokens = FirebaseTokens(PublishedKeys(mint.certs_url, outbound.run))
        try:
            token = parse_jwt(mint.token("alice"))
            uids = await asyncio.gather(*(tokens.uid(token, "demo-reels") for _ in range(50)))
            unknown = parse_jwt(mint.unknown_kid("alice"))
            for _ in range(20):
                with pytest.raises(ApiError):
                    await tokens.uid(unknown, "demo-reels")
            return list(uids)
        finally:
            outbound.close()

    assert asyncio.run(run()) == ["alice"] * 50
    assert mint.fetches == 1, "one fetch for 50 callers, none for 20 unknown key ids"


@pytest.fixture
def silent() -> Iterator[str]:
    """An address that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_a_silent_key_server_is_a_503_within_the_timeout(silent: str) -> None:
    async def run() -> int:
        outbound = Outbound()
        tokens = FirebaseTokens(PublishedKeys(silent + "/certs", outbound.run))
        try:
            await tokens.uid(parse_jwt(TokenMint("demo-reels").token("alice")), "demo-reels")
        except ApiError as exc:
            return exc.status
        finally:
            outbound.close()
        return 200

    started = time.monotonic()
    assert asyncio.run(run()) == 503
    assert time.monotonic() - started < 10


@dataclass
class FakeApiServer:
    """Answers TokenReviews with `audiences` and allows every SubjectAccessReview."""

    audiences: list[str] | None
    requests: dict[str, int] = field(default_factory=dict)
    url: str = ""


@pytest.fixture
def api_server() -> Iterator[FakeApiServer]:
    fake = FakeApiServer(audiences=["reel-reconciler"])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body: dict[str, Any] = json.loads(self.rfile.read(length))
            kind = self.path.rsplit("/", 1)[-1]
            fake.requests[kind] = fake.requests.get(kind, 0) + 1
            if kind == "tokenreviews":
                status: dict[str, Any] = {"authenticated": True, "user": {
                    "username": "system:serviceaccount:ns:caller", "groups": []}}
                if fake.audiences is not None:
                    status["audiences"] = fake.audiences
            else:
                status = {"allowed": True}
            answer = json.dumps({**body, "status": status}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_: Any, **__: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def _accounts(url: str) -> ServiceAccounts:
    configuration = client.Configuration()
    configuration.host = url
    return ServiceAccounts(client.ApiClient(configuration))


def _identify(url: str, token: str, times: int = 1) -> list[str | int]:
    async def run() -> list[str | int]:
        outbound = Outbound()
        callers = Callers(FirebaseTokens(PublishedKeys("https://keys.invalid", outbound.run)),
                          _accounts(url), outbound)

        async def one() -> str | int:
            try:
                return (await callers.identify(f"Bearer {token}", AUDIENCE)).id
            except Refused as exc:
                return exc.status
        try:
            return list(await asyncio.gather(*(one() for _ in range(times))))
        finally:
            outbound.close()
    return asyncio.run(run())


SERVICE_TOKEN = TokenMint("x").published.sign({"iss": "https://kubernetes.default.svc",
                                              "sub": "system:serviceaccount:ns:caller"})


@pytest.mark.parametrize(("audiences", "outcome"), [
    (["reel-reconciler"], "system:serviceaccount:ns:caller"),
    (["https://kubernetes.default.svc"], 401),
    (["reel-reconciler", "https://kubernetes.default.svc"], 401),
    ([], 401),
    (None, 401),
])
def test_the_confirmed_audiences_are_checked(api_server: FakeApiServer,
                                             audiences: list[str] | None,
                                             outcome: str | int) -> None:
    api_server.audiences = audiences
    assert _identify(api_server.url, SERVICE_TOKEN) == [outcome]


def test_identical_tokens_together_are_one_review(api_server: FakeApiServer) -> None:
    assert _identify(api_server.url, SERVICE_TOKEN, times=20) == [
        "system:serviceaccount:ns:caller"] * 20
    assert api_server.requests == {"tokenreviews": 1, "subjectaccessreviews": 1}


def test_a_silent_api_server_is_a_503_within_the_timeout(silent: str) -> None:
    started = time.monotonic()
    assert _identify(silent, SERVICE_TOKEN) == [503]
    assert time.monotonic() - started < 10
