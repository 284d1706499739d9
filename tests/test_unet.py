"""The U-Net segmentation filter: network, focal loss, mask, pipeline method, model files."""
import copy
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import CCDData
from astropy.table import QTable

from xcrfilter import run_pipeline
from xcrfilter.events import find_events
from xcrfilter.filters.unet import UNET_BIT, event_scores, unet_filter, unet_mask
from xcrfilter.ml import unet, unet_model, unet_training
from xcrfilter.ml.checksums import ModelFileError
from xcrfilter.simulate import SimulationParameters, simulate_frames

NOISE_EV = 7 * 3.65  # WFI readout noise, 7 electrons rms


@pytest.fixture(scope="module")
def model():
    return unet_model.load_unet_model()


def hand_frame(seed=0):
    """A 128 x 128 frame [eV]: noise, a straight track, and one X-ray island.

    Returns the frame, the track's pixels (rows, cols) and the X-ray island's.
    """
    rng = np.random.default_rng(seed)
    frame = rng.normal(0.0, NOISE_EV, (128, 128)).astype(np.float32)
    # an inclined minimum-ionising track: 40 pixels, ~3 keV each, along a line
    t = np.arange(40)
    rows, cols = 20 + t * 3 // 4, 20 + t
    frame[rows, cols] += rng.uniform(2500, 4000, t.size).astype(np.float32)
    frame[rows + 1, cols] += 400.0  # charge shared into the next row
    track = (np.concatenate([rows, rows + 1]), np.concatenate([cols, cols]))
    # a 2 keV X-ray split over two pixels, far from the track
    frame[100, 40] += 1700.0
    frame[100, 41] += 300.0
    xray = (np.array([100, 100]), np.array([40, 41]))
    return frame, track, xray


# -- network -------------------------------------------------------------------

def test_receptive_field_formula():
    assert unet.receptive_field() == 96               # 4 levels, 2 x (3x3) convolutions
    assert unet.receptive_field(levels=1) == 5        # two 3x3 convolutions
    assert unet.receptive_field(levels=3) == 44
    assert unet.receptive_field(levels=2, convs=1) == 1 + 2 + 1 + 4 + 2


def test_receptive_field_matches_gradient():
    """The input pixels that move one output pixel span exactly the computed field."""
    import jax
    net = unet.build_unet(levels=3, base_filters=4, seed=1)
    rng = np.random.default_rng(2)
    x0 = rng.normal(0, 3, (1, 96, 96, 1)).astype(np.float32)
    rf = unet.receptive_field(levels=3)
    pixels = ((48, 48), (49, 49), (50, 51), (51, 50))
    masks = np.zeros((len(pixels), 96, 96), np.float32)
    for i, (r, c) in enumerate(pixels):
        masks[i, r, c] = 1.0
    # the gradient of each output pixel's CR probability, one compilation for all four
    grads = jax.vmap(jax.grad(lambda x, m: (net(x)[0, :, :, 2] * m).sum()),
                     in_axes=(None, 0))(x0, masks)
    sides = []
    for grad in np.asarray(grads):
        ys, xs = np.nonzero(np.abs(grad[0, :, :, 0]) > 0)
        sides += [ys.max() - ys.min() + 1, xs.max() - xs.min() + 1]
    assert max(sides) == rf
    assert min(sides) >= rf - 4   # pooling alignment shifts the edges by < 4 px


def test_flops_per_pixel_counts_the_network_weights():
    """Count from the Keras kernels: 2 * kernel size per output pixel of each layer."""
    net = unet.build_unet(levels=4, base_filters=8)
    total = 0.0
    for layer in net.layers:
        kind = type(layer).__name__
        if kind not in ("Conv2D", "Conv2DTranspose"):
            continue
        kernel = np.prod(layer.kernel.shape)
        # pixels of the layer's output per input pixel
        name = layer.name
        if name.startswith("bottom"):
            scale = 4.0 ** -3
        elif name == "classes":
            scale = 1.0
        else:
            lev = int(name.split("_")[0][-1]) - 1
            scale = 4.0 ** -lev
        per_out = 2 * kernel / 4 if kind == "Conv2DTranspose" else 2 * kernel
        total += per_out * scale
    assert unet.flops_per_pixel() == pytest.approx(total)
    assert unet.flops_per_pixel(levels=1, base_filters=2, convs=1) == 2 * 9 * 2 + 2 * 2 * 3


