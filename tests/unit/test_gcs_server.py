"""The benchmark's GCS stand-in answers as GCS does, through the real client: name order,
pages, and partial responses (`fields`), since the benchmark's figures rest on it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from devkit.gcs_server import Bucket, Handler, parse_fields, select


def test_fields_select_nested_keys_of_every_item() -> None:
    selection = parse_fields("items(name,size),nextPageToken")
    body = {"kind": "storage#objects", "nextPageToken": "t",
            "items": [{"name": "a", "size": "1", "bucket": "b"}, {"name": "c", "size": "2"}]}
    assert select(body, selection) == {"nextPageToken": "t",
                                       "items": [{"name": "a", "size": "1"},
                                                 {"name": "c", "size": "2"}]}
    assert select(body, parse_fields("")) == body


@pytest.mark.parametrize(("bad", "problem"), [
    ("items(name", "unbalanced parentheses"), ("a,,b", "empty field name"),
    ("a)b", "unexpected"), ("(name)", "empty field name"),
])
def test_malformed_fields_are_refused(bad: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_fields(bad)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    manifest = tmp_path / "objects.tsv"
    names = ["r/ab/p/x.mp4", "r/ab-c/p/y.mp4", "r/ab/q/z.mp4", "other/w.mp4"]
    manifest.write_text("".join(f"{name}\t16\t2026-11-30T07:00:00.123456Z\n" for name in names))
    Handler.bucket = Bucket("bkt", manifest)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_client_lists_in_byte_order_by_pages_with_only_the_fields_asked(
        server: str) -> None:
    anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
    client = storage.Client(project="p", credentials=anonymous,
                            client_options={"api_endpoint": server})
    blobs = client.list_blobs("bkt", prefix="r/", page_size=2,
                              fields="items(name,size),nextPageToken")
    pages = [[(blob.name, blob.size, blob.updated, blob.content_type) for blob in page]
             for page in blobs.pages]
    assert pages == [[("r/ab-c/p/y.mp4", 16, None, None), ("r/ab/p/x.mp4", 16, None, None)],
                     [("r/ab/q/z.mp4", 16, None, None)]]
    full = next(iter(client.list_blobs("bkt", prefix="r/ab/q/")))
    assert full.content_type == "video/mp4"
    assert full.updated is not None


def test_a_listing_between_offsets_holds_only_the_names_between(server: str) -> None:
    """startOffset inclusive, endOffset exclusive, as GCS (a ranged sweep's listing)."""
    anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
    client = storage.Client(project="p", credentials=anonymous,
                            client_options={"api_endpoint": server})

    def names(**offsets: str) -> list[str]:
        return [blob.name for blob in client.list_blobs("bkt", prefix="r/", page_size=1,
                                                        **offsets)]

    assert names(start_offset="r/ab/") == ["r/ab/p/x.mp4", "r/ab/q/z.mp4"]
    assert names(end_offset="r/ab/") == ["r/ab-c/p/y.mp4"]
    assert names(start_offset="r/ab/p/x.mp4", end_offset="r/ab/q/z.mp4") == ["r/ab/p/x.mp4"]
    assert names(start_offset="r/b") == []
