"""Tracking: runs with params, metrics, tags, inputs and outputs; code and environment capture;
comparison; and lineage, which follows the inputs and outputs runs recorded."""
