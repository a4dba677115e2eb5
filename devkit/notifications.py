"""A bucket's notifications as the tests run them: the Pub/Sub emulator, a topic that
fake-gcs-server publishes object changes to, and a subscription the reconciler pulls."""

from __future__ import annotations

from dataclasses import dataclass

import requests

from devkit.emulators import Emulator


@dataclass
class Notifications:
    pubsub: Emulator
    project: str
    topic: str
    subscription: str

    @property
    def topic_path(self) -> str:
        return f"projects/{self.project}/topics/{self.topic}"

    @property
    def path(self) -> str:
        """The subscription, as the CR spec and `--notifications-subscription` name it."""
        return f"projects/{self.project}/subscriptions/{self.subscription}"

    def _url(self, path: str) -> str:
        return f"http://{self.pubsub.host}/v1/{path}"

    def create_topic(self) -> None:
        """Before fake-gcs-server starts: it drops events for a missing topic silently."""
        requests.put(self._url(self.topic_path), timeout=10).raise_for_status()

    def create_subscription(self, ack_deadline: int | None = None) -> None:
        """`ack_deadline`: seconds a delivered message is the receiver's before Pub/Sub
        delivers it again (the emulator's default otherwise)."""
        body: dict[str, object] = {"topic": self.topic_path}
        if ack_deadline is not None:
            body["ackDeadlineSeconds"] = ack_deadline
        requests.put(self._url(self.path), json=body, timeout=10).raise_for_status()

    def delete_subscription(self) -> None:
        requests.delete(self._url(self.path), timeout=10).raise_for_status()
