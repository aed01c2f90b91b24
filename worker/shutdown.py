"""A process-wide flag set when the worker is asked to stop (SIGTERM / warm shutdown)."""

from __future__ import annotations

import threading

_requested = threading.Event()


def request() -> None:
    _requested.set()


def requested() -> bool:
    return _requested.is_set()
