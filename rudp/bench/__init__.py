"""rudp-bench's machinery: the scenario matrix, runs through the network lab, medians, reports and plots.

* ``matrix``: scenarios, protocols, profiles and the list parsers (rudp's own impairment grammar);
* ``runner``: one transfer (or one fairness pair) through ``rudp.lab``, timed, capped and checked by SHA-256;
* ``children``: the child processes a run starts, killed by process group;
* ``results`` / ``report``: what a run measured, the medians with min-max, table, JSON, CSV and the targets;
* ``plot``: goodput vs loss and vs RTT (matplotlib, optional);
* ``tcp_peer``: the TCP baseline's sender and receiver (``python -m rudp.bench.tcp_peer``).
"""

__all__: list[str] = []
