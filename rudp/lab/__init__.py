"""The network lab: two network namespaces joined by a TUN relay that applies rudp's impairment model to every IP
packet (TCP and UDP alike), so that TCP and rudp can be compared on the same impaired path.  Root only.

    with Lab(LinkSpec(rate=100e6, delay=0.025, loss=0.02)) as lab:
        receiver = lab.popen("b", [...])          # in namespace b, address ADDR_B
        sender = lab.popen("a", [..., ADDR_B])    # in namespace a, address ADDR_A
        ...
        print(lab.counters())                     # {"a>b": {"offered": ..., "lost_random": ...}, "b>a": {...}}
"""

from rudp.lab.lab import ADDR_A, ADDR_B, PREFIX, Lab, LabUnavailable, remove_stale
from rudp.lab.link import LinkSpec

__all__ = ["Lab", "LinkSpec", "LabUnavailable", "ADDR_A", "ADDR_B", "PREFIX", "remove_stale"]
