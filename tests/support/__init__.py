"""Helpers shared by the tests, the demo and the benchmarks: real emulators and seed data."""
