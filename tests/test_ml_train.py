"""End-to-end training of a tiny CAM model and model-directory integrity."""
import json
import shutil

import astropy.units as u
import numpy as np
import pytest

pytest.importorskip("xcrfilter.ml.densenet")  # Keras, with the package's backend
pytest.importorskip("imblearn")

from xcrfilter.meta import card_value  # noqa: E402
from xcrfilter.ml.checksums import ModelFileError  # noqa: E402
from xcrfilter.ml.model import load_model  # noqa: E402
from xcrfilter.ml.stage1 import load_tiles, lr_schedule  # noqa: E402
from xcrfilter.ml.training import train  # noqa: E402

TINY = dict(initial_filters=4, growth_rate=2, layers_per_block=1)


def _xray(rng, frame, lab, y, x, e):
    core = np.array([[0.05, 0.1, 0.05], [0.1, 0.4, 0.1], [0.05, 0.1, 0.05]])
    frame[y - 1:y + 2, x - 1:x + 2] += e * core / core.sum()
    lab[y - 1:y + 2, x - 1:x + 2] = 1


def _synthetic_frames(n, seed, size=128):
    """Frames with X-ray islands and CR secondaries beside a track (truth labels)."""
    rng = np.random.default_rng(seed)
    frames = rng.normal(0, 25, (n, size, size)).astype(np.float32)
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        for _ in range(12):
            y, x = rng.integers(8, size - 8, 2)
            _xray(rng, frames[i], labels[i], y, x, rng.uniform(500, 8000))
        # a track with two secondary islands beside it (labelled CR)
        r0 = rng.integers(20, size - 20)
        frames[i, r0, 10:size - 10] += 3000.0
        labels[i, r0, 10:size - 10] = 2
        for dx in (30, 70):
            y, x = r0 + 6, dx
            tmp = np.zeros_like(labels[i])
            _xray(rng, frames[i], tmp, y, x, rng.uniform(1000, 5000))
            labels[i][tmp > 0] = 2
    return frames, labels


def _tiles(path, n_per_class=10, seed=0):
    rng = np.random.default_rng(seed)
    tiles, labels = [], []
    for k in range(4):
        for _ in range(n_per_class):
            t = rng.normal(0, 25, (64, 64)).astype(np.float32)
            if k in (1, 3):
                t[30:33, 30:33] += 1500
            if k in (2, 3):
                t[10, 5:60] += 4000
            tiles.append(t)
            labels.append(k)
    np.savez(path, tiles=np.array(tiles), labels=np.array(labels),
             classes=np.array(["EMPTY", "XRAY", "CR", "MIX"]))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("cam")
    _tiles(d / "tiles.npz")
    chunks = [_synthetic_frames(4, 1), _synthetic_frames(4, 2)]
    meta = train(d / "tiles.npz", chunks, d / "model", epochs=1, batch_size=16,
                 arch=TINY, n_estimators=10, seed=3, progress=False,
                 command="pytest tiny run")
    return d / "model", meta


def test_lr_schedule_is_the_papers():
    assert lr_schedule(0) == pytest.approx(0.007)
    assert lr_schedule(10) == pytest.approx(0.007 * 0.95 ** 10)


def test_load_tiles(tmp_path):
    _tiles(tmp_path / "t.npz", 2)
    x, y, sc = load_tiles(tmp_path / "t.npz")
    assert x.shape == (8, 64, 64) and list(np.bincount(y)) == [2, 2, 2, 2] and sc is None
    np.savez(tmp_path / "bad.npz", tiles=x, labels=y, classes=np.array(["A", "B", "C", "D"]))
    with pytest.raises(ValueError, match="unknown tile classes"):
        load_tiles(tmp_path / "bad.npz")


def test_tiny_end_to_end_training(tiny_model):
    model_dir, meta = tiny_model
    for name in ("densenet.keras", "scaling.json", "forest.skops", "model.json",
                 "MODEL_CARD.md", "SHA256SUMS", "stage1_log.csv"):
        assert (model_dir / name).exists(), name
    log = (model_dir / "stage1_log.csv").read_text().splitlines()
    assert log[0].startswith("epoch") and len(log) == 2
    assert 0.0 <= meta["threshold"] <= 1.0
    assert meta["stage2"]["n_cr_train"] > 0 and meta["stage2"]["n_events_train"] > 0
    assert meta["stage2"]["n_estimators"] == 10
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert "pytest tiny run" in card and "keras" in card
    cam = load_model(model_dir)
    assert cam.forest.n_estimators == 10 and len(cam.sha256) == 64
    assert cam.feature_names[:3] == ("ENERGY", "P_XRAY", "P_CR")
    # cached: loading again gives the same object (never reloaded per frame)
    assert load_model(model_dir) is cam


