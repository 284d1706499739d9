"""A fitted random forest as flat node arrays, for fast files and prediction.

:class:`FlatForest` holds every tree of a fitted scikit-learn (or
imbalanced-learn) forest classifier as a few concatenated arrays -- split
feature, threshold, children, side taken by a missing value, class
probabilities of each node -- and predicts from them with NumPy alone.  It
returns exactly (bit for bit) what the forest's ``predict_proba`` returns:
features are rounded to float32 as scikit-learn does, a sample goes left
where ``x <= threshold`` (or where a NaN's stored side says), each tree's
leaf probabilities are added in tree order and divided by the number of
trees (tested).

:meth:`FlatForest.to_arrays` gives a dict of arrays and strings that
:func:`xcrfilter.ml.forest.save_forest` writes with skops: no Python object
is stored, so loading needs no list of trusted types, and 300 trees load in
tens of milliseconds instead of seconds.  Only the parts that prediction
uses are kept (not the training samplers or impurities).
"""
from __future__ import annotations

import numpy as np

from .checksums import ModelFileError

__all__ = ["FlatForest", "FORMAT"]

#: ``format`` entry of the array dict.
FORMAT = "xcrfilter-flat-forest"
FORMAT_VERSION = "1"
_ARRAYS = {"node_count": np.int64, "feature": np.int32, "threshold": np.float64,
           "children_left": np.int32, "children_right": np.int32,
           "missing_go_to_left": np.uint8, "proba": np.float64, "classes": np.int64,
           "n_features": np.int64}
#: (tree, sample) pairs walked together
_PAIRS = 32768


