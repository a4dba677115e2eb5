"""A read-only stand-in for the GCS JSON API, for benchmark sizes fake-gcs-server cannot hold.

fake-gcs-server 1.54 (the bundled binary) inserts each object in time proportional to the
bucket (its `-data` preload of 10k objects takes ~20-35 s, 20k ~75 s: quadratic) and scans
the whole bucket for every list page, so 100k+ objects are out of reach and its listing, not
the client, would be measured. This server answers the three calls the reconciler and the
seed's approach make, as GCS does: list a prefix in name order with `maxResults` and
`pageToken`, between `startOffset` and `endOffset` (a binary search, so a page costs the
same in any bucket size), get one object's metadata (404 if absent), and get a bucket. Like
GCS it answers with only the `fields` asked for (a partial response:
`items(name,size),nextPageToken`). Objects come from a manifest
written by `bench.run`: one `name<TAB>size<TAB>updated` line each.

    python -m devkit.gcs_server --port 4443 --bucket reel-bench --manifest objects.tsv
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


class Bucket:
    """Objects sorted by name (Python orders str by code point, as GCS orders UTF-8 bytes)."""

    def __init__(self, name: str, manifest: Path) -> None:
        self.name = name
        rows = sorted(line.rstrip("\n").split("\t") for line in manifest.open(encoding="utf-8")
                      if line.strip())
        self.names = [row[0] for row in rows]
        self.meta = {row[0]: (row[1], row[2]) for row in rows}

    def resource(self, name: str) -> dict[str, Any]:
        size, updated = self.meta[name]
        return {"kind": "storage#object", "bucket": self.name, "name": name, "size": size,
                "updated": updated, "timeCreated": updated, "generation": "1",
                "contentType": "video/mp4"}

    def page(self, prefix: str, token: str | None, limit: int, start: str = "",
             end: str | None = None) -> dict[str, Any]:
        """Up to `limit` objects under `prefix` from `start` (inclusive) to `end` (exclusive),
        after the page token if any, as GCS's startOffset and endOffset bound a listing."""
        at = bisect.bisect_right(self.names, token) if token else bisect.bisect_left(
            self.names, max(prefix, start))

        def listed(index: int) -> bool:
            name = self.names[index] if index < len(self.names) else None
            return name is not None and name.startswith(prefix) and (end is None or name < end)

        items: list[dict[str, Any]] = []
        while len(items) < limit and listed(at):
            items.append(self.resource(self.names[at]))
            at += 1
        body: dict[str, Any] = {"kind": "storage#objects", "items": items}
        if listed(at) and items:
            body["nextPageToken"] = items[-1]["name"]
        return body


Selection = dict[str, "Selection"]
"""A parsed `fields` parameter: each selected key with its sub-selection (empty: all of it)."""


def parse_fields(text: str) -> Selection:
    """`items(name,size),nextPageToken` -> {"items": {"name": {}, "size": {}}, ...}."""
    if not text.strip():
        return {}
    selection, rest = _parse_list(text.replace(" ", ""))
    if rest:
        raise ValueError(f"unexpected {rest!r} in fields")
    return selection


def _parse_list(text: str) -> tuple[Selection, str]:
    selection: Selection = {}
    while True:
        name_end = next((at for at, char in enumerate(text) if char in ",()"), len(text))
        name, text = text[:name_end], text[name_end:]
        if not name:
            raise ValueError("empty field name")
        sub: Selection = {}
        if text.startswith("("):
            sub, text = _parse_list(text[1:])
            if not text.startswith(")"):
                raise ValueError("unbalanced parentheses in fields")
            text = text[1:]
        selection[name] = sub
        if not text.startswith(","):
            return selection, text
        text = text[1:]


def select(body: Any, selection: Selection) -> Any:
    """Only the selected parts of `body`, applied to each element of a list."""
    if not selection:
        return body
    if isinstance(body, list):
        return [select(item, selection) for item in body]
    if isinstance(body, dict):
        return {key: select(body[key], sub) for key, sub in selection.items() if key in body}
    return body


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each response waits ~40 ms for a delayed ACK
    bucket: Bucket
    selection: Selection

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a benchmark makes hundreds of thousands of requests."""

    def _send(self, status: int, body: dict[str, Any]) -> None:
        if status == 200:
            body = select(body, self.selection)
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        try:
            self.selection = parse_fields(query.get("fields", ""))
        except ValueError as exc:
            self._send(400, {"error": {"code": 400, "message": f"invalid fields: {exc}"}})
            return
        parts = url.path.split("/")
        # /storage/v1/b/{bucket}[/o[/{object}]]
        if parts[1:4] != ["storage", "v1", "b"] or len(parts) < 5:
            self._send(404, {"error": {"code": 404, "message": "not found"}})
            return
        if unquote(parts[4]) != self.bucket.name:
            self._send(404, {"error": {"code": 404, "message": "no such bucket"}})
        elif len(parts) == 5:
            self._send(200, {"kind": "storage#bucket", "name": self.bucket.name})
        elif len(parts) == 6 and parts[5] == "o":
            limit = min(int(query.get("maxResults", "1000")), 1000)
            self._send(200, self.bucket.page(query.get("prefix", ""), query.get("pageToken"),
                                             limit, query.get("startOffset", ""),
                                             query.get("endOffset")))
        else:
            name = unquote("/".join(parts[6:]))
            if name in self.bucket.meta:
                self._send(200, self.bucket.resource(name))
            else:
                self._send(404, {"error": {"code": 404, "message": f"no such object {name}"}})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    args = parser.parse_args(argv)
    Handler.bucket = Bucket(args.bucket, args.manifest)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"serving {len(Handler.bucket.names)} objects", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