def test_network_shapes_and_probabilities():
    net = unet.build_unet(levels=2, base_filters=4)
    out = np.asarray(net(np.zeros((2, 16, 24, 1), np.float32)))
    assert out.shape == (2, 16, 24, 3)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)


# -- focal loss ----------------------------------------------------------------

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
TRUTH = np.array([0, 2])


def test_focal_loss_hand_computed():
    # pixel 1: -0.25 * 0.3**2 * ln 0.7; pixel 2: -2 * 0.4**2 * ln 0.6
    want = (0.25 * 0.09 * 0.35667494393873245 + 2 * 0.16 * 0.5108256237659907) / 2
    assert want == pytest.approx(0.0857446929, rel=1e-9)
    assert unet.focal_loss_value(TRUTH, PROBS, alpha=(0.25, 1, 2), gamma=2) == \
        pytest.approx(want, rel=1e-6)
    keras_loss = unet.focal_loss(alpha=(0.25, 1, 2), gamma=2)
    onehot = np.eye(3, dtype=np.float32)[TRUTH][None, None]   # (1, 1, 2, 3)
    got = float(np.asarray(keras_loss(onehot, PROBS[None, None].astype(np.float32)))[0])
    assert got == pytest.approx(want, rel=1e-5)


def test_focal_loss_gamma0_is_weighted_cross_entropy():
    import keras
    want = -(0.25 * np.log(0.7) + 2 * np.log(0.6)) / 2
    assert unet.focal_loss_value(TRUTH, PROBS, alpha=(0.25, 1, 2), gamma=0) == \
        pytest.approx(want, rel=1e-6)
    onehot = np.eye(3, dtype=np.float32)[TRUTH]
    ce = np.asarray(keras.losses.categorical_crossentropy(onehot, PROBS.astype(np.float32)))
    assert unet.focal_loss_value(TRUTH, PROBS, alpha=1, gamma=0) == \
        pytest.approx(float(ce.mean()), rel=1e-5)
    # focusing lowers the loss of confident pixels more than that of hard ones
    easy = unet.focal_loss_value([0], [[0.9, 0.05, 0.05]], gamma=2) / \
        unet.focal_loss_value([0], [[0.9, 0.05, 0.05]], gamma=0)
    hard = unet.focal_loss_value([0], [[0.3, 0.4, 0.3]], gamma=2) / \
        unet.focal_loss_value([0], [[0.3, 0.4, 0.3]], gamma=0)
    assert easy == pytest.approx(0.01) and hard == pytest.approx(0.49)


# -- the shipped model on hand-built frames --------------------------------------

def test_mask_marks_track_keeps_xray(model):
    frame, track, xray = hand_frame()
    ccd = unet_mask(frame * u.eV, model=model)
    assert ccd.mask.shape == frame.shape and ccd.flags.shape == frame.shape
    on_track = ccd.mask[track]
    assert on_track[:40].mean() >= 0.9          # the track's core pixels
    assert not ccd.mask[xray].any()              # the X-ray island is kept
    assert ccd.flags[xray].max() < model.mask_threshold
    assert ccd.meta["UNTNCRPX"] == int((ccd.flags >= model.mask_threshold).sum())
    # nothing far from both is masked
    assert not ccd.mask[80:, 80:].any()


