"""The gRPC channel to Firestore and the generated (GAPIC) client on it.

We build the channel ourselves because the options the sweep needs are channel options, which
the high-level client does not take: streamed answers read on the calling thread, and a fixed
flow-control window. The emulator is found as the client library documents it, through
FIRESTORE_EMULATOR_HOST.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import google.auth
import grpc  # type: ignore[import-untyped]
from google.api_core import grpc_helpers
from google.cloud.firestore_v1.services.firestore import FirestoreClient
from google.cloud.firestore_v1.services.firestore.transports.grpc import FirestoreGrpcTransport

from reel_reconciler.config import ConfigError

EMULATOR_ENV = "FIRESTORE_EMULATOR_HOST"
EMULATOR_PROJECT = "google-cloud-firestore-emulator"
"""The project the client library assumes on the emulator when none is configured."""
HOST = "firestore.googleapis.com"
ENDPOINT = f"{HOST}:443"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",
          "https://www.googleapis.com/auth/datastore")

STREAM_WINDOW = 1 << 20
"""Bytes of a stream gRPC receives ahead of the reader. gRPC otherwise sizes the window by
probing the bandwidth-delay product, which on a fast link lets the server run tens of MB
ahead of a slower sweep, held in gRPC's buffers: peak memory then depends on timing
(bench/RESULTS.md)."""

CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    # Read each message of a server stream on the calling thread: by default gRPC reads it
    # on a thread of its own and hands it over under the GIL, per document.
    (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", STREAM_WINDOW),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
)
PRODUCTION_OPTIONS = (("grpc.keepalive_time_ms", 30_000),)
"""Keepalive pings on the long-lived production connection, as the client library sends."""


@dataclass(frozen=True)
class Connection:
    """One channel, the generated client on it, and what every call carries."""

    api: FirestoreClient
    channel: grpc.Channel
    target: str
    database: str
    """`projects/{project}/databases/{database}`: the parent of every document name."""
    metadata: tuple[tuple[str, str], ...]
    emulator: bool

    @property
    def documents(self) -> str:
        """The prefix of every document name, and the parent of top-level collections."""
        return f"{self.database}/documents"

    @property
    def project(self) -> str:
        """The GCP project: for a Firebase app, its Firebase project too."""
        return self.database.split("/")[1]

    def name(self, collection: str, doc_id: str) -> str:
        """The full name of a document of a top-level collection."""
        return f"{self.documents}/{collection}/{doc_id}"

    def close(self) -> None:
        self.channel.close()


def connect(project: str | None, database: str,
            options: Sequence[tuple[str, int]] = CHANNEL_OPTIONS) -> Connection:
    """A channel to the emulator named by FIRESTORE_EMULATOR_HOST (insecure, with the bearer
    token the emulator expects), else to Firestore with the default Google credentials."""
    emulator = os.environ.get(EMULATOR_ENV)
    metadata: list[tuple[str, str]] = []
    if emulator:
        target = emulator
        project = project or EMULATOR_PROJECT
        channel = grpc.insecure_channel(target, options=list(options))
        metadata.append(("authorization", "Bearer owner"))
    else:
        target = ENDPOINT
        credentials, found = google.auth.default(scopes=SCOPES)
        project = project or found
        if not project:
            raise ConfigError("no GCP project: set GOOGLE_CLOUD_PROJECT or the Firestore "
                              "project in the configuration")
        channel = grpc_helpers.create_channel(target, credentials=credentials,
                                              default_scopes=SCOPES, default_host=HOST,
                                              options=[*PRODUCTION_OPTIONS, *options])
    path = f"projects/{project}/databases/{database}"
    metadata.insert(0, ("google-cloud-resource-prefix", path))
    api = FirestoreClient(transport=FirestoreGrpcTransport(channel=channel))
    return Connection(api=api, channel=channel, target=target, database=path,
                      metadata=tuple(metadata), emulator=bool(emulator))