def test_tiny_model_filters_frames(tiny_model):
    from xcrfilter.filters.cam import cam_filter
    model_dir, _ = tiny_model
    frames, labels = _synthetic_frames(2, 9)
    ev = cam_filter(frames * u.eV, model=model_dir, threshold=0.5)
    e = ev["ENERGY"].to_value(u.eV)
    inb = (e >= 300) & (e < 10000)
    assert np.isfinite(ev["PROB_CR"][inb]).all() and np.isnan(ev["PROB_CR"][~inb]).all()
    rej = (np.asarray(ev["STATUS"]) & 32) > 0
    np.testing.assert_array_equal(rej, np.asarray(ev["PROB_CR"]) >= 0.5)
    assert card_value(ev.meta, "CAMSHA") == load_model(model_dir).sha256
    assert card_value(ev.meta, "CAMTHR") == 0.5
    # events given: the input table is not modified, the scores are the same
    from xcrfilter.events import find_events
    ev_in = find_events(frames * u.eV)
    ev2 = cam_filter(frames * u.eV, ev_in, model=model_dir, threshold=0.5)
    assert "PROB_CR" not in ev_in.colnames and not np.asarray(ev_in["STATUS"]).any()
    np.testing.assert_allclose(np.asarray(ev2["PROB_CR"]), np.asarray(ev["PROB_CR"]))


def _copy(model_dir, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(model_dir, dst)
    return dst


def test_corrupt_model_files(tiny_model, tmp_path):
    model_dir, _ = tiny_model
    d = _copy(model_dir, tmp_path)
    with open(d / "forest.skops", "r+b") as f:
        f.seek(100)
        f.write(b"garbage!")
    with pytest.raises(ModelFileError, match="sha256"):
        load_model(d)
    # a corrupt network file whose checksum was (re)written: Keras cannot read it
    d2 = _copy(model_dir, tmp_path / "b")
    (d2 / "densenet.keras").write_bytes(b"PK\x03\x04 not really a zip")
    from xcrfilter.ml.model_files import write_checksums
    write_checksums(d2)
    with pytest.raises(ModelFileError, match="not a loadable Keras model"):
        load_model(d2)


def test_foreign_model_directory(tiny_model, tmp_path):
    model_dir, _ = tiny_model
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nothing")
    d = _copy(model_dir, tmp_path)
    meta = json.loads((d / "model.json").read_text())
    meta["format"] = "somebody-elses-model"
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="not an xcrfilter CAM model"):
        load_model(d)
    (d / "model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(d)


def test_recalibrate_batchnorm_sets_exact_statistics():
    import keras
    from xcrfilter.ml.densenet import build_densenet
    from xcrfilter.ml.stage1 import recalibrate_batchnorm
    m = build_densenet(seed=0, **TINY)
    bn = m.get_layer("init_bn")
    bn.moving_mean.assign(np.full(bn.moving_mean.shape, 100.0, np.float32))
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 1)).astype(np.float32)
    recalibrate_batchnorm(m, x, batch_size=8)
    a = np.asarray(keras.Model(m.inputs, m.get_layer("init_conv").output)(x, training=False))
    np.testing.assert_allclose(np.asarray(bn.moving_mean), a.mean(axis=(0, 1, 2)), atol=1e-4)
    np.testing.assert_allclose(np.asarray(bn.moving_variance), a.var(axis=(0, 1, 2)), rtol=1e-3,
                               atol=1e-5)
    # momentum and dropout rates are restored
    assert bn.momentum == pytest.approx(0.9)
    assert m.get_layer("block1_l1_drop").rate == pytest.approx(0.2)


def test_pipeline_chunks_append_cam_maps(tiny_model, tmp_path):
    from astropy.io import fits
    from xcrfilter.pipeline import run_pipeline
    model_dir, _ = tiny_model
    frames, _ = _synthetic_frames(3, 5)
    out = tmp_path / "maps.fits"
    ev = run_pipeline(frames * u.eV, methods="cam,vfaint", chunk_frames=2,
                      options={"cam": {"model": str(model_dir), "cam_output": str(out)}})
    assert "PROB_CR" in ev.colnames and set(np.unique(ev["FRAME"])) <= {0, 1, 2}
    with fits.open(out) as h:
        assert h["CAM_CR"].data.shape == (3, 128, 128)
        assert h["CAM_XRAY"].header["CAMMODEL"] == load_model(model_dir).name


def test_load_tiles_reads_the_simulator_tile_format(tmp_path):
    from xcrfilter.ml.stage1 import load_tiles
    from xcrfilter.simulate import build_tile_dataset
    path = tmp_path / "tiles.npz"
    build_tile_dataset(3, str(path), seed=11)
    tiles, labels, scaler = load_tiles(str(path))
    assert tiles.shape == (12, 64, 64) and tiles.dtype == np.float32
    assert np.bincount(labels).tolist() == [3, 3, 3, 3]
    with np.load(path) as d:
        assert scaler.mean == pytest.approx(float(d["scaling_mean"]))
        # a CR tile has CR-labelled pixels, an EMPTY tile none
        assert np.all(d["labels"][labels == 0] == 0)
        assert np.all((d["labels"][labels == 2] == 2).any(axis=(1, 2)))