def test_event_scores_separate_track_and_xray(model):
    frame, track, xray = hand_frame(seed=1)
    ev = unet_filter(frame * u.eV, model=model)
    is_x = (np.asarray(ev["RAWY"]) == 100) & (np.asarray(ev["RAWX"]) == 40)
    assert is_x.sum() == 1
    assert float(ev["PROB_UNET"][is_x][0]) < model.threshold
    on_track = np.isin(np.asarray(ev["RAWY"]) * 1000 + np.asarray(ev["RAWX"]),
                       track[0] * 1000 + track[1])
    assert on_track.sum() >= 3
    assert np.all(np.asarray(ev["PROB_UNET"])[on_track] >= model.threshold)
    # the filter evaluates only the tiles under its events: the scores are
    # those of the whole-frame map of unet_mask
    ccd = unet_mask(frame * u.eV, model=model)
    np.testing.assert_allclose(np.asarray(ev["PROB_UNET"]), event_scores(ccd.flags, ev),
                               atol=1e-6)


def test_event_scores_window():
    p = np.zeros((2, 10, 10), np.float32)
    p[1, 4, 6] = 0.8
    p[1, 0, 0] = 0.3
    ev = QTable({"FRAME": [1, 1, 1, 0], "RAWX": [5, 5, 1, 5], "RAWY": [5, 6, 1, 5]})
    assert event_scores(p, ev, 3).tolist() == pytest.approx([0.8, 0.0, 0.3, 0.0])
    assert event_scores(p, ev, 5).tolist() == pytest.approx([0.8, 0.8, 0.3, 0.0])
    assert event_scores(p, ev, 1).tolist() == pytest.approx([0.0, 0.0, 0.0, 0.0])


def test_sparse_tiles_equal_dense_where_evaluated(model):
    frame, _, _ = hand_frame()
    px_s, pc_s = model.probability_maps(frame)
    px_d, pc_d = model.probability_maps(frame, dense=True)
    evaluated = pc_s > 0
    assert evaluated.sum() >= 2 * model.core ** 2
    np.testing.assert_allclose(pc_s[evaluated], pc_d[evaluated], atol=1e-5)
    # tiles without a pixel >= 260 eV are not evaluated
    assert (pc_s[96:, 96:] == 0).all() and (pc_d[96:, 96:] > 0).all()


def test_pipeline_bit_exactly_where_prob_at_threshold(model):
    sim = simulate_frames(6, seed=8, shape=(128, 128),
                          params=SimulationParameters(cr_rate=3.0, xray_rate=6.0))
    base = run_pipeline(sim.frames * u.eV, "unet")
    p = np.asarray(base["PROB_UNET"])
    thr = float(np.median(p))
    ev = run_pipeline(sim.frames * u.eV, "vfaint,unet", options={"unet": {"threshold": thr}})
    bit = (np.asarray(ev["STATUS"]) >> UNET_BIT) & 1
    np.testing.assert_array_equal(bit == 1, np.asarray(ev["PROB_UNET"]) >= thr)
    assert 0 < bit.sum() < len(ev)
    vf = run_pipeline(sim.frames * u.eV, "vfaint")
    np.testing.assert_array_equal(np.asarray(ev["STATUS"]) & ~(1 << UNET_BIT),
                                  np.asarray(vf["STATUS"]))
    assert ev.meta["UNTTHR"] == pytest.approx(thr)
    assert ev.meta["UNTNREJ"] == int(bit.sum())


def test_mask_ccddata_contract(model, tmp_path):
    frame, track, _ = hand_frame()
    bad = np.zeros(frame.shape, bool)
    bad[5, 5] = True
    ccd = CCDData(frame.copy(), unit="eV", mask=bad.copy())
    out = unet_mask(ccd, model=model)
    np.testing.assert_array_equal(ccd.data, frame)
    np.testing.assert_array_equal(ccd.mask, bad)
    assert out.mask[5, 5] and out.unit == u.eV and out.flags.dtype == np.float32
    out.write(tmp_path / "m.fits", hdu_flags="PROB_UNET")
    from astropy.io import fits
    with fits.open(tmp_path / "m.fits") as hdul:
        np.testing.assert_array_equal(hdul["PROB_UNET"].data, out.flags)
        assert hdul[0].header["UNTSHA"] == model.sha256


