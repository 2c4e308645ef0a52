"""The benchmark harness: fanout's sinks against their targets' limits and a peer.

Run by hand on the local stack (``python -m bench run``); never part of the test suite.
"""
