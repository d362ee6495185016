"""Predictions (services, bottom layer): the prediction log, a recording like runs.

Serving writes one entry per answered request (`log.PredictionLog`: which model version and
role, the inputs, the answer, when) and monitoring reads windows of it back
(`reader.PredictionReader`), joined with feedback, for drift and accuracy. The two are siblings
in the import contract and may not import each other, so the log they share sits below both,
beside tracking and data.
"""
