"""A text time-sequence ("ladder") diagram of a simulated transfer, drawn from the simulator's trace records.

Three columns: the sending side of the file on the left, the network in the middle, the receiving side on the
right; one line per datagram event, time in milliseconds at the left.  A datagram appears twice, when it is sent
(text in the sender's column, the arrow leaving it) and when it arrives (the arrow reaching the other column,
text there), so the gap between the two lines is its one-way delay.  What the network did is written on the
arrow: ``x lost`` on a send the channel dropped, ``dup`` on the extra copy of a duplicated datagram,
``corrupt`` on a damaged one (its text is then whatever the damaged bytes decode to), ``late`` on one held back
by reordering.  For an upload the client is on the left, for a download the server (``rudp-sim --size 5000
--blksize 512 --windowsize 4 --loss 20% --delay 10ms --seed 2 --ladder``)::

    time ms  sender: client                       network           receiver: server
    -------  -----------------------------------  ----------------  -----------------------------------
      0.000  WRQ 'sim.bin' octet tsize=5000 ...   ---->
     10.000                                                  ---->  WRQ 'sim.bin' octet tsize=5000 ...
     10.000                                                  <----  OACK tsize=5000 windowsize=4
     20.000  OACK tsize=5000 windowsize=4         <----
     20.000  DATA block=1 len=512                 ---->
     ...
     20.000  DATA block=4 len=512                 --x lost
     30.000                                                  ---->  DATA block=1 len=512

Lines fit in 100 columns while times stay below 100 s (long packet descriptions are shortened with ``...``);
a long run is cut after ``limit`` events with a final ``... N more events`` line.  ``ladder`` is a pure function
of the records.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rudp.impair.spec import describe as describe_path
from rudp.sim.engine import SimConfig

__all__ = ["ladder", "LIMIT"]

LIMIT = 400  # event lines drawn before the diagram is cut
_SIDE, _NET, _GAP = 35, 16, "  "  # column widths; the time column is as wide as the last time shown
_TO_RIGHT, _TO_LEFT = "---->", "<----"


def ladder(
    records: Iterable[dict[str, Any]], config: SimConfig, *, limit: int = LIMIT, total: int | None = None
) -> str:
    """Draw ``records`` (the simulator's trace, in order) as a ladder diagram of at most ``limit`` event lines.

    ``total`` is the number of events in the whole run when ``records`` holds only its beginning (a caller that
    keeps just the first ``limit`` records of a long run); it defaults to ``len(records)``."""
    events = list(records)
    total = len(events) if total is None else max(total, len(events))
    upload = config.direction == "upload"
    left, right = ("client", "server") if upload else ("server", "client")
    rightward = "c>s" if upload else "s>c"  # the direction that goes from the left column to the right one
    shown = events[: max(0, limit)]
    width = max([7] + [len(_ms(record["t"])) for record in shown[-1:]])  # times only grow
    lines = [
        _fit(
            f"{config.direction} of {config.size} bytes, blksize {config.client.blksize}, "
            f"windowsize {config.client.windowsize}, seed {config.seed}",
            100,
        ),
        _fit(f"path: {describe_path(config.up)} (both directions)", 100),
        _row("time ms", f"sender: {left}", "network", f"receiver: {right}", width),
        _row("-" * 7, "-" * _SIDE, "-" * _NET, "-" * _SIDE, width),
    ]
    lost = duplicated = corrupted = sent = 0
    for record in shown:
        t = _ms(record["t"])
        text = str(record.get("packet", "?"))
        to_right = record["dir"] == rightward
        if record["event"] == "send":
            sent += 1
            if record.get("lost"):
                lost += 1
                arrow = "--x lost" if to_right else "lost x--"
            else:
                arrow = _TO_RIGHT if to_right else _TO_LEFT
            # the sender's end of the arrow: the left edge of the network column, or the right edge
            lines.append(
                _row(t, text, arrow, "", width) if to_right else _row(t, "", arrow.rjust(_NET), text, width)
            )
        else:
            marks = [
                name
                for key, name in (("dup", "dup"), ("corrupt", "corrupt"), ("reordered", "late"))
                if record.get(key)
            ]
            duplicated += "dup" in marks
            corrupted += "corrupt" in marks
            note = ",".join(marks)
            if to_right:
                arrow = f"{note} {_TO_RIGHT}" if note else _TO_RIGHT
                arrow = arrow if len(arrow) <= _NET else f"{note} ->"
                lines.append(_row(t, "", arrow.rjust(_NET), text, width))
            else:
                arrow = f"{_TO_LEFT} {note}" if note else _TO_LEFT
                arrow = arrow if len(arrow) <= _NET else f"<- {note}"
                lines.append(_row(t, text, arrow, "", width))
    if total > len(shown):
        lines.append(f"... {total - len(shown)} more events (the run had {total}; --trace FILE writes them all)")
    else:
        lines.append(
            f"{sent} datagrams sent: {lost} lost, {duplicated} duplicated, {corrupted} corrupted on arrival"
        )
    return "\n".join(lines)


def _ms(t: float) -> str:
    return f"{t * 1000:.3f}"


def _fit(text: str, width: int) -> str:
    """``text``, or as many of its words as fit followed by "..." (a number is never cut in two)."""
    if len(text) <= width:
        return text
    cut = text[: width - 3]
    if text[len(cut)] != " ":  # the cut falls inside a word: drop the word
        space = cut.rfind(" ")
        cut = cut[: space + 1] if space > 0 else cut
    return cut + "..."


def _row(t: str, left: str, net: str, right: str, width: int) -> str:
    line = _GAP.join((t.rjust(width), _fit(left, _SIDE).ljust(_SIDE), net.ljust(_NET), _fit(right, _SIDE)))
    return line.rstrip()
