"""Monitoring (services, layer 2): what an endpoint's traffic shows. It reads the prediction log
and the servers' reports (`status.py`); serving, its sibling, writes them."""
