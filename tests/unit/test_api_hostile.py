"""The endpoint's defences one by one, without a server: token parsing, the claims of a
Firebase ID token, the client address behind proxies, the rate limits' memory, the key
documents, the reviews' cache and the pool of outbound calls."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import threading
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp.test_utils import make_mocked_request
from limits import parse

from reel_reconciler.api.app import ReconcileEndpoint
from reel_reconciler.api.cache import Recent
from reel_reconciler.api.errors import ApiError
from reel_reconciler.api.firebase import ISSUER_PREFIX, FirebaseTokens, check_claims
from reel_reconciler.api.keys import KeysUnavailable, PublishedKeys, max_age, parse_keys
from reel_reconciler.api.outbound import Outbound
from reel_reconciler.api.peers import client_address, limit_key, parse_networks
from reel_reconciler.api.rate import MAX_KEYS, Rate, RateLimit
from reel_reconciler.api.settings import ApiSettings
from reel_reconciler.api.tokens import MAX_NESTING, nesting, parse_jwt, strict_json
from reel_reconciler.model import ReconcilerId
from tests.support.patience import bound
from tests.support.tokens import SigningKey, TokenMint, b64

PROJECT = "demo-reels"
NOW = 1_700_000_000.0


def _status(call: Any, *args: Any) -> int:
    try:
        call(*args)
    except ApiError as exc:
        return exc.status
    return 200


# Tokens taken apart.

def _jwt(header: str, payload: str, signature: str = "c2ln") -> str:
    return f"{b64(header.encode())}.{b64(payload.encode())}.{signature}"


def test_a_well_formed_token_comes_apart() -> None:
    token = SigningKey.mint("k1").sign({"sub": "alice", "n": [1, {"a": None}]})
    jwt = parse_jwt(token)
    assert jwt.header == {"typ": "JWT", "alg": "RS256", "kid": "k1"}
    assert jwt.claims == {"sub": "alice", "n": [1, {"a": None}]}
    assert jwt.signing_input == token.rsplit(".", 1)[0].encode()
    assert len(jwt.signature) == 256


@pytest.mark.parametrize("token", [
    "", "a", "a.b", "a.b.c.d", "@@.@@.@@", "a=.b.c",
    _jwt("{", "{}"), _jwt("[]", "{}"), _jwt("{}", '"text"'), _jwt("{}", "null"),
    _jwt("{}", '{"a": NaN}'), _jwt("{}", '{"a": Infinity}'), _jwt("{}", '{"a":1,"a":2}'),
    _jwt("{}", "{" + '"a":' * 1100 + "1" + "}" * 1100),
    _jwt("{}", '{"a":' + "[" * 1100 + "]" * 1100 + "}"),
    _jwt("{}", "{}", "not base64!"),
    b64(b"\xff\xfe") + "." + b64(b"{}") + ".",
    _jwt("{}", "{}" + " " * 9000),
])
def test_anything_else_is_401_never_an_exception(token: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_jwt(token)
    assert (raised.value.status, raised.value.reason) == (401, "malformed_token")


def test_nesting_is_counted_without_recursion() -> None:
    assert nesting('{"a": [1, {"b": "[[[[{{{"}]}') == 3
    assert nesting('"\\"[[[["') == 0
    deep = "[" * 200_000 + "]" * 200_000
    assert nesting(deep) == 200_000
    assert strict_json(deep) is None
    assert strict_json("[" * MAX_NESTING + "]" * MAX_NESTING) is not None


# The claims of a Firebase ID token.

def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER_PREFIX + PROJECT, "aud": PROJECT, "sub": "alice", "iat": NOW - 60,
        "auth_time": NOW - 60, "exp": NOW + 3600}
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"iss": ISSUER_PREFIX + "other"}, "wrong_issuer"),
    ({"iss": ISSUER_PREFIX + PROJECT + "/"}, "wrong_issuer"),
    ({"iss": None}, "wrong_issuer"),
    ({"aud": [PROJECT]}, "wrong_audience"),
    ({"aud": "other"}, "wrong_audience"),
    ({"exp": NOW - 11}, "expired"),
    ({"exp": None}, "invalid_claims"),
    ({"exp": "9999999999"}, "invalid_claims"),
    ({"exp": True}, "invalid_claims"),
    ({"exp": 10 ** 400}, "invalid_claims"),
    ({"iat": NOW + 11}, "not_yet_valid"),
    ({"iat": None}, "invalid_claims"),
    ({"auth_time": NOW + 11}, "not_yet_valid"),
    ({"auth_time": None}, "invalid_claims"),
    ({"nbf": NOW + 11}, "not_yet_valid"),
    ({"sub": ""}, "invalid_claims"),
    ({"sub": "x" * 129}, "invalid_claims"),
    ({"sub": 7}, "invalid_claims"),
])
def test_claims_refused(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(ApiError) as raised:
        check_claims(_claims(**overrides), PROJECT, NOW)
    assert (raised.value.status, raised.value.reason) == (401, reason)


@pytest.mark.parametrize("overrides", [
    {}, {"sub": "x" * 128}, {"iat": NOW + 9, "auth_time": NOW + 9}, {"exp": NOW - 9},
    {"nbf": NOW}, {"exp": NOW + 3600.5}])
def test_claims_accepted(overrides: dict[str, Any]) -> None:
    assert check_claims(_claims(**overrides), PROJECT, NOW) == overrides.get("sub", "alice")


# The client's address.

TRUSTED = parse_networks("10.0.0.0/8, 127.0.0.1, fd00::/8")


@pytest.mark.parametrize(("peer", "forwarded", "client"), [
    ("198.51.100.7", ["203.0.113.1"], "198.51.100.7"),  # an untrusted peer: its word ignored
    ("10.0.0.1", [], "10.0.0.1"),
    ("10.0.0.1", ["203.0.113.1"], "203.0.113.1"),
    ("10.0.0.1", ["1.1.1.1, 203.0.113.1"], "203.0.113.1"),  # the left-most is the client's word
    ("10.0.0.1", ["203.0.113.1, 10.9.9.9"], "203.0.113.1"),  # two trusted hops
    ("10.0.0.1", ["203.0.113.1", "10.9.9.9"], "203.0.113.1"),  # headers in order
    ("10.0.0.1", ["10.1.1.1, 10.2.2.2"], "10.1.1.1"),  # all trusted: the farthest
    ("10.0.0.1", ["203.0.113.1, garbage"], "10.0.0.1"),  # unreadable: the proxy itself
    ("10.0.0.1", ["[2001:db8::1]:443"], "2001:db8::1"),
    ("10.0.0.1", ["203.0.113.1:5000"], "203.0.113.1"),
    ("::ffff:10.0.0.1", ["203.0.113.1"], "203.0.113.1"),  # mapped v4
    ("fd00::1", ["2001:db8::1"], "2001:db8::1"),
    (None, ["203.0.113.1"], "unknown"),
])
def test_client_address(peer: str | None, forwarded: list[str], client: str) -> None:
    assert client_address(peer, forwarded, TRUSTED) == client


def test_no_proxy_is_trusted_by_default() -> None:
    assert client_address("127.0.0.1", ["203.0.113.1"], ()) == "127.0.0.1"


def test_ipv6_is_counted_by_its_64() -> None:
    assert limit_key("2001:db8:1:2::1") == limit_key("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert limit_key("2001:db8:1:2::1") != limit_key("2001:db8:1:3::1")
    assert limit_key("203.0.113.1") != limit_key("203.0.113.2")


@pytest.mark.parametrize(("text", "problem"), [
    ("", "no CIDR given"), (",", "no CIDR given"), ("10.0.0.1/8", "has host bits set"),
    ("10.0.0.0/33", "does not appear to be"), ("proxy", "does not appear to be"),
])
def test_bad_networks(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_networks(text)


# The rate limits.

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_per_interval_with_retry_after() -> None:
    clock = Clock()
    limit = RateLimit(Rate.of(parse("3/minute")), clock=clock)
    for _ in range(3):
        limit.check("k")
    with pytest.raises(ApiError) as raised:
        limit.check("k")
    assert (raised.value.status, raised.value.retry_after) == (429, 20)
    clock.now += 19.5
    assert _status(limit.check, "k") == 429, "refused requests are not counted"
    clock.now += 0.5
    limit.check("k")
    assert _status(limit.check, "k") == 429
    assert _status(limit.check, "other") == 200


def test_a_refund_gives_one_back() -> None:
    limit = RateLimit(Rate.of(parse("2/hour")), clock=Clock())
    for _ in range(10):
        limit.check("k")
        limit.refund("k")
    limit.check("k")
    limit.check("k")
    assert _status(limit.check, "k") == 429


def _many_keys() -> tuple[int, int, int, int, int]:
    """200,000 addresses and 200,000 callers, each seen once, while one address keeps
    trying: the tables' sizes, the refusals of the one that kept trying, and the bytes
    traced (grown past the tables' size, and in all)."""
    clock = Clock()
    rate = Rate.of(parse("5/hour"))
    per_address, per_caller = RateLimit(rate, clock=clock), RateLimit(rate, clock=clock)
    for _ in range(5):
        per_address.check("address:198.51.100.1")
    tracemalloc.start()
    try:
        refused = 0
        baseline = 0
        for i in range(200_000):
            clock.now += 0.001
            per_address.check(f"address:2001:db8:{i >> 16:x}:{i & 0xffff:x}::/64")
            per_caller.check(f"user:uid-{i}")
            if i % 100 == 0:
                refused += _status(per_address.check, "address:198.51.100.1") == 429
            if i == 2 * MAX_KEYS:  # past the cap's first churn, the tables at their size
                baseline = tracemalloc.get_traced_memory()[0]
        used = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return len(per_address), len(per_caller), refused, used - baseline, used


def test_memory_is_bounded_and_limits_hold_under_many_keys() -> None:
    """At most MAX_KEYS tracked per limit, a bounded amount of memory, and the address that
    keeps trying stays limited throughout. Measured in a process of its own: tracemalloc
    counts every thread's allocations, and the test process runs other tests' threads."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        addresses, callers, refused, grown, used = pool.submit(_many_keys).result()
    assert addresses <= MAX_KEYS
    assert callers <= MAX_KEYS
    assert refused == 2000, "the address that kept trying was limited every time"
    assert grown < 500_000, f"{grown} bytes more after 100,000 more keys"
    assert used < 2 * 20_000_000, f"{used} bytes for two limits of {MAX_KEYS} keys"


def test_expired_keys_are_forgotten() -> None:
    clock = Clock()
    limit = RateLimit(Rate.of(parse("10/second")), clock=clock)
    for i in range(1000):
        limit.check(f"k{i}")
    clock.now += 10
    limit.check("late")
    assert len(limit) == 1


def test_the_endpoint_keeps_its_memory_through_100000_addresses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The real handler, 100,000 clients behind a trusted proxy without credentials: each a
    401 until its limit, memory bounded; one client that keeps on is refused every time."""
    runtime = SimpleNamespace(
        reconciler=ReconcilerId("main", "ns"), key="ns/main",
        engine=SimpleNamespace(firestore=SimpleNamespace(connection=SimpleNamespace(
            project=PROJECT))))
    settings = ApiSettings(port=1, rate_limit="3/hour",
                           trusted_proxies=parse_networks("127.0.0.1"))
    endpoint = ReconcileEndpoint(settings, None, lambda: {"ns/main": cast(Any, runtime)})
    monkeypatch.setattr("reel_reconciler.api.app.log.disabled", True)

    async def run() -> tuple[dict[int, int], list[int]]:
        codes: dict[int, int] = {}
        persistent = []
        for i in range(100_000):
            client = f"2001:db8:{i >> 16:x}:{i & 0xffff:x}::1"
            answer = await endpoint.reconcile(_request(client))
            codes[answer.status] = codes.get(answer.status, 0) + 1
            if i % 1000 == 0:
                persistent.append((await endpoint.reconcile(_request("203.0.113.50"))).status)
        return codes, persistent

    codes, persistent = asyncio.run(run())
    assert codes == {401: 100_000}
    assert persistent[:3] == [401, 401, 401]
    assert set(persistent[3:]) == {429}
    assert len(endpoint.per_address) <= MAX_KEYS


_BASE = make_mocked_request("POST", "/api/reel/projects/p/reconcile",
                            match_info={"project_id": "p"})


def _request(forwarded_for: str) -> Any:
    """A request as the trusted proxy on loopback forwards it."""
    return _BASE.clone(headers={"X-Forwarded-For": forwarded_for}, remote="127.0.0.1")


# The reviews' cache.

def test_recent_answers_expire_and_are_bounded() -> None:
    clock = Clock()
    recent: Recent[str, int] = Recent(10, 3, clock=clock)
    recent.put("a", 1)
    recent.put("short", 2, ttl=1)
    clock.now += 2
    assert recent.get("short") is None
    assert recent.get("a") == 1
    for key in "bcd":
        recent.put(key, 0)
    assert len(recent) == 3, "the least recently used went"
    assert recent.get("a") is None, "the least recently used went"
    recent.put("long", 3, ttl=100)
    clock.now += 11
    assert recent.get("long") is None, "never longer than the cache's own ttl"


# Key documents.

def test_keys_both_ways() -> None:
    key = SigningKey.mint("k1")
    as_certificates = parse_keys(json.dumps({"k1": key.certificate_pem}).encode())
    as_jwks = parse_keys(json.dumps({"keys": [key.jwk()]}).encode())
    assert as_certificates["k1"].public_numbers() == as_jwks["k1"].public_numbers()


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b"{}", b'{"keys": "x"}', b'{"keys": [{"kty": "EC"}]}',
    b'{"k1": "not a certificate"}', b"[" * 100_000,
    json.dumps({"keys": [{"kty": "RSA", "kid": "k", "n": b64(b"\x01" * 64), "e": "AQAB"}]})
    .encode(),  # 512 bits: too weak
])
def test_bad_key_documents_are_unavailable_not_errors(body: bytes) -> None:
    with pytest.raises(KeysUnavailable):
        parse_keys(body)


