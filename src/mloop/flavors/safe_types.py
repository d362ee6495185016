"""The types mloop loads from a skops file without the caller's trust, beyond skops' own defaults.

skops builds only types it trusts by default; everyday models need a few more: `numpy.dtype`
(any pipeline with an imputer or encoder), the tree storage of every tree model, the neighbour
search trees of k-NN, the optimizer an MLP keeps. skops leaves the tree types out on purpose:
it can check that an object has a trusted type, not that its content is sane, and these hold
raw indices scikit-learn follows without bounds checks (scikit-learn PR 34558), so a crafted
file loads fine and then crashes, or reads memory it should not, at its first `predict`.

So a type is on this list only with an audit, written beside it in `SAFE_TYPES`:

1. How skops builds it from a file: a constructor or `__setstate__` that only stores the data
   it is given (numbers, strings, arrays), never calls anything the file names.
2. What using it afterwards does with that data; where it follows indices (tree nodes,
   neighbour lists), `CHECKS` holds a function that proves every index is in range before the
   model is handed out (`check_content`), and a type whose content cannot be proven safe
   cheaply is left off.
3. Classes only: never a function (`posix.system`, `builtins.eval`, `operator.*`,
   `numpy.load`), nor anything that calls one (`functools.partial` of anything), since a
   function in a skops file is called by the model, with arguments the file chooses.

To extend it: add the type's `module.Qualname` as skops names it (`skops.io.get_untrusted_types`
lists them) with a line saying how it is built and why its use is safe; if it holds indices
into other arrays, add a check to `CHECKS` and a crafted-file test; then add the estimator that
needs it to the list of common estimators in `tests/unit/flavors/test_safe_types.py`. A type
off the list still loads when the caller passes trust (`--trust`, `trust=True`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

_TREE = "sklearn.tree._tree.Tree"
_PREDICTOR = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
_KD_TREE = "sklearn.neighbors._kd_tree.KDTree"
_BALL_TREE = "sklearn.neighbors._ball_tree.BallTree"
_BIN_MAPPER = "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper"

SAFE_TYPES: dict[str, str] = {
    "numpy.dtype": "rebuilt by skops from an empty array's .npy header (np.load without "
    "pickles); describes a dtype, holds no code",
    _TREE: "Tree(n_features, n_classes, n_outputs) + __setstate__ copying node and value "
    "arrays (dtype and shape checked by scikit-learn); node indices checked by _check_tree",
    _PREDICTOR: "a plain class holding its node array and two bitset arrays; node indices "
    "checked by _check_predictor",
    _KD_TREE: "__setstate__ copying its arrays and a distance metric; indices checked by "
    "_check_binary_tree",
    _BALL_TREE: "as KDTree (the same base class); indices checked by _check_binary_tree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64": "__setstate__ stores p and empty "
    "parameter arrays; the distance reads only the two rows it is given",
    "sklearn.metrics._dist_metrics.ManhattanDistance64": "as EuclideanDistance64",
    "sklearn.metrics._dist_metrics.ChebyshevDistance64": "as EuclideanDistance64",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer": "a plain class holding "
    "learning-rate numbers and moment arrays; used only by fit, never by predict",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer": "as AdamOptimizer",
}
"""Type name as skops writes it -> how it is built and why using it is safe (the audit)."""


def needs_trust(found: Iterable[str]) -> list[str]:
    """The types skops reported for a file that are on neither its list nor ours, sorted.

    Example:
        >>> needs_trust(["numpy.dtype", "posix.system"])
        ['posix.system']
    """
    return sorted({name for name in found if name not in SAFE_TYPES})


def _type_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_tree(tree: Any, n_features: int | None) -> str | None:
    """Every split names a feature the input has and children after it, so `apply` stays in
    the node array and ends (children come after their parent in every tree builder)."""
    import numpy as np

    state = tree.__getstate__()
    nodes = state["nodes"]
    count = int(state["node_count"])
    if nodes.ndim != 1 or len(nodes) != count or count < 1:
        return f"its node array has {len(nodes)} entries for {count} nodes"
    left, right, feature = nodes["left_child"], nodes["right_child"], nodes["feature"]
    leaf = left == -1
    index = np.arange(count)
    split = ~leaf
    width = tree.n_features if n_features is None else min(tree.n_features, n_features)
    if np.any(leaf & (right != -1)):
        return "a leaf has a right child"
    if np.any(split & ((left <= index) | (left >= count) | (right <= index) | (right >= count))):
        return "a split points outside the node array or back up the tree"
    if np.any(split & ((feature < 0) | (feature >= width))):
        return f"a split names a feature outside the model's {width} inputs"
    return None


def _check_predictor(predictor: Any, n_features: int | None) -> str | None:
    """As `_check_tree`, for HistGradientBoosting's node array; categorical splits index
    bitsets the estimator builds at predict time, so they are not taken on faith at all."""
    import numpy as np
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    nodes = predictor.nodes
    if not isinstance(nodes, np.ndarray) or nodes.dtype != PREDICTOR_RECORD_DTYPE:
        return "its node array has the wrong type"
    count = len(nodes)
    if nodes.ndim != 1 or count < 1:
        return "it has no nodes"
    if n_features is None:
        return "it is not held by an estimator that says how many inputs it takes"
    split = nodes["is_leaf"] == 0
    index = np.arange(count)
    left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
    if np.any(split & ((left <= index) | (left >= count) | (right <= index) | (right >= count))):
        return "a split points outside the node array or back up the tree"
    if np.any(split & (nodes["feature_idx"].astype(np.int64) >= n_features)):
        return f"a split names a feature outside the model's {n_features} inputs"
    if np.any(nodes["is_categorical"] != 0):
        return "it has categorical splits (load it with trust)"
    return None


def _check_binary_tree(tree: Any, n_features: int | None) -> str | None:
    """The neighbour index is a permutation of the rows, every node's range lies inside it, and
    every inner node's children (2i+1, 2i+2) exist."""
    import numpy as np

    data, idx_array, node_data, node_bounds = (np.asarray(a) for a in tree.get_arrays())
    if data.ndim != 2:
        return "its data is not a table"
    rows, width = data.shape
    if n_features is not None and width != n_features:
        return f"its data has {width} columns for a model of {n_features} inputs"
    if idx_array.shape != (rows,) or not np.array_equal(np.sort(idx_array), np.arange(rows)):
        return "its index is not a permutation of its rows"
    count = len(node_data)
    if node_bounds.ndim != 3 or node_bounds.shape[1:] != (count, width):
        return "its node bounds do not match its nodes"
    start = node_data["idx_start"].astype(np.int64)
    end = node_data["idx_end"].astype(np.int64)
    if np.any((start < 0) | (start > end) | (end > rows)):
        return "a node's range of rows lies outside the data"
    inner = np.flatnonzero(node_data["is_leaf"] == 0)
    if inner.size and 2 * int(inner.max()) + 2 >= count:
        return "an inner node has no children"
    weights = getattr(tree, "sample_weight", None)
    if weights is not None and np.asarray(weights).shape != (rows,):
        return "its sample weights do not match its rows"
    return None


