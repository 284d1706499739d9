"""CAM inference without Keras or scikit-learn (xcrfilter.ml.onnxnet, xcrfilter.ml.flatforest).

The oracles: Keras' own loading and evaluation of the shipped network, the
fitted scikit-learn forest's ``predict_proba``, and reference verdicts saved
in ``data/cam_reference.npz`` (six simulated 128 x 128 frames, the events
found in them, STATUS, PROB_CR, features and network probabilities of the
shipped 'context' and 'paper' models): the paper model's from the
implementation before these modules, the context model's from its network
evaluated by Keras (``scripts/cam_reference.py context``).
"""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

from xcrfilter.ml.checksums import ModelFileError
from xcrfilter.ml.forest import load_forest, save_forest
from xcrfilter.ml.model import default_model_dir, event_windows, load_model
from xcrfilter.ml.netgraph import graph_from_keras, read_keras_file

REFERENCE = Path(__file__).parent / "data" / "cam_reference.npz"


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(REFERENCE))


def _keras_network(name):
    # densenet registers the weight initialiser of the file; the package sets the backend
    keras = pytest.importorskip("xcrfilter.ml.densenet").keras
    return keras.saving.load_model(default_model_dir(name) / "densenet.keras", compile=False)


@pytest.fixture(scope="module")
def keras_net():
    return _keras_network("context")


def _windows(ref):
    e = ref["ENERGY"]
    sel = (e >= 300) & (e < 10000)
    return event_windows(ref["frames"].astype(np.float32), ref["FRAME"][sel], ref["RAWY"][sel],
                         ref["RAWX"][sel]), sel


@pytest.mark.parametrize("name, receptive_field", [("context", 54), ("paper", 66)])
def test_file_weights_equal_keras_weights(name, receptive_field):
    """The weight groups of the .keras file are matched to the right layers."""
    from_file = read_keras_file(default_model_dir(name) / "densenet.keras")
    in_memory = graph_from_keras(_keras_network(name))
    assert [la["name"] for la in from_file.layers] == [la["name"] for la in in_memory.layers]
    assert [la["inputs"] for la in from_file.layers] == [la["inputs"] for la in in_memory.layers]
    for name, params in in_memory.params.items():
        assert params.keys() == from_file.params[name].keys(), name
        for key, value in params.items():
            np.testing.assert_array_equal(from_file.params[name][key], value, err_msg=name)
    # 4 (context) or 5 (paper) layers of 3 x 3 convolutions a dense block
    assert from_file.stride() == 4 and from_file.receptive_field() == receptive_field


def test_network_equals_keras(keras_net, reference):
    """Probabilities, logits and CAM features as Keras computes them (float32 rounding)."""
    import keras
    net = load_model("context").network
    wins, _ = _windows(reference)
    wins = wins[:9]
    x = net.scaler.transform(wins)[..., None]
    probe = keras.Model(keras_net.inputs, [keras_net.get_layer("cam_features").output,
                                           keras_net.get_layer("logits").output,
                                           keras_net.output])
    feats, logits, probs = (np.asarray(a) for a in probe(x, training=False))
    p, cams, lg, low = net.windows(wins, raw=True)
    # float32 sums in another order (Keras' graph against the jit-compiled
    # one): agreement to _CAM_ULPS of each array's magnitude
    np.testing.assert_allclose(p, probs, rtol=0, atol=_CAM_ULPS)
    np.testing.assert_allclose(lg, logits, rtol=0, atol=_CAM_ULPS * np.abs(logits).max())
    ref_low = feats @ net.kernel
    np.testing.assert_allclose(low, ref_low, rtol=0, atol=_CAM_ULPS * np.abs(ref_low).max())
    # the centre path computes only the central pixels, and the same values
    pc, centre = net.window_centres(wins, half=2)
    np.testing.assert_array_equal(pc, p)
    np.testing.assert_allclose(centre, cams[:, 30:35, 30:35], rtol=0,
                               atol=_CAM_ULPS * np.abs(cams).max())


# float32 arithmetic of the network: each CAM value is a sum of thousands of
# float32 products whose order BLAS and XLA choose per CPU, so values of
# magnitude S agree between machines to a few hundred units in the last place
# of S (2**-23 S each); 2**-16 S is that bound.  Softmax probabilities are
# within [0, 1] and get the same bound with S = 1.
_CAM_ULPS = 2.0 ** -16


