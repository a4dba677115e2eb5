"""Benchmarks that print figures: the streaming sweep against the seed's per-clip approach.

`python -m bench.run --projects N` (or `make bench`) seeds N app-shaped projects into the
Firestore emulator and a GCS server, then times both approaches on the same data.
"""
