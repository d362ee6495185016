"""Monitoring (services, beside serving): what the prediction log says about the models on an
endpoint. Accuracy and bias from labels joined to the logged answers (`accuracy.py`,
`bias.py`, labels from files in `labels.py`); drift of the inputs and predictions against a
reference. It reads the log serving writes (`services/predictions`, below both) and never
imports serving.
"""
