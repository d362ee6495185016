"""Pipelines (services, layer 2): steps, their DAG and cache, and running them on an executor.

Step outputs are artifacts: `services/tracking/values.py` (in tracking, below us, because the
registry stores models the same way) keeps any value as a bundle (files written by a flavor plus
a manifest) in the content-addressed store and loads it back by digest, so any step can run on
another machine and an unchanged input has an unchanged digest for the cache key. Sits above
tracking and data; imports flavors and the store below it, never an interface.
"""