def _float32_feature_tolerance(X, names):
    """Per-element bound on |feature(machine A) - feature(machine B)|.

    The CAM statistics of each event (x/c min and max of its 5 x 5 window)
    are recovered from the features themselves (F1 = cmax - xmin, F3 =
    cmax/xmax - cmin/xmax).  A CAM value is a sum of products whose
    rounding error is a few hundred units in the last place of the
    *summands*, not of the sum (they cancel: a CAM value near 0 can carry
    the error of one near 100), so every statistic gets the absolute error
    ``delta = _CAM_ULPS * S`` with S the largest CAM magnitude of all the
    events (a bound of the summands' scale; the per-event magnitude was
    exceeded by 4 % on another CPU).  The error of every feature follows
    by the exact worst case of the formulas of Sec. 4.2 for errors up to
    ``delta`` (``safe_divide`` floors denominators at 1e-3).  Energies are
    exact.
    """
    from xcrfilter.ml.features import EPS
    col = {n: i for i, n in enumerate(names)}
    xmax, cmax, f1, f3 = (X[:, col[k]] for k in ("MAX_CAM_XRAY", "MAX_CAM_CR", "F1", "F3"))
    xmin = cmax - f1
    den = np.where(np.abs(xmax) < EPS, np.copysign(EPS, xmax), xmax)
    cmin = cmax - f3 * den
    delta = _CAM_ULPS * np.max(np.abs([xmin, xmax, cmin, cmax]))

    def ratio(a, b):
        # max |a/b - (a + da)/(b + db)| over |da|, |db| <= delta
        b = np.maximum(np.abs(b), EPS)
        with np.errstate(divide="ignore"):
            return np.where(b > delta, delta * (np.abs(a) + b) / (b * (b - delta)), np.inf)

    tol = np.zeros_like(X)
    tol[:, col["P_XRAY"]] = tol[:, col["P_CR"]] = _CAM_ULPS
    for k in ("MAX_CAM_XRAY", "MAX_CAM_CR", "MED_CAM_CR"):
        tol[:, col[k]] = delta
    tol[:, col["F1"]] = 2 * delta
    tol[:, col["F2"]] = ratio(cmax, xmax) + ratio(cmin, xmin)
    tol[:, col["F3"]] = ratio(cmax, xmax) + ratio(cmin, xmax)
    tol[:, col["F4"]] = ratio(cmax, xmin) + ratio(cmin, xmax)
    # the features are float64 differences of float32-derived ratios
    return tol + 4 * np.finfo(np.float32).eps * np.abs(X)


def test_verdicts_equal_reference(reference):
    """STATUS and PROB_CR of both shipped models equal the reference verdicts."""
    from xcrfilter.events import find_events
    from xcrfilter.filters.cam import cam_filter
    from xcrfilter.io.frames import as_energy_cube
    cube = as_energy_cube(reference["frames"].astype(np.float32) * u.eV)
    events = find_events(cube)
    for col in ("FRAME", "RAWX", "RAWY"):
        np.testing.assert_array_equal(np.asarray(events[col]), reference[col])
    _, sel = _windows(reference)
    for name in ("context", "paper"):
        model = load_model(name)
        out = cam_filter(cube, events, model=model, cascade=False)
        np.testing.assert_array_equal(np.asarray(out["STATUS"]), reference[f"{name}_status"])
        # every event has some feature within float32 error of some split
        # threshold of the forest, so a tree may take the other branch on
        # another CPU: up to two trees' votes of difference are allowed
        np.testing.assert_allclose(np.asarray(out["PROB_CR"]), reference[f"{name}_prob_cr"],
                                   rtol=0, atol=2.0 / model.forest.n_estimators, equal_nan=True)
        X, probs = model.features(cube.data, reference["FRAME"][sel], reference["RAWY"][sel],
                                  reference["RAWX"][sel], reference["ENERGY"][sel])
        np.testing.assert_allclose(probs, reference[f"{name}_probs"], rtol=0, atol=_CAM_ULPS)
        ref_x = reference[f"{name}_features"]
        tol = _float32_feature_tolerance(ref_x, model.feature_names)
        bad = np.abs(X - ref_x) > tol
        assert not bad.any(), (name, np.argwhere(bad)[:5], X[bad][:5], ref_x[bad][:5], tol[bad][:5])
    assert (reference["context_status"] & 32).any() and (reference["paper_status"] & 32).any()


def test_flat_forest_equals_sklearn(tmp_path):
    """Bit-identical probabilities, NaN features and thresholds ties included."""
    from xcrfilter.ml.flatforest import FlatForest
    from xcrfilter.ml.forest import build_forest
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(0, 0.5, 400) > 1.2).astype(int)
    X[rng.random(X.shape) < 0.05] = np.nan  # the trees learn where missing values go
    f = build_forest(n_estimators=25, random_state=0).fit(X, y)
    flat = FlatForest.from_estimator(f)
    test = rng.normal(size=(300, 6))
    test[::9, 2] = np.nan
    splits = flat._threshold[~flat._leaf & (flat._feature == 0)]
    test[::5, 0] = splits[np.isfinite(splits)][:60]      # exactly on split thresholds
    np.testing.assert_array_equal(flat.predict_proba(test), f.predict_proba(test))
    np.testing.assert_array_equal(flat.classes_, f.classes_)
    assert flat.n_features_in_ == 6 and flat.n_estimators == 25
    assert flat.predict_proba(test[:0]).shape == (0, 2)
    # the file: a skops dict of arrays that skops itself reads with its default types
    path = tmp_path / "forest.skops"
    save_forest(f, path)
    import skops.io as sio
    assert sio.get_untrusted_types(file=path) == []
    assert sio.load(path)["format"] == "xcrfilter-flat-forest"
    np.testing.assert_array_equal(load_forest(path).predict_proba(test), f.predict_proba(test))
    with pytest.raises(ValueError, match="shape"):
        flat.predict_proba(test[:, :5])


