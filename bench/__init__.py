"""
The benchmark behind ``make bench``: ingress, naive baseline, raw producer,
processors, a Faust peer, dedup restore and end to end, on the embedded broker.

``python -m bench`` runs everything; each part that carries load runs in its
own process (see ``bench.run``).
"""
