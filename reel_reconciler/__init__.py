"""reel-reconciler: keeps Reel Maker's Firestore projects consistent with the clips in GCS."""

__version__ = "0.1.0"
