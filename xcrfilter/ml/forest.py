"""Second-stage event classifier: balanced random forest (seed paper Sec. 3.3, 4.2).

The paper's forest has 1000 trees, Gini impurity, three features tried per
split (``ceil(sqrt(10))``) and the class-wise bootstrap of Chen, Liaw &
Breiman (2004): each tree gets a bootstrap sample of the minority (CR) class
and an equal-size sample drawn with replacement from the majority (X-ray)
class.  In imbalanced-learn 0.14 this is ``BalancedRandomForestClassifier(
sampling_strategy="all", replacement=True, bootstrap=False)`` -- the
under-sampler draws the per-class samples with replacement, and the trees get
no second (ordinary) bootstrap.

Files are written with :func:`skops.io.dump`, and no pickle is ever loaded.
:func:`save_forest` writes the trees as a dict of arrays
(`xcrfilter.ml.flatforest.FlatForest`): no Python object but ``dict``,
``str`` and ``ndarray``, read in tens of milliseconds without importing
scikit-learn or skops (:func:`load_forest` reads such a skops file itself,
NumPy arrays with ``allow_pickle=False``).  Files holding a forest object
(written by xcrfilter 0.1) are read with :func:`skops.io.load` and the
explicit list of trusted types :data:`TRUSTED_TYPES`.
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from .checksums import ModelFileError

__all__ = ["TRUSTED_TYPES", "build_forest", "save_forest", "load_forest",
           "check_forest"]

#: Types (beyond skops' defaults) a forest file may contain.
TRUSTED_TYPES = [
    "imblearn.ensemble._forest.BalancedRandomForestClassifier",
    "imblearn.pipeline.Pipeline",
    "imblearn.under_sampling._prototype_selection._random_under_sampler.RandomUnderSampler",
    "sklearn.tree._tree.Tree",
]


def build_forest(n_estimators=1000, max_features=3, min_samples_leaf=1, max_depth=None,
                 random_state=0, n_jobs=None):
    """Balanced random forest with the paper's settings.

    Parameters
    ----------
    n_estimators : int, optional
        Number of trees (1000 in the paper).
    max_features : int, optional
        Features tried at each split (3 in the paper).
    min_samples_leaf, max_depth : optional
        Tree size limits (paper: full depth, ``1`` / ``None``); raised only
        to keep the shipped file small.
    random_state : int, optional
        Seed.
    n_jobs : int, optional
        Parallel jobs for fitting and prediction.

    Returns
    -------
    imblearn.ensemble.BalancedRandomForestClassifier
    """
    from imblearn.ensemble import BalancedRandomForestClassifier
    return BalancedRandomForestClassifier(
        n_estimators=n_estimators, criterion="gini", max_features=max_features,
        min_samples_leaf=min_samples_leaf, max_depth=max_depth,
        sampling_strategy="all", replacement=True, bootstrap=False,
        random_state=random_state, n_jobs=n_jobs)


def save_forest(forest, path, compression=True):
    """Write a fitted forest's trees with ``skops.io.dump`` (zip-deflate by default).

    ``forest``: a fitted forest classifier or a
    `~xcrfilter.ml.flatforest.FlatForest`; what is written is the latter's
    dict of arrays, which :func:`load_forest` reads.
    """
    import skops.io as sio

    from .flatforest import FlatForest
    flat = forest if isinstance(forest, FlatForest) else FlatForest.from_estimator(forest)
    sio.dump(flat.to_arrays(), path,
             compression=zipfile.ZIP_DEFLATED if compression else zipfile.ZIP_STORED,
             compresslevel=9 if compression else None)


def _plain_dict(data):
    """Contents of a skops file that holds only a dict of arrays and strings.

    Read without skops: the schema is checked node by node and the arrays
    are loaded with ``allow_pickle=False``.  None for any other content (an
    object file, or a schema this reader does not know), which
    :func:`skops.io.load` then reads.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        schema = json.loads(z.read("schema.json"))
        if not (isinstance(schema, dict) and schema.get("__class__") == "dict"
                and schema.get("__module__") == "builtins"
                and schema.get("__loader__") == "DictNode"
                and isinstance(schema.get("content"), dict)):
            return None
        out = {}
        for key, node in schema["content"].items():
            kind = (node.get("__module__"), node.get("__class__"), node.get("__loader__")) \
                if isinstance(node, dict) else None
            if kind == ("numpy", "ndarray", "NdArrayNode") and node.get("type") == "numpy":
                out[key] = np.load(io.BytesIO(z.read(str(node["file"]))), allow_pickle=False)
            elif kind == ("builtins", "str", "JsonNode") and node.get("is_json"):
                out[key] = json.loads(node["content"])
            else:
                return None
        return out


