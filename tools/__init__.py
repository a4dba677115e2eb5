"""Tooling for people working on the project (`make manifests`, `make demo`): not tests, and
not installed with reel-reconciler."""
