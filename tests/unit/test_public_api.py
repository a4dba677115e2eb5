"""The controller uses Google's client libraries and gRPC through their public surfaces only.

A private name (`_x`) of google-cloud-firestore, api-core, proto-plus or grpc can change in
any release without notice; the dependency bounds in pyproject.toml only protect what the
libraries publish. The check (tests/support/public_api.py) must find nothing in reel_reconciler/,
and must find each way the store once reached into the client library.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.public_api import violations

REPO = Path(__file__).resolve().parents[2]


def test_the_controller_uses_public_google_and_grpc_surfaces_only() -> None:
    found = []
    for path in sorted((REPO / "reel_reconciler").rglob("*.py")):
        found.extend(violations(path.read_text(), str(path.relative_to(REPO))))
    assert found == []


VIOLATIONS = {
    "private constants": "from google.cloud.firestore_v1.base_client import "
                         "_DEFAULT_CHANNEL_OPTIONS, _GRPC_MSG_SIZE_OPTIONS\n",
    "private helper": "from google.cloud._helpers import _rfc3339_nanos_to_datetime\n",
    "private module": "import google.cloud._helpers\n",
    "private module imported by name": "from google.cloud import _helpers\n",
    "grpc internals": "from grpc._channel import Channel\n",
    "client internals": """
from google.cloud import firestore
client = firestore.Client()
host = client._emulator_host or client._target
client._firestore_api_internal = None
""",
    "credentials and options": """
from google.cloud import firestore
def make(project: str) -> None:
    client = firestore.Client(project=project)
    use(client._credentials, client._client_options)
""",
    "a query's stream iterator": """
from typing import Any
def page(query: Any, retry: Any) -> Any:
    return query.limit(1)._get_stream_iterator(None, retry, 300.0)
""",
    "a query's protobuf": """
def target(query):
    return query._to_protobuf()
""",
    "the transport behind an attribute": """
from typing import Any
class Feed:
    def __init__(self, client: Any) -> None:
        self._client = client
    def open(self) -> Any:
        return self._client._firestore_api._transport.listen, self._client._database_string
""",
    "proto-plus's wrapped message": """
from google.cloud.firestore_v1.types import RunQueryResponse
def raw(response: RunQueryResponse) -> object:
    return response._pb
""",
    "the result of a Google call": """
class Store:
    def __init__(self, api) -> None:
        self.api = api
    def read(self, request):
        for response in self.api.run_query(request=request):
            yield response._pb
""",
    "getattr with a private name": """
import grpc
channel = grpc.insecure_channel("localhost:1")
flag = getattr(channel, "_single_threaded_unary_stream")
""",
}


@pytest.mark.parametrize("source", VIOLATIONS.values(), ids=VIOLATIONS.keys())
def test_the_check_fails_on_a_private_surface(source: str) -> None:
    assert violations(source), source


def test_the_check_leaves_our_own_private_attributes_alone() -> None:
    source = """
from dataclasses import dataclass
from google.cloud.firestore_v1.types import RunQueryResponse
from reel_reconciler.engine.reconcile import Engine

class Sweep:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._seen = 0
    def record(self, response: RunQueryResponse) -> object:
        self.engine._record(None)
        self._seen += 1
        return type(response).pb(response), super()._hook()

@dataclass
class Point:
    x: int
    def moved(self) -> "Point":
        return self._replace(x=1)
"""
    assert violations(source) == []
