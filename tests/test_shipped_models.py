"""The shipped models: context CAM (default), paper CAM, morph and shape, by name and in use."""
import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

from xcrfilter.context import MODEL_FEATURES, SHAPE_FEATURES, context_features, feature_matrix
from xcrfilter.ml.model import load_model
from xcrfilter.filters.obsctx import load_shape_model
from xcrfilter.ml.morph import load_morph_model
from xcrfilter.simulate import SimulationParameters, event_truth, simulate_frames


def test_shipped_models_load_by_name():
    ctx = load_model()
    assert ctx.name == "xcrfilter-cam-context-v3" and ctx.feature_set == "context"
    assert len(ctx.feature_names) == 10 and ctx.context_names[0] == "N5X5"
    assert ctx.forest.n_features_in_ == 10 + len(MODEL_FEATURES) - 1
    assert load_model("context").path == ctx.path
    paper = load_model("paper")
    assert paper.name == "xcrfilter-cam-sim-v1" and paper.context_names == ()
    assert paper.threshold == pytest.approx(0.704)
    morph = load_morph_model()
    assert morph.feature_names == MODEL_FEATURES
    assert 0.5 < morph.threshold < 1 and 0.5 < ctx.threshold < 1


@pytest.fixture(scope="module")
def sim():
    # many in-band secondaries: a few frames hold enough CR events
    params = SimulationParameters(cr_rate=3.0, xray_rate=3.0, photon_mean=0.6)
    return simulate_frames(24, seed=11, params=params)


def test_shipped_models_separate_the_classes(sim):
    import xcrfilter
    frames = sim.frames * u.eV
    for func, col, kw in ((xcrfilter.cam_filter, "PROB_CR", {}),
                          (xcrfilter.cam_filter, "PROB_CR", {"model": "paper"}),
                          (xcrfilter.morph_filter, "PROB_MORPH", {})):
        ev = func(frames, **kw)
        truth = event_truth(ev, sim.labels)
        p = np.asarray(ev[col])
        cr, xr = np.isfinite(p) & (truth == 2), np.isfinite(p) & (truth == 1)
        assert cr.sum() > 20 and xr.sum() > 20
        assert p[cr].mean() > p[xr].mean() + 0.3, (col, kw)


def test_shipped_shape_model(sim):
    """The shape-only model of obsctx's shape option: own-shape features only, and it
    finds the simulated showers' shapes more shower-like than the X-rays'."""
    shape = load_shape_model()
    assert shape.name == "xcrfilter-shape-v1" and shape.feature_names == SHAPE_FEATURES
    import xcrfilter
    ev = xcrfilter.find_events(sim.frames * u.eV)
    e = ev["ENERGY"].to_value(u.keV)
    band = (e >= 0.3) & (e < 10)
    ctx = context_features(sim.frames * u.eV, ev)
    p = shape.predict_proba(feature_matrix(ev, ctx, shape.feature_names))
    truth = event_truth(ev, sim.labels)
    cr, xr = band & (truth == 2), band & (truth == 1)
    assert cr.sum() > 20 and xr.sum() > 20
    assert p[cr].mean() > p[xr].mean() + 0.2


def test_filter_command_with_every_context_filter(sim, tmp_path):
    from xcrfilter.cli.main import main
    path = tmp_path / "obs.fits"
    fits.PrimaryHDU(sim.frames[:8], header=fits.Header([("BUNIT", "eV")])).writeto(path)
    out = tmp_path / "ev.fits"
    assert main(["filter", str(path), "-m", "vfaint,sac,cam,morph", "-o", str(out), "-q"]) == 0
    with fits.open(out) as hdul:
        h = hdul["EVENTS"].header
        cols = hdul["EVENTS"].columns.names
        prob = np.array(hdul["EVENTS"].data["PROB_CR"])
    assert {"PROB_CR", "PROB_MORPH", "SAC_DIST"} <= set(cols)
    assert h["CAMMODEL"] == "xcrfilter-cam-context-v3" and h["MRPMODEL"] == "xcrfilter-morph-v1"
    assert h["SACRAD"] == 22.0
    out2 = tmp_path / "ev_paper.fits"
    assert main(["filter", str(path), "-m", "cam", "--cam-model", "paper", "-o", str(out2),
                 "-q"]) == 0
    with fits.open(out2) as hdul:
        assert hdul["EVENTS"].header["CAMMODEL"] == "xcrfilter-cam-sim-v1"
        prob2 = np.array(hdul["EVENTS"].data["PROB_CR"])
    ok = np.isfinite(prob)
    assert ok.sum() > 10 and not np.allclose(prob[ok], prob2[ok])