# -- training and model files --------------------------------------------------

def test_training_smoke_and_model_roundtrip(tmp_path):
    x, y = unet_training.training_crops(24, seed=5, crop=32, progress=False)
    assert x.shape[1:] == (32, 32) and y.shape == x.shape and (y == 2).any()
    net, scaler, rec = unet_training.train_unet(x[:32], y[:32], levels=2, base_filters=4,
                                                epochs=2, batch_size=8, verbose=0)
    assert rec["epochs"] == 2 and np.all(np.isfinite(rec["loss"]))
    assert rec["loss"][1] < rec["loss"][0]
    meta = dict(name="smoke", threshold=0.4, mask_threshold=0.6,
                architecture=dict(levels=2), tiling=dict(core=16, margin=8))
    sha = unet_model.save_unet_model(tmp_path / "m", net, scaler, meta, "card\n")
    loaded = unet_model.load_unet_model(tmp_path / "m")
    assert loaded.sha256 == sha and loaded.threshold == 0.4 and loaded.core == 16
    # training writes the ONNX export too, checked like the other files
    assert "unet.onnx" in (tmp_path / "m" / "SHA256SUMS").read_text()
    want = np.asarray(net(scaler.transform(x[:3])[..., None]))
    np.testing.assert_allclose(loaded.predict_windows(x[:3]), want, atol=1e-5)
    # a modified file fails its checksum
    d = tmp_path / "bad"
    shutil.copytree(tmp_path / "m", d)
    m = json.loads((d / "model.json").read_text())
    m["threshold"] = 0.1
    (d / "model.json").write_text(json.dumps(m))
    with pytest.raises(ModelFileError, match="sha256 does not match"):
        unet_model.load_unet_model(d)


def test_bad_inputs(model, tmp_path):
    frame, _, _ = hand_frame()
    with pytest.raises(TypeError):
        unet_mask(frame, model=model)                       # no unit
    with pytest.raises(ValueError, match="threshold"):
        unet_mask(frame * u.eV, threshold=1.5, model=model)
    with pytest.raises(ValueError, match="window"):
        unet_filter(frame * u.eV, window=4, model=model)
    with pytest.raises(ValueError, match="5 x 5"):
        unet_mask(np.zeros((3, 3)) * u.eV, model=model)
    with pytest.raises(ValueError):
        unet_mask(np.zeros(10) * u.eV, model=model)
    with pytest.raises(TypeError, match="frames"):
        unet_filter(find_events(frame * u.eV), model=model)
    with pytest.raises(TypeError, match="model"):
        unet_filter(frame * u.eV, model=3)
    with pytest.raises(ModelFileError, match="SHA256SUMS"):
        unet_filter(frame * u.eV, model=tmp_path)
    with pytest.raises(ValueError, match="'treshold'.*'unet'"):
        run_pipeline(frame * u.eV, "unet", options={"unet": {"treshold": 0.5}})
    with pytest.raises(ValueError, match="gamma"):
        unet.focal_loss(gamma=-1)
    with pytest.raises(ValueError, match="alpha"):
        unet.focal_loss(alpha=(1, 2))
    with pytest.raises(ValueError, match="kernel"):
        unet.build_unet(kernel=2)
    with pytest.raises(ValueError, match="divisible"):
        model.predict_windows(np.zeros((1, 30, 30)))
    with pytest.raises(ValueError, match="divisible"):
        unet_training.train_unet(np.zeros((2, 30, 30)), np.zeros((2, 30, 30), int), epochs=1)


# -- the network in ONNX Runtime -------------------------------------------------

