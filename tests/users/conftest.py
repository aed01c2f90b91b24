# The fast (in-process) tests' fixtures: `api`, on SQLite and on PostgreSQL (tests/support/fast.py).
from tests.support.fast import api, fast_backend  # noqa: F401
