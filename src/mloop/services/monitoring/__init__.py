"""Monitoring (services, beside serving): what an endpoint's traffic says about its models.
The live numbers of a window (`status.py`: requests from the prediction log, errors and latency
from the servers' reports); accuracy and bias from labels joined to the logged answers
(`accuracy.py`, `bias.py`, labels from files in `labels.py`); drift of the inputs and
predictions against a reference. It reads what serving records (`services/predictions`, below
both) and never imports serving.
"""
