"""A Pub/Sub subscription read by streaming pull, with flow control: each message's
attributes go to a callback, and the message is acked once the callback returns (a failing
callback nacks it, so Pub/Sub delivers it again).

The client library finds the emulator through PUBSUB_EMULATOR_HOST, as it documents.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from google.cloud.pubsub_v1 import SubscriberClient
from google.cloud.pubsub_v1.types import FlowControl

log = logging.getLogger(__name__)

OnMessage = Callable[[Mapping[str, str]], None]

MAX_OUTSTANDING = 1000
"""Messages handed out and not yet acked, at most: a burst of uploads waits in Pub/Sub."""


class Subscription:
    """One streaming pull on one subscription; `start` again after it ended."""

    def __init__(self, path: str, on_message: OnMessage) -> None:
        self.path = path
        self._on_message = on_message
        self._client: Any = None
        self._future: Any = None
        self._failure: BaseException | None = None
        self.started_at = 0.0

    def start(self) -> None:
        self._failure = None
        self.started_at = time.time()
        self._client = SubscriberClient()
        self._future = self._client.subscribe(
            self.path, callback=self._callback,
            flow_control=FlowControl(max_messages=MAX_OUTSTANDING))

    def stop(self) -> None:
        future, self._future = self._future, None
        client, self._client = self._client, None
        end_pull(self.path, future, client, 10)

    @property
    def closed(self) -> bool:
        future = self._future
        return future is None or future.done()

    @property
    def error(self) -> BaseException | None:
        """Why the pull ended (NotFound: the subscription does not exist), or our callback's
        failure."""
        future = self._future
        if self._failure is not None:
            return self._failure
        if future is not None and future.done() and not future.cancelled():
            failure: BaseException | None = future.exception()
            return failure
        return None

    def _callback(self, message: Any) -> None:
        try:
            self._on_message(dict(message.attributes))
        except Exception as exc:
            self._failure = exc
            log.exception("notification callback failed", extra={"subscription": self.path})
            message.nack()
            return
        message.ack()


def end_pull(path: str, future: Any, client: Any, timeout: float) -> None:
    """Cancel a streaming pull, wait up to `timeout` for it to end, close its client."""
    if future is not None:
        future.cancel()
        try:
            future.result(timeout=timeout)
        except Exception as exc:  # the pull's own end (NotFound, cancelled) or a timeout
            log.debug("subscription stopped", extra={"subscription": path, "error": str(exc)})
    if client is not None:
        client.close()