# ONNX Runtime and Keras (XLA) compute the same float32 convolutions with
# different kernels and summation orders, and a CPU's SIMD width changes the
# order again: the logits differ by float32 rounding of sums of ~100-600
# terms, and a softmax probability moves by at most half the largest logit
# difference.  Measured on this machine: at most 1.3e-6 on the probabilities
# of the shipped model.  atol 1e-5 leaves a factor ~8 for other CPUs and
# libraries; a mistake shows far above it (one kernel flipped in the export
# moves the probabilities of simulated windows by 0.8).
ONNX_ATOL = 1e-5


@pytest.fixture(scope="module")
def keras_net():
    import keras
    return keras.saving.load_model(unet_model.default_unet_dir() / "unet.keras", compile=False)


def _sim_windows():
    """16 windows of 64 x 64 pixels [eV] cut from simulated frames with X-rays and CRs."""
    sim = simulate_frames(4, seed=8, shape=(128, 128),
                          params=SimulationParameters(cr_rate=3.0, xray_rate=6.0))
    w = sim.frames.reshape(4, 2, 64, 2, 64).transpose(0, 1, 3, 2, 4).reshape(16, 64, 64)
    assert (sim.labels == 2).any() and (sim.labels == 1).any()
    return w.astype(np.float32)


def test_onnx_equals_keras_predict(model, keras_net):
    """The shipped unet.onnx gives Keras' probabilities on random and simulated windows,
    whatever the batch size and window sides."""
    from xcrfilter.ml.unet_onnx import UnetRuntime
    rng = np.random.default_rng(3)
    cases = [_sim_windows()]
    for shape in ((1, 64, 64), (7, 32, 48), (2, 128, 96)):
        noise = rng.normal(0.0, NOISE_EV, shape)
        hits = rng.exponential(1500.0, shape) * (rng.random(shape) < 0.05)
        cases.append((noise + hits).astype(np.float32))
    runtime = UnetRuntime(unet_model.default_unet_dir() / "unet.onnx")
    for w in cases:
        x = model.scaler.transform(w)
        want = keras_net.predict(x[..., None], verbose=0)
        got = runtime(x)
        assert got.shape == w.shape + (3,) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=ONNX_ATOL)
        np.testing.assert_allclose(model.predict_windows(w, batch_size=3), want, rtol=0,
                                   atol=ONNX_ATOL)
    # the simulated windows hold confident CR and X-ray pixels: not a trivial match
    p = runtime(model.scaler.transform(cases[0]))
    assert p[..., 2].max() > 0.9 and p[..., 1].max() > 0.5


def test_shipped_onnx_is_the_keras_network(keras_net):
    """unet.onnx is the export of the shipped unet.keras, listed in SHA256SUMS."""
    from xcrfilter.ml.unet_onnx import export_unet_onnx
    d = unet_model.default_unet_dir()
    assert (d / "unet.onnx").read_bytes() == export_unet_onnx(keras_net)
    assert "unet.onnx" in (d / "SHA256SUMS").read_text()


def test_status_verdicts_onnx_equal_keras(model, keras_net):
    """The unet filter flags the same events whether the network runs in ONNX Runtime or
    in Keras."""
    sim = simulate_frames(6, seed=21, shape=(128, 128),
                          params=SimulationParameters(cr_rate=3.0, xray_rate=6.0))
    frames = sim.frames * u.eV
    keras_model = copy.copy(model)
    keras_model.runtime = lambda x: keras_net.predict(x[..., None], verbose=0)
    for thr in (None, 0.3):
        ev_onnx = unet_filter(frames, threshold=thr, model=model)
        ev_keras = unet_filter(frames, threshold=thr, model=keras_model)
        np.testing.assert_allclose(np.asarray(ev_onnx["PROB_UNET"]),
                                   np.asarray(ev_keras["PROB_UNET"]), rtol=0, atol=ONNX_ATOL)
        np.testing.assert_array_equal(np.asarray(ev_onnx["STATUS"]),
                                      np.asarray(ev_keras["STATUS"]))
        bit = (np.asarray(ev_onnx["STATUS"]) >> UNET_BIT) & 1
        assert 0 < bit.sum() < len(bit)