def _check_bin_mapper(mapper: Any, n_features: int | None) -> str | None:
    """Categorical features make predict write bits at offsets read from the file."""
    import numpy as np

    flags = getattr(mapper, "is_categorical_", None)
    if flags is not None and bool(np.any(flags)):
        return "it bins categorical features (load it with trust)"
    return None


CHECKS: dict[str, Callable[[Any, int | None], str | None]] = {
    _TREE: _check_tree,
    _PREDICTOR: _check_predictor,
    _KD_TREE: _check_binary_tree,
    _BALL_TREE: _check_binary_tree,
    _BIN_MAPPER: _check_bin_mapper,
}
"""Type name -> a function of (object, inputs of the estimator holding it) returning what is
wrong with its content, or None."""

_MAX_OBJECTS = 10_000_000  # a walk this long means a crafted object graph, not a model


def check_content(model: object) -> str | None:
    """What makes a loaded model unsafe to use, or None: every object of a type in `CHECKS`,
    anywhere in the model, checked against the inputs of the nearest estimator holding it.

    Example:
        >>> check_content(LogisticRegression().fit([[0.0], [1.0]], [0, 1]))  # doctest: +SKIP
    """
    import numpy as np

    seen: set[int] = set()
    stack: list[tuple[Any, int | None]] = [(model, None)]
    while stack:
        obj, width = stack.pop()
        if id(obj) in seen or isinstance(obj, str | bytes | int | float | bool | None):
            continue
        seen.add(id(obj))
        if len(seen) > _MAX_OBJECTS:
            return "it holds more objects than any model mloop knows"
        check = CHECKS.get(_type_name(obj))
        if check is not None:
            problem = check(obj, width)
            if problem is not None:
                return f"a {type(obj).__name__} in it is malformed: {problem}"
            continue
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend((item, width) for item in obj.ravel().tolist())
            continue
        if isinstance(obj, dict):
            stack.extend((item, width) for item in obj.values())
            continue
        if isinstance(obj, list | tuple | set | frozenset):
            stack.extend((item, width) for item in obj)
            continue
        attributes = getattr(obj, "__dict__", None)
        if isinstance(attributes, dict):
            inputs = attributes.get("n_features_in_")
            here = inputs if isinstance(inputs, int) else width
            stack.extend((item, here) for item in attributes.values())
    return None