class FlatForest:
    """A forest classifier's trees as flat arrays (see module docstring).

    Use :meth:`from_estimator` or :meth:`from_arrays`.

    Attributes
    ----------
    classes_ : ndarray
        Class labels, in the column order of :meth:`predict_proba`.
    n_features_in_ : int
        Number of features.
    n_estimators : int
        Number of trees.
    """

    def __init__(self, arrays, source="forest"):
        a = {k: np.asarray(arrays[k]) for k in _ARRAYS}
        counts = a["node_count"].astype(np.int64)
        n = int(counts.sum())
        k = a["classes"].size
        self.classes_ = a["classes"].astype(np.int64)
        self.n_features_in_ = int(a["n_features"].reshape(-1)[0])
        self.n_estimators = int(counts.size)
        self._check(a, counts, n, k, source)
        start = np.repeat(np.cumsum(counts) - counts, counts)  # first node of each node's tree
        left = a["children_left"].astype(np.int64)
        self._leaf = left < 0
        local = np.arange(n) - start
        # children of node i at 2 i (left) and 2 i + 1 (right); leaves point to
        # themselves, so that finished samples stay put
        self._children = np.stack([np.where(self._leaf, local, left) + start,
                                   np.where(self._leaf, local, a["children_right"]) + start],
                                  axis=1).astype(np.intp).ravel()
        self._feature = np.where(self._leaf, 0, a["feature"]).astype(np.intp)
        self._threshold = a["threshold"].astype(np.float64)
        self._nan_left = a["missing_go_to_left"].astype(bool)
        self._proba = a["proba"].astype(np.float64).reshape(n, k)
        self._roots = (np.cumsum(counts) - counts).astype(np.intp)
        self._arrays = a

    @staticmethod
    def _check(a, counts, n, k, source):
        def bad(what):
            raise ModelFileError(f"{source}: {what}; not a valid flat forest")
        if counts.ndim != 1 or counts.size == 0 or (counts < 1).any():
            bad("no trees or an empty tree")
        for name in ("feature", "threshold", "children_left", "children_right",
                     "missing_go_to_left"):
            if a[name].shape != (n,):
                bad(f"{name} has shape {a[name].shape}, expected ({n},)")
        if a["proba"].shape != (n, k) or k < 2:
            bad(f"proba has shape {a['proba'].shape}, expected ({n}, {k}) with 2+ classes")
        start = np.repeat(np.cumsum(counts) - counts, counts)
        local = np.arange(n) - start
        size = np.repeat(counts, counts)
        left, right = a["children_left"].astype(np.int64), a["children_right"].astype(np.int64)
        inner = left >= 0
        # children come after their parent inside the same tree: every walk ends at a leaf
        if ((inner & ((left <= local) | (left >= size) | (right <= local) | (right >= size)))
                .any() or ((~inner) & (right >= 0)).any()):
            bad("a child index outside its tree or before its parent")
        nf = int(a["n_features"].reshape(-1)[0])
        if nf < 1 or (inner & ((a["feature"] < 0) | (a["feature"] >= nf))).any():
            bad("a split feature outside the feature range")

    @classmethod
    def from_estimator(cls, forest):
        """Flatten a fitted forest classifier (its ``estimators_`` trees)."""
        trees = [e.tree_ for e in forest.estimators_]
        if any(t.n_outputs != 1 for t in trees):
            raise ValueError("only single-output forests can be flattened")
        k = len(forest.classes_)

        def proba(t):
            # what DecisionTreeClassifier.predict_proba does with a leaf's value
            v = np.array(t.value[:, 0, :k], dtype=np.float64)
            norm = v.sum(axis=1)[:, None]
            norm[norm == 0.0] = 1.0
            return v / norm

        return cls({
            "node_count": np.array([t.node_count for t in trees]),
            "feature": np.concatenate([t.feature for t in trees]),
            "threshold": np.concatenate([t.threshold for t in trees]),
            "children_left": np.concatenate([t.children_left for t in trees]),
            "children_right": np.concatenate([t.children_right for t in trees]),
            "missing_go_to_left": np.concatenate(
                [np.asarray(getattr(t, "missing_go_to_left", np.zeros(t.node_count)))
                 for t in trees]),
            "proba": np.concatenate([proba(t) for t in trees]),
            "classes": np.asarray(forest.classes_),
            "n_features": np.array([forest.n_features_in_])}, type(forest).__name__)

    def to_arrays(self):
        """Dict of arrays and strings (what :func:`~xcrfilter.ml.forest.save_forest` writes)."""
        out = {"format": FORMAT, "version": FORMAT_VERSION}
        out.update({k: np.ascontiguousarray(v, dtype=_ARRAYS[k])
                    for k, v in self._arrays.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays, source="forest"):
        """Rebuild from :meth:`to_arrays` output (checked: ModelFileError if malformed)."""
        if not isinstance(arrays, dict) or arrays.get("format") != FORMAT:
            raise ModelFileError(f"{source}: not an xcrfilter flat forest (format "
                                 f"{arrays.get('format') if isinstance(arrays, dict) else None!r})")
        if arrays.get("version") != FORMAT_VERSION:
            raise ModelFileError(f"{source}: flat forest version {arrays.get('version')!r}, "
                                 f"this xcrfilter reads {FORMAT_VERSION!r}")
        missing = [k for k in _ARRAYS if not isinstance(arrays.get(k), np.ndarray)]
        if missing:
            raise ModelFileError(f"{source}: flat forest lacks {', '.join(missing)}")
        for k, dtype in _ARRAYS.items():
            if not np.can_cast(arrays[k].dtype, dtype, "same_kind"):
                raise ModelFileError(f"{source}: {k} has dtype {arrays[k].dtype}")
        return cls(arrays, source)

    def predict_proba(self, X):
        """Class probabilities, shape ``(n, n_classes)``: the forest's ``predict_proba(X)``."""
        X = np.asarray(X, dtype=np.float32)  # scikit-learn's tree input type
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape (n, {self.n_features_in_}), got {X.shape}")
        n, t = len(X), self.n_estimators
        if n == 0:
            return np.zeros((0, self.classes_.size))
        # a block of trees at a time keeps the working arrays in the CPU cache
        per_block = max(1, _PAIRS // n)
        leaves = [self._walk(X, j, min(t, j + per_block)) for j in range(0, t, per_block)]
        p = self._proba[np.concatenate(leaves)].reshape(t, n, -1)
        # trees added one after another (scikit-learn's order), then divided
        return np.cumsum(p, axis=0)[-1] / t

    def _walk(self, X, first, stop):
        """Leaf reached by each sample in trees ``first:stop`` (tree-major order)."""
        n, flat = len(X), X.ravel()
        nan = bool(np.isnan(flat).any())
        node = np.repeat(self._roots[first:stop], n)
        base = np.tile(np.arange(n) * X.shape[1], stop - first)
        todo = np.arange(node.size)
        step = 0
        while todo.size:
            # all pairs step on (leaves point to themselves); those at a leaf
            # are dropped every few steps only, as dropping costs a step
            nd = node[todo]
            x = flat[base[todo] + self._feature[nd]]
            right = x > self._threshold[nd]
            if nan:
                right = np.where(np.isnan(x), ~self._nan_left[nd], right)
            nd = self._children[2 * nd + right]
            node[todo] = nd
            step += 1
            if step % 4 == 0:
                todo = todo[~self._leaf[nd]]
        return node
