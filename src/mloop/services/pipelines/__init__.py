"""Pipelines (services, layer 2): steps, their DAG and cache, and the values they pass.

Step outputs are artifacts: `values.py` stores any value as a bundle (files written by a flavor
plus a manifest) in the content-addressed store and loads it back by digest, so any step can run
on another machine and an unchanged input has an unchanged digest for the cache key. Sits above
tracking and data; imports flavors and the store below it, never an interface.
"""
