"""Which reconciler does the work: one object, built once where the reconciler is named, so
that its metrics label, its log field and its documents' ids are spelt the same everywhere."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReconcilerId:
    """A ReelReconciler (its namespace and name), `watch` (local.watch) or the one-off
    commands (cli)."""

    name: str
    namespace: str | None = None

    @property
    def label(self) -> str:
        """Its name in metric labels, log fields, the change log and the ids of its heartbeat
        and breaker documents."""
        return self.name if self.namespace is None else f"{self.namespace}.{self.name}"

    @property
    def key(self) -> str:
        """Its name to Kubernetes and the endpoint: NAMESPACE/NAME."""
        return self.name if self.namespace is None else f"{self.namespace}/{self.name}"

    @classmethod
    def from_label(cls, label: str) -> ReconcilerId:
        """The reconciler a label names (a namespace has no dots; a name may)."""
        namespace, dot, name = label.partition(".")
        return cls(name, namespace) if dot else cls(label)

    def __str__(self) -> str:
        return self.label


COMMAND_LINE = ReconcilerId("cli")
"""The one-off commands (`reconcile`, `sweep`, `cleanup-stale-jobs`, `resume-writes`)."""
WATCH = ReconcilerId("watch", "local")
"""`reel-reconciler watch`."""
