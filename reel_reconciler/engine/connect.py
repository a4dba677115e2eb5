"""Build an engine for one reconciler, prove both services answer, and read its breaker's
state before it starts."""

from __future__ import annotations

from google.auth.exceptions import GoogleAuthError

from reel_reconciler.config import ConfigError, Settings
from reel_reconciler.engine.reconcile import Engine
from reel_reconciler.model.identity import ReconcilerId
from reel_reconciler.stores import StoreError
from reel_reconciler.stores.firestore import FirestoreStore
from reel_reconciler.stores.gcs import GcsStore


def connect(settings: Settings, reconciler: ReconcilerId) -> Engine:
    """Stores plus a probe of each: configuration problems surface here, once, as ConfigError."""
    try:
        firestore = FirestoreStore(settings, reconciler)
        gcs = GcsStore(settings, reconciler)
    except GoogleAuthError as exc:
        raise ConfigError(
            f"no Google credentials ({exc}): set GOOGLE_APPLICATION_CREDENTIALS, or "
            "FIRESTORE_EMULATOR_HOST and STORAGE_EMULATOR_HOST for the emulators") from exc
    try:
        firestore.probe()
    except StoreError as exc:
        raise ConfigError(f"{exc} (set FIRESTORE_EMULATOR_HOST or check credentials and "
                          "the GCP project)") from exc
    try:
        gcs.probe()
    except StoreError as exc:
        raise ConfigError(f"{exc} (set STORAGE_EMULATOR_HOST or check credentials)") from exc
    engine = Engine(settings, firestore, gcs, reconciler=reconciler)
    try:
        engine.breaker.load()  # a breaker tripped before this start stays tripped
    except StoreError as exc:
        raise ConfigError(f"the breaker's state could not be read: {exc}") from exc
    return engine