def load_forest(path, data=None):
    """Load a forest written by :func:`save_forest` (or by xcrfilter 0.1).

    Parameters
    ----------
    path : str or path-like
        ``.skops`` file.
    data : bytes, optional
        Its contents, when already read (e.g. for the checksum).

    Returns
    -------
    xcrfilter.ml.flatforest.FlatForest
        With ``predict_proba``, ``classes_``, ``n_features_in_`` and
        ``n_estimators`` as the forest it was made from.

    Raises
    ------
    ModelFileError
        If the file is missing, is not a skops file, holds types outside
        :data:`TRUSTED_TYPES` (a foreign model), or is not a balanced forest.
    """
    from .flatforest import FlatForest
    path = str(path)
    try:
        if data is None:
            with open(path, "rb") as fh:
                data = fh.read()
        arrays = _plain_dict(data)
    except FileNotFoundError as exc:
        raise ModelFileError(f"random-forest file {path!r} not found") from exc
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:  # not a skops archive
        raise ModelFileError(f"random-forest file {path!r} is not a valid skops file "
                             f"({type(exc).__name__}: {exc})") from exc
    if arrays is None:
        forest = _load_object(path, data)
        if isinstance(forest, dict):
            arrays = forest
        else:
            from imblearn.ensemble import BalancedRandomForestClassifier
            if not isinstance(forest, BalancedRandomForestClassifier):
                raise ModelFileError(f"random-forest file {path!r} holds a "
                                     f"{type(forest).__name__}, not a "
                                     "BalancedRandomForestClassifier")
            return FlatForest.from_estimator(forest)
    return FlatForest.from_arrays(arrays, f"random-forest file {path!r}")


def _load_object(path, data):
    """A skops file holding objects, with the trusted types of :data:`TRUSTED_TYPES`."""
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException
    # one pass: skops.io.loads audits every type against the trusted list itself
    try:
        return sio.loads(data, trusted=TRUSTED_TYPES)
    except UntrustedTypesFoundException as exc:
        raise ModelFileError(f"random-forest file {path!r} contains types that are not trusted "
                             f"by xcrfilter: {exc}") from exc
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:  # not a skops archive
        raise ModelFileError(f"random-forest file {path!r} is not a valid skops file "
                             f"({type(exc).__name__}: {exc})") from exc
    except Exception as exc:
        raise ModelFileError(f"random-forest file {path!r} could not be loaded "
                             f"({type(exc).__name__}: {exc})") from exc


def check_forest(forest, n_features, path, names_from):
    """Check that ``forest`` (loaded from ``path``) fits its model directory.

    Raises
    ------
    ModelFileError
        The forest takes another number of features than ``n_features``
        (those ``names_from`` gives), or its classes are not [0, 1] (X-ray, CR).
    """
    n_in = getattr(forest, "n_features_in_", None)
    if n_in is not None and n_in != n_features:
        raise ModelFileError(f"{path}: the forest takes {n_in} features but {names_from} "
                             f"gives {n_features}")
    if sorted(int(c) for c in forest.classes_) != [0, 1]:
        raise ModelFileError(f"{path}: forest classes {list(forest.classes_)}, expected [0, 1] "
                             "(X-ray, CR)")
