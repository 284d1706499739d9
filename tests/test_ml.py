"""Tests of the CAM filter's machine-learning parts (xcrfilter.ml)."""

import numpy as np
import pytest

keras = pytest.importorskip("xcrfilter.ml.densenet").keras  # the package sets the backend

from xcrfilter.ml.cam import CamNetwork, receptive_field, upsample_bilinear  # noqa: E402
from xcrfilter.ml.densenet import build_densenet, count_params  # noqa: E402
from xcrfilter.ml.features import (FEATURE_NAMES, cam_window_stats, event_features,  # noqa: E402
                                   safe_divide)
from xcrfilter.ml.checksums import ModelFileError  # noqa: E402
from xcrfilter.ml.forest import build_forest, load_forest, save_forest  # noqa: E402
from xcrfilter.ml.model import event_windows  # noqa: E402
from xcrfilter.ml.scaling import LogEnergyScaler  # noqa: E402


def _randomise_bn(model, seed=0):
    """Non-trivial batch-norm statistics so that tests see a generic network."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.3, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.3, n).astype("float32"))
    dense = model.get_layer("logits")
    dense.bias.assign(rng.normal(0, 1, dense.bias.shape[0]).astype("float32"))
    return model


@pytest.fixture(scope="module")
def small_net():
    model = build_densenet(initial_filters=16, growth_rate=6, layers_per_block=3, seed=3)
    return CamNetwork(_randomise_bn(model), LogEnergyScaler(1.4, 1.5))


# -- network ------------------------------------------------------------------

def test_build_shapes_paper_network():
    model = build_densenet()
    n = count_params(model)
    assert 5e4 < n < 5e5, n
    assert tuple(model.compute_output_shape((2, 64, 64, 1))) == (2, 4)
    feat = keras.Model(model.inputs, model.get_layer("cam_features").output)
    # 64 initial + 5 x 12, compressed by 0.5 to 62, + 5 x 12 = 122 maps at 16 x 16
    assert tuple(feat.compute_output_shape((2, 64, 64, 1))) == (2, 16, 16, 122)
    # fully convolutional: any size that is a multiple of 4
    assert tuple(feat.compute_output_shape((1, 128, 96, 1))) == (1, 32, 24, 122)
    assert receptive_field(model) == 66
    assert model.get_layer("block1_l1_drop").rate == pytest.approx(0.2)
    assert model.get_layer("init_conv").filters == 64
    assert model.get_layer("block2_l5_conv").filters == 12
    assert model.get_layer("logits").units == 4


def test_build_parameters_validated():
    with pytest.raises(ValueError, match="growth_rate"):
        build_densenet(growth_rate=0)
    with pytest.raises(ValueError, match="dropout"):
        build_densenet(dropout=1.0)
    m = build_densenet(n_blocks=3, layers_per_block=2, initial_filters=8, growth_rate=4)
    feat = keras.Model(m.inputs, m.get_layer("cam_features").output)
    assert tuple(feat.compute_output_shape((1, 64, 64, 1)))[1:3] == (8, 8)
    cheap = build_densenet(initial_stride=2, transition_pool=False, initial_filters=8,
                           growth_rate=4, layers_per_block=1)
    assert tuple(keras.Model(cheap.inputs, cheap.get_layer("cam_features").output)
                 .compute_output_shape((1, 64, 64, 1)))[1:3] == (16, 16)


# -- CAM (Eq. 1) ----------------------------------------------------------------

def test_cam_equals_gap_score(small_net):
    paper_net = small_net
    rng = np.random.default_rng(1)
    w = rng.normal(0, 25, (6, 64, 64)).astype(np.float32)
    w[:, 20:23, 40:43] += 2000.0
    w[3, 5:60, 10] += 5000.0  # a track
    probs, cams, logits, low = paper_net.windows(w, raw=True)
    # mean of each class's un-upsampled CAM + bias = pre-softmax score
    np.testing.assert_allclose(low.mean(axis=(1, 2)) + paper_net.bias, logits, atol=2e-4)
    # bilinear upsampling (half-pixel, clamped) preserves the mean
    np.testing.assert_allclose(cams.mean(axis=(1, 2)) + paper_net.bias, logits, atol=2e-4)
    np.testing.assert_allclose(upsample_bilinear(low, 4), cams, atol=1e-4)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), atol=1e-5)
    # the CAMs are not constant (the test sees a generic network)
    assert np.ptp(low[3, ..., 2]) > 1e-3


def test_upsample_bilinear_reference():
    m = np.arange(4.0).reshape(1, 2, 2, 1)
    up = upsample_bilinear(m, 2)[0, ..., 0]
    # half-pixel centres: output row 1 samples input 0.25 -> 0.75*a + 0.25*b
    assert up[0, 0] == 0.0 and up[3, 3] == 3.0
    assert up[1, 1] == pytest.approx(0.75 * 0.75 * 0 + 0.75 * 0.25 * 1 + 0.25 * 0.75 * 2
                                     + 0.25 * 0.25 * 3)
    assert up.mean() == pytest.approx(m.mean())


def test_batching_is_consistent(small_net):
    rng = np.random.default_rng(2)
    w = rng.normal(0, 25, (21, 64, 64)).astype(np.float32)
    p_all, c_all = small_net.windows(w)
    p_one, c_one = small_net.windows(w[7:8])
    np.testing.assert_allclose(p_all[7], p_one[0], atol=1e-5)
    np.testing.assert_allclose(c_all[7], c_one[0], atol=1e-4)


def _blob(rng):
    b = np.zeros((12, 12), np.float32)
    b[4:7, 4:7] = [[100, 400, 90], [300, 3000, 500], [80, 350, 120]]
    b[2:10, 9] = 4000.0  # a short track segment
    return b


def test_frame_maps_no_seams(small_net):
    rng = np.random.default_rng(3)
    blob = _blob(rng)
    # event island straddling the 64-pixel tile boundary (rows/cols 58..69)
    f1 = np.zeros((192, 192), np.float32)
    f1[58:70, 58:70] = blob
    # the same island at a tile centre (shift 36, a multiple of the stride 4)
    f2 = np.zeros((192, 192), np.float32)
    f2[94:106, 94:106] = blob
    tiled = small_net.frame_maps(f1, tile=64, margin=48)
    whole = small_net.frame_maps(f1, tile=192, margin=48)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    centred = small_net.frame_maps(f2, tile=64, margin=48)
    np.testing.assert_allclose(tiled[50:78, 50:78], centred[86:114, 86:114], atol=1e-4)
    assert np.ptp(tiled[58:70, 58:70, 2]) > 1e-3
    with pytest.raises(ValueError, match="receptive"):
        small_net.frame_maps(f1, tile=64, margin=8)


def test_event_window_cam_matches_frame_map_centre(small_net):
    """The event-centred window sees the same CAM at its centre as the frame map."""
    blob = _blob(None)
    f = np.zeros((1, 256, 256), np.float32)
    f[0, 119:131, 99:111] = blob
    row, col = 124, 104  # the 3000 eV pixel, on the stride-4 grid of the frame map
    win = event_windows(f, [0], [row], [col])
    assert win[0, 32, 32] == 3000.0
    _, cams = small_net.windows(win)
    full = small_net.frame_maps(f[0], tile=256, margin=48)
    a = cams[0, 30:35, 30:35]
    b = full[row - 2:row + 3, col - 2:col + 3]
    scale = np.abs(b).max()
    # the window's zero padding only touches the outermost receptive field
    assert np.abs(a - b).max() < 0.05 * scale


def test_event_windows_edges():
    f = np.arange(2 * 10 * 12, dtype=np.float32).reshape(2, 10, 12) + 1
    w = event_windows(f, [1, 0], [0, 9], [11, 0], size=8)
    assert w.shape == (2, 8, 8)
    assert w[0, 4, 4] == f[1, 0, 11]
    assert w[0, 3, 4] == 0.0          # above the first row: outside the frame
    assert w[0, 4, 5] == 0.0          # right of the last column
    assert w[1, 4, 4] == f[0, 9, 0] and w[1, 4, 3] == 0.0 and w[1, 3, 4] == f[0, 8, 0]


# -- features (Sec. 4.2, Eq. 9) -------------------------------------------------

def test_features_on_hand_built_cam():
    cx = np.full((1, 9, 9), 5.0)
    cc = np.full((1, 9, 9), -1.0)
    cx[0, 4, 4] = 2.0      # min XRAY in the 5x5 window
    cx[0, 2, 6] = 8.0      # max XRAY (inside the window: rows/cols 2..6)
    cx[0, 0, 0] = 100.0    # outside the window: ignored
    cc[0, 3:6, 3:6] = np.arange(9).reshape(3, 3)  # 0..8
    cc[0, 6, 2] = -4.0     # min CR
    stats = cam_window_stats(cx, cc, 4, 4)
    assert stats["xray_min"][0] == 2.0 and stats["xray_max"][0] == 8.0
    assert stats["cr_max"][0] == 8.0 and stats["cr_min"][0] == -4.0
    # 25 values: 9 of 0..8, one -4, fifteen -1 -> median -1
    assert stats["cr_median"][0] == -1.0
    X = event_features([1500.0], [0.7], [0.2], stats)
    assert X.shape == (1, len(FEATURE_NAMES)) == (1, 10)
    np.testing.assert_allclose(X[0, :6], [1500, 0.7, 0.2, 8, 8, -1])
    f1 = 8 - 2
    f2 = 8 / 8 - (-4) / 2
    f3 = 8 / 8 - (-4) / 8
    f4 = 8 / 2 - (-4) / 8
    np.testing.assert_allclose(X[0, 6:], [f1, f2, f3, f4])


def test_safe_divide_zero_and_negative():
    num = np.array([1.0, 1.0, 1.0, -2.0, 3.0])
    den = np.array([0.0, -0.0, -1e-9, 1e-9, -2.0])
    r = safe_divide(num, den, eps=1e-3)
    assert np.isfinite(r).all()
    np.testing.assert_allclose(r, [1e3, 1e3, -1e3, -2e3, -1.5])
    cx = np.zeros((1, 5, 5))
    cc = -np.ones((1, 5, 5))
    X = event_features([500.0], [0.5], [0.5], cam_window_stats(cx, cc, 2, 2))
    assert np.isfinite(X).all()
    # f2 = max(CR)/max(X) - min(CR)/min(X) with zero XRAY CAM -> (-1 - -1)/eps = 0
    assert X[0, 7] == pytest.approx(0.0)
    assert X[0, 8] == pytest.approx(0.0)


def test_cam_window_stats_clips_at_map_edge():
    cx = np.arange(16.0).reshape(1, 4, 4)
    s = cam_window_stats(cx, cx, 0, 0)
    assert s["xray_min"][0] == 0 and s["xray_max"][0] == 10  # rows/cols 0..2


# -- forest and model files -------------------------------------------------------

def _toy_xy(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10))
    y = (rng.random(n) < 0.08).astype(int)
    X[y == 1, 2] += 2.5
    return X, y


def test_forest_settings_and_roundtrip(tmp_path):
    f = build_forest(n_estimators=10, random_state=0)
    p = f.get_params()
    assert p["criterion"] == "gini" and p["max_features"] == 3
    assert p["sampling_strategy"] == "all" and p["replacement"] is True
    assert p["bootstrap"] is False
    X, y = _toy_xy()
    f.fit(X, y)
    path = tmp_path / "forest.skops"
    save_forest(f, path)
    g = load_forest(path)
    np.testing.assert_allclose(g.predict_proba(X), f.predict_proba(X))
    # the CR class is found far better than chance on the toy problem
    assert g.predict_proba(X)[y == 1, 1].mean() > g.predict_proba(X)[y == 0, 1].mean() + 0.3


def test_forest_corrupt_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.skops"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(ModelFileError, match="not a valid skops"):
        load_forest(bad)
    with pytest.raises(ModelFileError, match="not found"):
        load_forest(tmp_path / "missing.skops")
    # a foreign (but skops-trusted) estimator
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    X, y = _toy_xy()
    sio.dump(LogisticRegression().fit(X, y), tmp_path / "lr.skops")
    with pytest.raises(ModelFileError, match="not a BalancedRandomForestClassifier"):
        load_forest(tmp_path / "lr.skops")
    # a file with a type outside the trusted list
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer
    import json
    sio.dump(Pipeline([("f", FunctionTransformer(json.dumps)),
                       ("rf", RandomForestClassifier(n_estimators=2).fit(X, y))]),
             tmp_path / "pipe.skops")
    with pytest.raises(ModelFileError, match="not trusted"):
        load_forest(tmp_path / "pipe.skops")


def test_extra_features_hand_built():
    from xcrfilter.ml.features import extra_features
    w = np.zeros((1, 16, 16))
    w[0, 8, 8] = 5000.0        # the event itself (blanked)
    w[0, 7, 9] = 900.0         # inside its 5x5 island (blanked)
    w[0, 1, 1] = 300.0         # context pixels
    w[0, 14, 2] = 50.0         # below the split threshold
    w[0, 3, 12] = 1200.0
    np.testing.assert_allclose(extra_features(w, 80.0), [[1200.0, 1500.0, 2]])


def test_train_cli_arguments():
    import argparse
    from xcrfilter.cli import train as cli
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    a = p.parse_args(["--tiles", "t.npz", "--simulate-frames", "100", "-o", "m"])
    assert a.simulate_frames == 100 and a.trees == 1000 and a.max_features == 3
    assert a.lr0 == 0.007 and a.decay == 0.95 and a.target_fpr == pytest.approx(0.0182)
    with pytest.raises(SystemExit):
        p.parse_args(["--tiles", "t.npz", "-o", "m"])  # frames or simulated frames needed
