"""``LineWriter``: output lines that never block the process writing them.

A server's one thread must not stop because whoever reads its output does not (``rudp-recv --json | slow``, or a
pipe nobody drains): a blocked ``write`` would freeze every transfer's timers and every request.  Lines go
through a bounded queue to a thread that does the writing.  When the queue is full, lines are dropped and
counted, and the next line written says how many (``{"event": "dropped", "lines": N}`` for JSON output, a text
line otherwise).  ``close`` waits a bounded time for what is queued, so a reader that keeps up sees everything.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import TextIO

__all__ = ["LineWriter", "QUEUE_LINES"]

QUEUE_LINES = 1000  # lines held for a slow reader before new ones are dropped
_STOP = object()


class LineWriter:
    def __init__(self, stream: TextIO, *, as_json: bool, queue_lines: int = QUEUE_LINES) -> None:
        self.stream = stream
        self.as_json = as_json
        self.dropped = 0  # lines dropped because the reader did not keep up, since the last notice
        self.total_dropped = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_lines)
        self._lock = threading.Lock()
        self._broken = False
        self._thread = threading.Thread(target=self._run, name="rudp-output", daemon=True)
        self._thread.start()

    def write(self, line: str) -> None:
        """Queue one line (without its newline); never blocks."""
        with self._lock:
            if self.dropped:
                notice = self._notice(self.dropped)
                try:
                    self._queue.put_nowait(notice)
                except queue.Full:
                    self._drop()
                    return
                self.dropped = 0
            try:
                self._queue.put_nowait(line)
            except queue.Full:
                self._drop()

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued, and how many lines were dropped, for at most ``timeout`` seconds; then stop."""
        deadline = time.monotonic() + timeout
        with self._lock:
            pending, self.dropped = self.dropped, 0
        try:
            if pending:
                self._queue.put(self._notice(pending), timeout=timeout)
            self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            return  # the reader is stuck: give up on it rather than on exiting
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def _drop(self) -> None:
        self.dropped += 1
        self.total_dropped += 1

    def _notice(self, count: int) -> str:
        if self.as_json:
            return json.dumps({"event": "dropped", "lines": count})
        return f"rudp-recv: {count} output lines dropped (nobody was reading them)"

    def _run(self) -> None:
        while True:
            line = self._queue.get()
            if line is _STOP:
                return
            if self._broken:
                continue
            try:
                self.stream.write(f"{line}\n")
                self.stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                self._broken = True  # the reader went away: drop the rest quietly, as Unix tools do