def test_flat_forest_file_checked(tmp_path):
    """A hostile or foreign array file fails with ModelFileError, never loops."""
    import skops.io as sio
    from xcrfilter.ml.forest import build_forest
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4))
    f = build_forest(n_estimators=3, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    from xcrfilter.ml.flatforest import FlatForest
    arrays = FlatForest.from_estimator(f).to_arrays()
    cycle = dict(arrays, children_left=np.where(arrays["children_left"] > 0, 0,
                                                arrays["children_left"]).astype(np.int32))
    sio.dump(cycle, tmp_path / "cycle.skops")
    with pytest.raises(ModelFileError, match="before its parent"):
        load_forest(tmp_path / "cycle.skops")
    sio.dump(dict(arrays, format="something else"), tmp_path / "other.skops")
    with pytest.raises(ModelFileError, match="not an xcrfilter flat forest"):
        load_forest(tmp_path / "other.skops")
    sio.dump({k: v for k, v in arrays.items() if k != "proba"}, tmp_path / "short.skops")
    with pytest.raises(ModelFileError, match="lacks proba"):
        load_forest(tmp_path / "short.skops")


def test_keras_file_checked(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not a loadable Keras model"):
        read_keras_file(bad)
    # a layer the frame classifier does not have
    src = default_model_dir() / "densenet.keras"
    with zipfile.ZipFile(src) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    parts["config.json"] = parts["config.json"].replace(b'"Dropout"', b'"GaussianNoise"', 1)
    with zipfile.ZipFile(tmp_path / "odd.keras", "w") as z:
        for n, data in parts.items():
            z.writestr(n, data)
    with pytest.raises(ModelFileError, match="GaussianNoise"):
        read_keras_file(tmp_path / "odd.keras")


def test_model_load_imports_neither_keras_nor_sklearn():
    """Loading a shipped model reads files only: no Keras, scikit-learn or skops import."""
    code = ("import sys; from xcrfilter.ml.model import load_model; load_model('context'); "
            "from xcrfilter.ml.morph import load_morph_model; load_morph_model(); "
            "print(sorted(m for m in ('keras', 'sklearn', 'skops', 'imblearn', 'jax') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent.parent,
                         env=dict(os.environ, KERAS_BACKEND="jax"))
    assert out.stdout.split("\n")[-2] == "[]"


def test_shipped_onnx_is_the_keras_network():
    """densenet.onnx of both shipped models is the export of their densenet.keras."""
    pytest.importorskip("onnx")
    from xcrfilter.ml.onnxnet import export_onnx
    for name in ("context", "paper"):
        d = default_model_dir(name)
        onnx_bytes = export_onnx(read_keras_file(d / "densenet.keras"))
        assert (d / "densenet.onnx").read_bytes() == onnx_bytes
        assert "densenet.onnx" in (d / "SHA256SUMS").read_text()


def test_onnx_file_listed_or_exported(tmp_path):
    """A model directory without a listed densenet.onnx gets the network exported on loading;
    a corrupt listed one fails with ModelFileError."""
    pytest.importorskip("onnx")
    import shutil
    from xcrfilter.ml.model_files import load_network, write_checksums
    d = tmp_path / "m"
    shutil.copytree(default_model_dir("paper"), d)
    (d / "densenet.onnx").unlink()
    write_checksums(d)
    wins = np.zeros((2, 64, 64), np.float32)
    wins[:, 30:33, 31] = 900.0
    exported = load_network(d).window_centres(wins)
    shipped = load_model("paper").network.window_centres(wins)
    for a, b in zip(exported, shipped):
        np.testing.assert_array_equal(a, b)
    (d / "densenet.onnx").write_bytes(b"not onnx")
    write_checksums(d)
    with pytest.raises(ModelFileError, match="not a loadable ONNX model|CAM frame classifier"):
        load_network(d)


def test_network_pickles():
    """A loaded network travels to dask workers: the ONNX Runtime session is made again."""
    import pickle
    net = load_model("paper").network
    copy = pickle.loads(pickle.dumps(net))
    wins = np.zeros((2, 64, 64), np.float32)
    wins[:, 32, 30:34] = 700.0
    for a, b in zip(net.window_centres(wins), copy.window_centres(wins)):
        np.testing.assert_array_equal(a, b)
