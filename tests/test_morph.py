"""The shape-and-context (morph) model and filter: training smoke test, contract, bad models."""
import json

import astropy.units as u
import numpy as np
import pytest

from xcrfilter.meta import card_value
from xcrfilter.filters.morph import MORPH_BIT, morph_filter
from xcrfilter.ml.checksums import ModelFileError
from xcrfilter.ml.morph import (event_dataset, load_morph_model, save_morph_model,
                                threshold_for_fpr, train_forest)
from xcrfilter.context import MODEL_FEATURES, feature_matrix
from xcrfilter.simulate import SimulationParameters, simulate_frames

# many in-band secondaries so that a few frames hold enough CR events
_PARAMS = SimulationParameters(cr_rate=3.0, xray_rate=5.0, photon_mean=0.6)


@pytest.fixture(scope="module")
def sim():
    return simulate_frames(48, seed=7, shape=(256, 256), params=_PARAMS)


@pytest.fixture(scope="module")
def model_dir(sim, tmp_path_factory):
    table = event_dataset([(sim.frames, sim.labels)])
    keep = np.asarray(table["TRUTH"]) > 0
    table = table[keep]
    y = (np.asarray(table["TRUTH"]) == 2).astype(int)
    assert 20 < y.sum() < len(y) - 20
    X = feature_matrix(table, table, MODEL_FEATURES)
    forest = train_forest(X, y, n_estimators=25)
    path = tmp_path_factory.mktemp("morph")
    meta = dict(name="tiny", feature_names=list(MODEL_FEATURES), threshold=0.5,
                energy_band_ev=[300.0, 10000.0])
    save_morph_model(path, forest, meta, card_text="# tiny\n")
    return path


def test_dataset_columns(sim):
    t = event_dataset([(sim.frames[:8], sim.labels[:8]), (sim.frames[8:16], sim.labels[8:16])])
    assert int(t["FRAME"].max()) >= 8   # frames run on over chunks
    e = t["ENERGY"].to_value(u.eV)
    assert e.min() >= 300 and e.max() < 10000
    assert {"TRUTH", "VFSTAT", "TRK_DIST", "N_ISL_64", "WEIGHT"} <= set(t.colnames)
    assert set(np.unique(t["TRUTH"])) <= {0, 1, 2} and (np.asarray(t["TRUTH"]) == 2).any()


def test_dataset_file_round_trip_keeps_truth(sim, tmp_path):
    from astropy.table import QTable
    t = event_dataset([(sim.frames[:8], sim.labels[:8])], xray_fraction=0.5, seed=1)
    t.write(tmp_path / "d.fits")
    back = QTable.read(tmp_path / "d.fits")
    np.testing.assert_array_equal(np.asarray(back["TRUTH"]), np.asarray(t["TRUTH"]))
    w = np.asarray(back["WEIGHT"])
    np.testing.assert_array_equal(w, np.where(np.asarray(t["TRUTH"]) == 2, 1.0, 2.0))


def test_filter_contract(sim, model_dir):
    frames = sim.frames[:16] * u.eV
    from xcrfilter import find_events
    events = find_events(frames)
    before = events.copy()
    out = morph_filter(frames, events, model=model_dir)
    assert out is not events
    assert events.colnames == before.colnames and np.all(events["STATUS"] == before["STATUS"])
    e = out["ENERGY"].to_value(u.eV)
    inb = (e >= 300) & (e < 10000)
    prob = np.asarray(out["PROB_MORPH"])
    assert np.all(np.isfinite(prob[inb])) and np.all(np.isnan(prob[~inb]))
    rej = (np.asarray(out["STATUS"]) >> MORPH_BIT) & 1
    np.testing.assert_array_equal(rej.astype(bool), inb & (prob >= 0.5))
    assert card_value(out.meta, "MRPNREJ") == rej.sum()
    assert card_value(out.meta, "MRPTHR") == 0.5
    # a re-run replaces the bit: threshold 1.01 is refused, 1.0 keeps only certain events
    again = morph_filter(frames, out, model=model_dir, threshold=1.0)
    rej2 = ((np.asarray(again["STATUS"]) >> MORPH_BIT) & 1).astype(bool)
    np.testing.assert_array_equal(rej2, inb & (prob >= 1.0))
    assert rej2.sum() < rej.sum()
    with pytest.raises(ValueError, match="threshold"):
        morph_filter(frames, out, model=model_dir, threshold=1.01)
    # the forest separates the classes of its own frames
    from xcrfilter.simulate import event_truth
    truth = event_truth(out, sim.labels[:16])
    cr, xr = inb & (truth == 2), inb & (truth == 1)
    assert prob[cr].mean() > prob[xr].mean() + 0.3


def test_pipeline_runs_morph(sim, model_dir):
    from xcrfilter.pipeline import run_pipeline
    ev = run_pipeline(sim.frames[:8] * u.eV, methods="vfaint,morph",
                      options={"morph": {"model": str(model_dir)}}, chunk_frames=4)
    assert "PROB_MORPH" in ev.colnames
    direct = morph_filter(sim.frames[:8] * u.eV, model=model_dir)
    np.testing.assert_allclose(np.asarray(ev["PROB_MORPH"]), np.asarray(direct["PROB_MORPH"]))


def test_hostile_model_dirs(model_dir, tmp_path):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    meta = json.loads((bad / "model.json").read_text())
    with pytest.raises(ModelFileError, match="does not exist"):
        load_morph_model(tmp_path / "missing")
    # a threshold outside [0, 1]
    (bad / "model.json").write_text(json.dumps(dict(meta, threshold=5.0)))
    with pytest.raises(ModelFileError, match="threshold"):
        load_morph_model(bad)
    # a checksum list naming a device
    (bad / "model.json").write_text(json.dumps(meta))
    (bad / "SHA256SUMS").write_text("0" * 64 + "  /dev/zero\n")
    with pytest.raises(ModelFileError, match="not a model file"):
        load_morph_model(bad)
    # a forest that takes another number of features
    save_morph_model(bad, load_morph_model(model_dir).forest,
                     dict(meta, feature_names=meta["feature_names"][:3]))
    with pytest.raises(ModelFileError, match="features"):
        load_morph_model(bad)
    # another package's model directory
    (bad / "model.json").write_text(json.dumps(dict(meta, format="other")))
    with pytest.raises(ModelFileError, match="not an xcrfilter morph model"):
        load_morph_model(bad)


def test_threshold_for_fpr():
    prob = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1, 0.95])
    is_cr = np.array([False, False, False, False, False, False, True])
    t = threshold_for_fpr(prob, is_cr, 1 / 6)   # one X-ray of six may be lost
    assert 0.8 < t <= 0.9 + 1e-6
    assert np.sum(prob[~is_cr] >= t) == 1
    assert threshold_for_fpr(prob, is_cr, 0.0) > 0.9
