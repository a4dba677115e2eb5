"""The sweep's merge, pure: user groups, their folder order, the ordered cursors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reel_reconciler.engine.sweep import JOB_FIELDS, PROJECT_FIELDS
from reel_reconciler.engine.sweep.cursor import FolderListing, JobsByUser, OrderedCursor
from reel_reconciler.engine.sweep.order import UserGroup, in_folder_order, user_groups
from reel_reconciler.model import (
    WRITTEN_FIELDS,
    ObjectInfo,
    _JobFields,
    _ProjectFields,
    folder_user,
)
from reel_reconciler.stores.firestore import Document


def _doc(doc_id: str, user: object) -> Document:
    return Document(doc_id, {"userId": user}, datetime(2025, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("users", [
    ["a", "ab", "ab-c", "ab-c-d", "ab.c", "ab0", "b"],
    ["x", "x\x01", "x ", "x-", "x.", "x0", "x\u00e9", "x-\u00e9"],
    ["", "a", "a!", "a!b", "a!b!"],
])
def test_groups_come_out_in_folder_order(users: list[str]) -> None:
    stream = [_doc(f"{i}", user) for i, user in enumerate(sorted(users))]
    groups = list(in_folder_order(user_groups([stream[:2], stream[2:]])))
    named = [g.user for g in groups if g.user is not None]
    assert named == sorted(named, key=lambda user: (user + "/").encode())
    assert sorted(doc.id for g in groups for doc in g.documents) == sorted(
        doc.id for doc in stream)


def test_groups_without_a_folder_pass_through() -> None:
    stream = [_doc("n", None), _doc("i", 3), _doc("s", "a/b"), _doc("ok", "a")]
    groups = list(in_folder_order(user_groups([stream])))
    assert [(g.user, [d.id for d in g.documents]) for g in groups] == [
        (None, ["n"]), (None, ["i"]), (None, ["s"]), ("a", ["ok"])]


def test_listing_never_answers_for_a_folder_it_has_passed() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    names = ["r/ab-c/p/x", "r/ab.c/p/x", "r/ab/p/x", "r/ab/q/y", "r/ab0/p/x"]
    pages = [[ObjectInfo(name, 1, now) for name in names[i:i + 2]] for i in range(0, 5, 2)]
    listing = FolderListing(pages)
    assert [o.name for o in listing.take("r/ab-c/") or []] == ["r/ab-c/p/x"]
    assert [o.name for o in listing.take("r/ab/") or []] == ["r/ab/p/x", "r/ab/q/y"]
    assert listing.take("r/ab.c/") is None  # passed: the caller must list it itself
    assert [o.name for o in listing.take("r/ab0/") or []] == ["r/ab0/p/x"]
    assert listing.take("r/zz/") == []


def test_streams_read_every_field_the_policy_reads() -> None:
    assert set(PROJECT_FIELDS) == set(_ProjectFields.model_fields) | set(WRITTEN_FIELDS)
    assert set(JOB_FIELDS) == set(_JobFields.model_fields) | {"userId"}


def test_user_group_keeps_equal_users_together() -> None:
    stream = [_doc("1", "u"), _doc("2", "u"), _doc("3", "v")]
    assert [len(g.documents) for g in user_groups([stream[:1], stream[1:]])] == [2, 1]
    assert UserGroup("u", []).user == "u"


def test_jobs_by_user_hands_out_each_users_jobs_once_in_folder_order() -> None:
    stream = [_doc("j1", "ab"), _doc("j2", "ab"), _doc("j3", "ab-c"), _doc("j4", "b"),
              _doc("j5", None)]
    jobs = JobsByUser(in_folder_order(user_groups([stream])))
    assert [d.id for d in jobs.take("ab-c") or []] == ["j3"]
    assert [d.id for d in jobs.take("ab") or []] == ["j1", "j2"]
    assert jobs.take("ab") is None  # passed
    assert jobs.take("aa") is None  # before what was passed: never a partial answer
    assert jobs.take("az") == []
    assert [d.id for d in jobs.take("b") or []] == ["j4"]
    assert jobs.take("c") == []


def test_cursor_passes_over_what_lies_before_the_prefix() -> None:
    cursor = OrderedCursor(["a/1", "b/1", "b/2", "c/1"], key=str)
    assert cursor.take("b/") == ["b/1", "b/2"]
    assert cursor.take("c/") == ["c/1"]
    assert cursor.take("d/") == []
    assert OrderedCursor([], key=str).take("a/") == []


@pytest.mark.parametrize(("value", "expected"), [
    ("u1", "u1"), ("", None), (None, None), (3, None), ("a/b", None), ("a\\b", None),
    (".", None), ("..", None), ("x" * 129, None), ("x" * 128, "x" * 128), ("a\x00", None),
])
def test_only_a_user_id_that_names_one_folder_has_a_folder(value: object,
                                                           expected: str | None) -> None:
    assert folder_user(value) == expected
