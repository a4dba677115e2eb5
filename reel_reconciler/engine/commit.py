"""The commit step of a batch: its corrections written together, each still guarded by the
precondition of the version read, or one by one when one of them is stale; every write in the
change log.

A refused write is logged once the re-read shows what became of it: a commit the server
applied but answered too late is sent again by the client, and its own precondition refuses
the second send. The re-read then holds our write, and the log says it was written."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from reel_reconciler.engine import changelog
from reel_reconciler.engine.batch import Batch, Correction, Read, halted
from reel_reconciler.engine.changelog import Outcome
from reel_reconciler.engine.stores import ProjectStore
from reel_reconciler.model import ReconcilerId
from reel_reconciler.stores import Conflict, StoreError
from reel_reconciler.stores.firestore import SERVER_TIME, Document

log = logging.getLogger(__name__)


def carries(doc: Document | None, correction: Correction) -> bool:
    """Whether a document read after a refused write holds that very write. Our summary names
    the time we decided and the version we decided on: no other write leaves that pair."""
    summary = correction.update.get("lastReconciliation")
    return (summary is not None and doc is not None
            and (doc.data or {}).get("lastReconciliation") == summary)


class Committer:
    def __init__(self, store: ProjectStore, reconciler: ReconcilerId,
                 stopped: threading.Event) -> None:
        self.store = store
        self.reconciler = reconciler
        self.stopped = stopped
        """Set when the reconciler stops: nothing more is written."""

    def commit(self, batch: Batch, corrections: dict[str, Correction]) -> list[str]:
        """Write the corrections together, or one by one if one of them is stale (a single
        one is written alone at once); returns the projects someone wrote since we read them.
        A stopped reconciler writes nothing: each correction is reported as not written."""
        if self.stopped.is_set():
            for correction in corrections.values():
                batch.set(halted(correction.report))
            return []
        if len(corrections) > 1:
            return self._together(batch, corrections)
        return self._each(batch, corrections)

    def refused(self, corrections: dict[str, Correction], conflicted: list[str]) -> None:
        """The conflicts of a batch that gives up: logged as the refusals they were."""
        for project_id in conflicted:
            self._logged(project_id, corrections[project_id], Outcome.CONFLICT)

    def settle(self, batch: Batch, corrections: dict[str, Correction], conflicted: list[str],
               read: Read) -> Read:
        """The refused writes, judged from their re-read: the ones it shows landed are logged
        as written and reported as made; the others are logged as conflicts and returned, to
        be decided again. A project the re-read missed is a conflict."""
        found = {project_id: doc for project_id, doc, _ in read}
        for project_id in conflicted:
            correction = corrections[project_id]
            if carries(found.get(project_id), correction):
                self._logged(project_id, correction, Outcome.WRITTEN, late=True)
                batch.set(correction.report)
            else:
                self._logged(project_id, correction, Outcome.CONFLICT)
        return [entry for entry in read if entry[0] not in batch.reports]

    def _logged(self, project_id: str, correction: Correction, outcome: Outcome,
                written: datetime | None = None, error: str | None = None,
                late: bool = False) -> None:
        """The change log's line of one project write."""
        changelog.record(
            document="project", doc_id=project_id, trigger=correction.trigger,
            drift=correction.report.drift_kinds, before=correction.before,
            fields=correction.update, server_time=SERVER_TIME,
            precondition=correction.read_update_time, outcome=outcome,
            reconciler=self.reconciler, attempt=correction.report.attempts, written=written,
            error=error, late=late)

    def _together(self, batch: Batch, corrections: dict[str, Correction]) -> list[str]:
        """One commit; a stale document in it refuses them all, and each is then written
        alone (so the change log has a line per project write, not for the refused batch)."""
        try:
            written = self.store.update_projects(
                {project_id: (c.update, c.read_update_time)
                 for project_id, c in corrections.items()})
        except Conflict as exc:
            log.info("batched write conflict, writing one by one",
                     extra={"projects": len(corrections), "error": str(exc)})
        except StoreError as exc:
            for project_id, correction in corrections.items():
                self._logged(project_id, correction, Outcome.ERROR, error=str(exc))
                batch.failed(project_id, exc)
            return []
        else:
            for project_id, correction in corrections.items():
                self._logged(project_id, correction, Outcome.WRITTEN, written.get(project_id))
                batch.set(correction.report)
            return []
        return self._each(batch, corrections)

    def _each(self, batch: Batch, corrections: dict[str, Correction]) -> list[str]:
        """One write per correction; a refused one is logged when `settle` or `refused` knows
        what became of it."""
        conflicted: list[str] = []
        for project_id, correction in corrections.items():
            if batch.outage is not None:
                batch.not_attempted(project_id)
                continue
            if self.stopped.is_set():
                batch.set(halted(correction.report))
                continue
            try:
                written = self.store.update_project(project_id, correction.update,
                                                    correction.read_update_time)
            except Conflict:
                conflicted.append(project_id)
            except StoreError as exc:
                self._logged(project_id, correction, Outcome.ERROR, error=str(exc))
                batch.failed(project_id, exc)
            else:
                self._logged(project_id, correction, Outcome.WRITTEN, written)
                batch.set(correction.report)
        return conflicted
