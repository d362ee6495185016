"""Flavors (layer 1, an adapter beside `mloop.store`): how one kind of Python value becomes files.

A flavor saves a value (a DataFrame, an ndarray, a scikit-learn model, an ONNX model, a file or
folder, a JSON value, or, only when the caller trusts it, a pickle or a `PythonModel` with its
code) into a folder and loads it back, with metadata a person can read. `registry.py` holds the
one ordered table and picks the flavor for a value; `protocol.py` says what a flavor is. Flavors
never touch the artifact store or any service: `services/tracking/values.py` turns a flavor's
folder into content-addressed artifacts.
Importing this package is cheap: pandas, numpy, scikit-learn and skops are imported only inside
the flavor that needs them, when it is used.
"""

from __future__ import annotations

from mloop.flavors.protocol import JSON, Flavor
from mloop.flavors.registry import FLAVORS, flavor_for, get_flavor

__all__ = ["FLAVORS", "JSON", "Flavor", "flavor_for", "get_flavor"]
