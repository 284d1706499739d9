"""Second-stage event classifier: balanced random forest (seed paper Sec. 3.3, 4.2).

The paper's forest has 1000 trees, Gini impurity, three features tried per
split (``ceil(sqrt(10))``) and the class-wise bootstrap of Chen, Liaw &
Breiman (2004): each tree gets a bootstrap sample of the minority (CR) class
and an equal-size sample drawn with replacement from the majority (X-ray)
class.  In imbalanced-learn 0.14 this is ``BalancedRandomForestClassifier(
sampling_strategy="all", replacement=True, bootstrap=False)`` -- the
under-sampler draws the per-class samples with replacement, and the trees get
no second (ordinary) bootstrap.

Files are written with :func:`skops.io.dump` and read with
:func:`skops.io.load` and an explicit list of trusted types
(:data:`TRUSTED_TYPES`); no pickle is ever loaded.
"""
from __future__ import annotations

__all__ = ["TRUSTED_TYPES", "ModelFileError", "build_forest", "save_forest", "load_forest",
           "check_forest"]

#: Types (beyond skops' defaults) a forest file may contain.
TRUSTED_TYPES = [
    "imblearn.ensemble._forest.BalancedRandomForestClassifier",
    "imblearn.pipeline.Pipeline",
    "imblearn.under_sampling._prototype_selection._random_under_sampler.RandomUnderSampler",
    "sklearn.tree._tree.Tree",
]


class ModelFileError(ValueError):
    """A model file is missing, corrupt, foreign or fails its checksum."""


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
    """Write ``forest`` with ``skops.io.dump`` (zip-deflate compressed by default)."""
    import zipfile
    import skops.io as sio
    sio.dump(forest, path, compression=zipfile.ZIP_DEFLATED if compression else zipfile.ZIP_STORED,
             compresslevel=9 if compression else None)


def load_forest(path):
    """Load a forest written by :func:`save_forest`.

    Parameters
    ----------
    path : str or path-like
        ``.skops`` file.

    Returns
    -------
    imblearn.ensemble.BalancedRandomForestClassifier

    Raises
    ------
    ModelFileError
        If the file is missing, is not a skops file, holds types outside
        :data:`TRUSTED_TYPES` (a foreign model), or is not a balanced forest.
    """
    import zipfile

    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException
    path = str(path)
    # one pass: skops.io.load audits every type against the trusted list itself
    # (a separate get_untrusted_types pass would walk the whole forest twice)
    try:
        forest = sio.load(path, trusted=TRUSTED_TYPES)
    except FileNotFoundError as exc:
        raise ModelFileError(f"random-forest file {path!r} not found") from exc
    except UntrustedTypesFoundException as exc:
        raise ModelFileError(f"random-forest file {path!r} contains types that are not trusted "
                             f"by xcrfilter: {exc}") from exc
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:  # not a skops archive
        raise ModelFileError(f"random-forest file {path!r} is not a valid skops file "
                             f"({type(exc).__name__}: {exc})") from exc
    except Exception as exc:
        raise ModelFileError(f"random-forest file {path!r} could not be loaded "
                             f"({type(exc).__name__}: {exc})") from exc
    from imblearn.ensemble import BalancedRandomForestClassifier
    if not isinstance(forest, BalancedRandomForestClassifier):
        raise ModelFileError(f"random-forest file {path!r} holds a {type(forest).__name__}, "
                             "not a BalancedRandomForestClassifier")
    return forest


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
