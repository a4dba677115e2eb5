"""The work topic and its shared subscription: the ranges of a sweep round, one message each.

Publishing waits until Pub/Sub has every message of the round. Pulling holds at most
`parallel` messages at once (flow control); while a range is swept the client library's lease
management keeps extending its ack deadline, so a message is acked only once its range is
done, nacked when the worker stops halfway, and redelivered after its deadline when the
worker dies. The library finds the emulator through PUBSUB_EMULATOR_HOST, as it documents.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient
from google.cloud.pubsub_v1.types import FlowControl

from reel_reconciler.stores.subscription import end_pull

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 60.0
MAX_LEASE_SECONDS = 4 * 3600
"""The longest a worker holds one range before Pub/Sub may hand it to another."""
MAX_EXTENSION_SECONDS = 60
"""Each lease extension asks for at most this long: a worker that dies gives its range back
within about a minute (the library would otherwise follow how long acks took, up to 10
minutes), for one extension request a minute per range held."""


class Outcome(Enum):
    """What becomes of a message once its handler returns."""

    DONE = "done"
    """Swept, or dropped on purpose (malformed, stale): acked, never delivered again."""
    AGAIN = "again"
    """Not done (the worker stops): nacked, so that another worker takes it at once."""


Handler = Callable[[bytes, dict[str, str]], Outcome]


class WorkTopic:
    """Publishes a round's ranges."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._client: Any = None
        self._lock = threading.Lock()

    def publish(self, messages: Sequence[tuple[bytes, dict[str, str]]]) -> None:
        """Every message, each accepted by Pub/Sub before this returns (raises otherwise)."""
        with self._lock:
            if self._client is None:
                self._client = PublisherClient()
            client = self._client
        futures = [client.publish(self.path, data, **attributes)
                   for data, attributes in messages]
        for future in futures:
            future.result(timeout=PUBLISH_TIMEOUT)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.stop()


class WorkPull:
    """One streaming pull on the shared subscription, `parallel` messages held at most."""

    def __init__(self, path: str, handler: Handler, parallel: int,
                 max_extension: int = MAX_EXTENSION_SECONDS) -> None:
        self.path = path
        self.parallel = parallel
        self._handler = handler
        self._max_extension = max_extension
        self._client: Any = None
        self._future: Any = None

    def start(self) -> None:
        flow = FlowControl(max_messages=self.parallel, max_lease_duration=MAX_LEASE_SECONDS,
                           max_duration_per_lease_extension=self._max_extension)
        self._client = SubscriberClient()
        self._future = self._client.subscribe(self.path, callback=self._callback,
                                              flow_control=flow)

    @property
    def running(self) -> bool:
        future = self._future
        return future is not None and not future.done()

    @property
    def error(self) -> BaseException | None:
        """Why the pull ended (NotFound: no such subscription), if it did."""
        future = self._future
        if future is not None and future.done() and not future.cancelled():
            failure: BaseException | None = future.exception()
            return failure
        return None

    def stop(self) -> None:
        """Stop pulling; messages held and not acked go back to Pub/Sub."""
        future, self._future = self._future, None
        client, self._client = self._client, None
        end_pull(self.path, future, client, 30)

    def _callback(self, message: Any) -> None:
        try:
            outcome = self._handler(bytes(message.data), dict(message.attributes))
        except Exception:
            log.exception("sweep range failed: handed back", extra={
                "subscription": self.path, "messageId": message.message_id})
            message.nack()
            return
        if outcome is Outcome.DONE:
            message.ack()
        else:
            message.nack()
