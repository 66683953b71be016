"""Harnesses the tests and the benchmarks share: a live server on loopback, the real Redis and
PostgreSQL isolated per session, a `deepscope worker` subprocess. Not installed with the package."""
