"""Predictions (services, layer 2): the prediction log, a recording like runs. Not built yet.

Serving will write one entry per answered request (which model version, inputs, outputs, when)
and monitoring will read it back, joined with feedback, for drift and accuracy. The two are
siblings in the import contract and may not import each other, so the log they share sits below
both, beside tracking and data; the package exists now so that the contract names it as a
checked layer rather than an optional one.
"""
