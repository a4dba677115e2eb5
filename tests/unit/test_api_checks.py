"""The endpoint's pure checks: which ids are Firestore document ids, which headers carry a
bearer token, how a rate is spelled."""

from __future__ import annotations

import jsonschema
import pytest

from reel_reconciler.api.callers import bearer_token
from reel_reconciler.api.errors import ApiError
from reel_reconciler.api.openapi import RECONCILE_PATH, document
from reel_reconciler.api.request import checked_id
from reel_reconciler.api.settings import parse_rate
from reel_reconciler.config import ConfigError


@pytest.mark.parametrize("project_id", ["p-7f3a", "4f1c2b9e-uuid", "x" * 1500, "é" * 750,
                                        "a.b", "__not-reserved", "reserved__"])
def test_document_ids_pass(project_id: str) -> None:
    assert checked_id(project_id) == project_id


@pytest.mark.parametrize("project_id", ["", ".", "..", "a/b", "__x__", "____", "x" * 1501,
                                        "line\nbreak", "tab\there", "\x7f", "nel\x85"])
def test_anything_else_is_400(project_id: str) -> None:
    with pytest.raises(ApiError) as raised:
        checked_id(project_id)
    assert (raised.value.status, raised.value.code) == (400, "invalid_project_id")


@pytest.mark.parametrize("project_id", ["é" * 751, "😀" * 376])
def test_too_many_bytes_names_no_project(project_id: str) -> None:
    """Within the description's 1,500 characters, over Firestore's 1,500 bytes."""
    with pytest.raises(ApiError) as raised:
        checked_id(project_id)
    assert (raised.value.status, raised.value.code) == (404, "not_found")


@pytest.mark.parametrize(("project_id", "valid"), [
    ("p-1", True), ("é", True), ("__", True), ("___", True), ("\u2028", True),
    (".", False), ("..", False), ("__a__", False), ("a/b", False), ("\x00", False),
    ("\x9f", False)])
def test_the_description_and_the_check_agree(project_id: str, valid: bool) -> None:
    """The pattern of /openapi.json, read as JSON Schema reads it, says what checked_id
    says."""
    pattern = document()["paths"][RECONCILE_PATH]["post"]["parameters"][0]["schema"]
    assert jsonschema.Draft202012Validator(pattern).is_valid(project_id) is valid
    try:
        checked_id(project_id)
    except ApiError:
        assert not valid
    else:
        assert valid


@pytest.mark.parametrize(("header", "token"), [("Bearer abc", "abc"), ("bearer abc ", "abc"),
                                               ("  Bearer   abc", "abc")])
def test_bearer_tokens(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic abc", "abc",
                                    "Token abc"])
def test_no_bearer_token_is_401(header: str | None) -> None:
    with pytest.raises(ApiError) as raised:
        bearer_token(header)
    assert raised.value.status == 401
    assert raised.value.headers == {"WWW-Authenticate": "Bearer"}


def test_rates() -> None:
    assert parse_rate("30/minute", "--api-rate-limit").amount == 30
    assert parse_rate("5 per second", "--api-rate-limit").get_expiry() == 1
    with pytest.raises(ConfigError, match="invalid --api-rate-limit 'often'"):
        parse_rate("often", "--api-rate-limit")
