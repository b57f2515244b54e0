"""The bench's figure: median goodput against loss (one line per protocol) and against RTT, min-max as bars.

matplotlib is the optional ``plot`` extra, imported only here, when a plot is asked for (rudp.sim.plot's
``need_matplotlib``: the Agg backend, and an ImportError carrying a one-line install hint when it is missing).
Each panel fixes the other axes at the most common value in the run (e.g. goodput vs loss at the RTT, rate and
size most scenarios used), so one line never mixes paths.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rudp.bench.report import Row
from rudp.impair.spec import format_duration, format_rate
from rudp.sim.plot import MISSING, need_matplotlib

__all__ = ["plot_rows", "MISSING", "need_matplotlib"]

COLORS = {"tcp-cubic": "tab:red", "tcp-bbr": "tab:orange", "rudp": "tab:blue", "rudp-lockstep": "tab:cyan",
          "tftp-hpa": "tab:gray"}  # fmt: skip


def _most_common(values: Sequence[object]) -> object:
    return Counter(values).most_common(1)[0][0]


def plot_rows(rows: Sequence[Row], path: str, *, title: str = "") -> None:
    """Write ``path`` (PNG, SVG, ... by its extension): goodput vs loss and goodput vs RTT."""
    plt = need_matplotlib()
    rows = [r for r in rows if r.goodput is not None]
    if not rows:
        raise ValueError("nothing to plot: no run moved any data")
    rtt = _most_common([r.scenario.rtt for r in rows])
    rate = _most_common([r.scenario.rate for r in rows])
    size = _most_common([r.scenario.size for r in rows])
    loss = _most_common([r.scenario.loss for r in rows])
    figure, (by_loss, by_rtt) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    try:
        for axis, key, fixed, xlabel, scale in (
            (by_loss, "loss", lambda s: s.rtt == rtt, "random loss (%)", 100.0),
            (by_rtt, "rtt", lambda s: s.loss == loss, "round-trip time (ms)", 1000.0),
        ):
            for protocol in dict.fromkeys(r.protocol for r in rows):
                points = sorted(
                    (getattr(r.scenario, key) * scale, r.goodput)
                    for r in rows
                    if r.protocol == protocol and fixed(r.scenario) and r.scenario.rate == rate
                    and r.scenario.size == size and r.goodput is not None
                )  # fmt: skip
                if not points:
                    continue
                xs = [x for x, _ in points]
                med = [g.median / 1e6 for _, g in points]
                err = [
                    [(g.median - g.low) / 1e6 for _, g in points],
                    [(g.high - g.median) / 1e6 for _, g in points],
                ]
                axis.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=protocol, color=COLORS.get(protocol))
            axis.set_xlabel(xlabel)
            axis.set_ylabel("goodput (Mbit/s), median and min-max")
            axis.set_ylim(bottom=0)
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize=8)
        link = format_rate(rate) if isinstance(rate, float) else "unlimited"
        by_loss.set_title(f"vs loss: RTT {format_duration(float(rtt))}, {link}", fontsize=9)  # type: ignore[arg-type]
        by_rtt.set_title(f"vs RTT: loss {float(loss) * 100:g}%, {link}", fontsize=9)  # type: ignore[arg-type]
        if title:
            figure.suptitle(title, fontsize=10)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)