def test_export_refuses_unknown_layers():
    import keras
    from keras import layers
    from xcrfilter.ml.unet_onnx import export_unet_onnx
    inp = keras.Input((None, None, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = layers.BatchNormalization(name="odd_norm")(x)
    out = layers.Conv2D(3, 1, activation="softmax")(x)
    with pytest.raises(ValueError, match="'odd_norm'.*BatchNormalization"):
        export_unet_onnx(keras.Model(inp, out))
    x = layers.Conv2D(4, 3, padding="same", activation="tanh", name="tanh_conv")(inp)
    out = layers.Conv2D(3, 1, activation="softmax")(x)
    with pytest.raises(ValueError, match="'tanh_conv'.*activation 'tanh'"):
        export_unet_onnx(keras.Model(inp, out))
    x = layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="wide_up")(inp)
    out = layers.Conv2D(3, 1, activation="softmax")(x)
    with pytest.raises(ValueError, match="'wide_up'.*kernel = strides"):
        export_unet_onnx(keras.Model(inp, out))
    x = layers.Conv2D(4, 3, padding="same", dilation_rate=2, name="dilated")(inp)
    out = layers.Conv2D(3, 1, activation="softmax")(x)
    with pytest.raises(ValueError, match="'dilated'.*dilation_rate"):
        export_unet_onnx(keras.Model(inp, out))


def test_export_of_a_small_unet():
    """Another architecture (3 levels, 4 filters, random weights) exports to the same
    probabilities."""
    from xcrfilter.ml.unet_onnx import UnetRuntime, export_unet_onnx
    net = unet.build_unet(levels=3, base_filters=4, seed=4)
    x = np.random.default_rng(5).normal(0.0, 2.0, (3, 40, 24)).astype(np.float32)
    got = UnetRuntime(export_unet_onnx(net))(x)
    np.testing.assert_allclose(got, net.predict(x[..., None], verbose=0), rtol=0, atol=ONNX_ATOL)


def test_onnx_file_listed_or_exported(model, tmp_path):
    """A directory whose SHA256SUMS does not list unet.onnx gets the network exported from
    unet.keras on loading (an unlisted file is never run); a corrupt listed one fails."""
    from xcrfilter.ml.checksums import write_checksums
    d = tmp_path / "m"
    shutil.copytree(unet_model.default_unet_dir(), d)
    (d / "unet.onnx").write_bytes(b"not onnx")                    # unlisted: ignored
    write_checksums(d, [n for n in unet_model.CHECKED_FILES if n != "unet.onnx"])
    old = unet_model.load_unet_model(d)
    w = _sim_windows()
    np.testing.assert_array_equal(old.predict_windows(w), model.predict_windows(w))
    write_checksums(d, unet_model.CHECKED_FILES)
    with pytest.raises(ModelFileError, match="unet.onnx.*not a loadable ONNX model"):
        unet_model.load_unet_model(d)


def test_model_pickles(model):
    """A loaded model travels to dask workers: the ONNX Runtime session is made again."""
    w = _sim_windows()[:4]
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict_windows(w),
                                  model.predict_windows(w))


def test_load_and_filter_import_neither_keras_nor_jax():
    """Loading the shipped U-Net and running the filter import neither Keras nor JAX."""
    code = ("import sys; import astropy.units as u; "
            "from xcrfilter.simulate import simulate_frames; "
            "from xcrfilter.filters.unet import unet_filter; "
            "from xcrfilter.ml.unet_model import load_unet_model; load_unet_model(); "
            "ev = unet_filter(simulate_frames(2, seed=1, shape=(128, 128)).frames * u.eV); "
            "assert len(ev) > 0; "
            "print(sorted(m for m in ('keras', 'jax', 'tensorflow', 'torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent.parent,
                         env=dict(os.environ, KERAS_BACKEND="jax"))
    assert out.stdout.split("\n")[-2] == "[]"
