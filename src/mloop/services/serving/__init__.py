"""Serving: load a model version as a Predictor, check requests against its signature, batch
them, score whole files the same way (`scorer.py`), and count what happens for Prometheus. The
HTTP side lives in `mloop.server`."""
