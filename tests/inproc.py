"""A rudp server stepped by a background thread of the test process, for tests that drive clients at it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rudp.net.server import Server, ServerConfig


@contextmanager
def serving(config: ServerConfig, *, step: float = 0.02) -> Iterator[Server]:
    """Start ``Server(config)``, step it in a daemon thread every ``step`` seconds at most, and on exit stop the
    thread and close the server."""
    stop = threading.Event()
    with Server(config) as srv:

        def loop() -> None:
            while not stop.is_set():
                srv.step(timeout=step)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield srv
        finally:
            stop.set()
            thread.join(timeout=10)
