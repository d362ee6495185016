"""Monitoring (services, beside serving): what live traffic did to a deployed model.

It reads the prediction log (`services.predictions`) a window at a time and compares it with
what the model was trained on: `drift.DriftMonitor` per feature and on the predictions.
Serving writes the log and monitoring reads it; the two are siblings and never import each other.
"""
