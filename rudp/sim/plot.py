"""Draw a sweep: median goodput against the swept parameter, and the fraction of runs that arrived intact.

matplotlib is an optional extra (``pip install 'rudp[plot]'``), imported only when a plot is asked for, with the
non-interactive Agg backend so no display is needed.  ``need_matplotlib`` checks for it before a long sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rudp.sim.sweep import PARAMETERS, SweepRow

__all__ = ["need_matplotlib", "plot_sweep", "MISSING"]

MISSING = "--plot needs matplotlib: pip install 'rudp[plot]'"


def need_matplotlib() -> Any:
    """The pyplot module (Agg backend); ImportError carrying ``MISSING`` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(MISSING) from None
    return plt


def plot_sweep(rows: Sequence[SweepRow], path: str, *, title: str = "") -> None:
    """Write a PNG (or any format matplotlib infers from ``path``) of goodput and intact fraction per value."""
    plt = need_matplotlib()
    if not rows:
        raise ValueError("nothing to plot: the sweep has no rows")
    parameter = PARAMETERS[rows[0].parameter]
    numbers = _numbers(rows, parameter.scale)
    numeric = numbers is not None
    xs = numbers if numbers is not None else [float(i) for i in range(len(rows))]
    figure, goodput_axis = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        goodput_axis.plot(xs, [row.goodput_mbps for row in rows], marker="o", color="tab:blue")
        goodput_axis.set_xlabel(parameter.axis)
        goodput_axis.set_ylabel("median goodput (Mbit/s)", color="tab:blue")
        goodput_axis.set_ylim(bottom=0)
        if not numeric:
            goodput_axis.set_xticks(xs, [row.label for row in rows])
        intact_axis = goodput_axis.twinx()
        intact_axis.plot(xs, [row.intact / row.runs for row in rows], marker="s", linestyle="--", color="tab:red")
        intact_axis.set_ylabel("runs intact (fraction)", color="tab:red")
        intact_axis.set_ylim(-0.05, 1.05)
        goodput_axis.grid(True, alpha=0.3)
        if title:
            goodput_axis.set_title(title, fontsize=9)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)


def _numbers(rows: Sequence[SweepRow], scale: float | None) -> list[float] | None:
    """The x of each row in the axis' unit, or None when the values are categories (burst pairs)."""
    if scale is None:
        return None
    xs = []
    for row in rows:
        if not isinstance(row.value, (int, float)):
            return None
        xs.append(row.value * scale)
    return xs
