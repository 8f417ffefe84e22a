"""
Fault injection for the pipeline: a cuttable TCP proxy in front of a dedicated
embedded broker, a callback load that keeps score, and the ``make chaos`` run.

The tests in ``tests/test_chaos_*.py`` use the same pieces for short,
deterministic scenarios; ``python -m chaos`` runs all of them under continuous
load and prints what was sent, acknowledged, lost and duplicated.
"""