@pytest.mark.parametrize(("header", "seconds"), [
    ("public, max-age=22000, must-revalidate, no-transform", 22000), ("", 3600),
    ("max-age=1", 60), ("max-age=99999999", 86400), ("s-maxage=5", 3600)])
def test_max_age(header: str, seconds: float) -> None:
    assert max_age(header) == seconds


# The pool of outbound calls.

def test_a_slow_call_is_a_503_and_a_full_queue_refuses_at_once() -> None:
    release = threading.Event()

    async def run() -> list[int]:
        timeout = bound(0.5)
        outbound = Outbound(workers=1, max_queued=2, timeout=timeout)
        statuses = []
        first = asyncio.ensure_future(outbound.run(lambda: release.wait(10)))
        second = asyncio.ensure_future(outbound.run(lambda: release.wait(10)))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        try:
            await outbound.run(lambda: None)
        except ApiError as exc:
            statuses.append(exc.status)
        assert time.monotonic() - started < timeout / 2, "refused without waiting"
        for waiting in (first, second):
            try:
                await waiting
            except ApiError as exc:
                statuses.append(exc.status)
        release.set()
        outbound.close()
        return statuses

    assert asyncio.run(run()) == [503, 503, 503]


# Unsigned tokens.

def _uid(token: str, unsigned: bool) -> str:
    async def outage(_: Any) -> Any:
        raise KeysUnavailable("no keys here")
    tokens = FirebaseTokens(PublishedKeys("https://keys.invalid/", outage), unsigned)
    return asyncio.run(tokens.uid(parse_jwt(token), PROJECT))


def test_unsigned_tokens_only_when_started_for_the_emulator() -> None:
    mint = TokenMint(PROJECT)
    now = int(time.time())
    assert _uid(mint.unsigned("alice"), unsigned=True) == "alice"
    refused = {
        "not started for the emulator": (mint.unsigned("alice"), False),
        "expired 115 days ago": (mint.unsigned("alice", iat=now - 115 * 86400,
                                                auth_time=now - 115 * 86400,
                                                exp=now - 115 * 86400 + 3600), True),
        "from the future": (mint.unsigned("alice", iat=now + 600), True),
        "another project": (TokenMint("demo-other").unsigned("alice"), True),
        "unsigned with a signature": (mint.unsigned("alice") + "c2ln", True),
    }
    for name, (token, unsigned) in refused.items():
        assert _status(_uid, token, unsigned) == 401, name
