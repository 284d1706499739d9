"""The CAM filter's cascade (xcrfilter.ml.cascade): morph decides, the network only in the band."""
import argparse
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

from xcrfilter.meta import card_value
from xcrfilter.events import find_events
from xcrfilter.filters import cam as camf
from xcrfilter.filters.morph import morph_filter
from xcrfilter.io.frames import as_energy_cube
from xcrfilter.ml.model import load_model

REFERENCE = Path(__file__).parent / "data" / "cam_reference.npz"


@pytest.fixture(scope="module")
def simulated():
    """Frames of the paper preset with CR-rich physics: a few hundred in-band events."""
    from xcrfilter.simulate import preset, simulate_frames
    params, det = preset("paper")
    params = params.replace(xray_rate=6.0, cr_rate=2.0)
    sim = simulate_frames(40, seed=4242, shape=(256, 256), params=params, detector=det)
    cube = as_energy_cube(np.asarray(sim.frames, np.float32) * u.eV)
    return cube, find_events(cube)


def _full_evaluation(cube, events, cam):
    """PROB_CR as the CAM filter computed it before the cascade (network on every event)."""
    from xcrfilter.context import context_features, feature_matrix
    e = events["ENERGY"].to_value(u.eV)
    inb = (e >= cam.band_ev[0]) & (e < cam.band_ev[1])
    prob = np.full(len(events), np.nan, np.float32)
    sub = events[inb]
    X, _ = cam.features(cube.data, np.asarray(sub["FRAME"]), np.asarray(sub["RAWY"]),
                        np.asarray(sub["RAWX"]), e[inb])
    ctx = context_features(cube.data, sub, **cam.context_kw)
    X = np.hstack([X, feature_matrix(sub, ctx, cam.context_names)])
    prob[inb] = cam.predict_proba(X).astype(np.float32)
    return prob


def test_shipped_model_has_a_cascade():
    cam = load_model()
    c = cam.cascade
    assert c is not None and 0 < c.lo <= cam.threshold <= c.hi
    assert cam.meta["cascade"]["morph_sha256"] == c.morph.sha256
    assert load_model("paper").cascade is None


def test_cascade_off_equals_full_evaluation(simulated):
    """cascade=False: PROB_CR and STATUS exactly those of the full evaluation."""
    cube, events = simulated
    cam = load_model()
    out = camf.cam_filter(cube, events, cascade=False)
    full = _full_evaluation(cube, events, cam)
    np.testing.assert_array_equal(np.asarray(out["PROB_CR"]), full)
    np.testing.assert_array_equal((np.asarray(out["STATUS"]) & 32) > 0,
                                  np.nan_to_num(full, nan=-1) >= cam.threshold)
    inb = np.isfinite(full)
    np.testing.assert_array_equal(np.asarray(out["CAM_NET"]), inb)
    assert card_value(out.meta, "CAMNNET") == card_value(out.meta, "CAMNSCO") == inb.sum()
    assert card_value(out.meta, "CAMCASC") is False and "CAMCLO" not in out.meta


def test_cascade_off_equals_reference():
    """cascade=False on the frames of data/cam_reference.npz: the verdicts before the cascade."""
    ref = dict(np.load(REFERENCE))
    cube = as_energy_cube(ref["frames"].astype(np.float32) * u.eV)
    out = camf.cam_filter(cube, find_events(cube), model="context", cascade=False)
    np.testing.assert_array_equal(np.asarray(out["STATUS"]), ref["context_status"])


def test_cascade_on_agrees_with_off(simulated):
    """Verdicts agree for >= 99 % of the events; the network skipped exactly the events
    outside the band, which carry PROB_MORPH; the header counts the network's events."""
    cube, events = simulated
    cam = load_model()
    casc = cam.cascade
    off = camf.cam_filter(cube, events, cascade=False)
    on = camf.cam_filter(cube, events)           # the default: cascade on
    assert card_value(on.meta, "CAMCASC") is True
    pm = np.asarray(morph_filter(cube, events)["PROB_MORPH"])
    inb = np.isfinite(pm)
    assert inb.sum() > 150 and (np.asarray(off["STATUS"]) & 32).any()
    net = np.asarray(on["CAM_NET"])
    in_band = inb & (pm >= casc.lo) & (pm < casc.hi)
    np.testing.assert_array_equal(net, in_band)
    assert 0 < net.sum() < inb.sum()
    assert card_value(on.meta, "CAMNNET") == net.sum()
    assert card_value(on.meta, "CAMNSCO") == inb.sum()
    assert card_value(on.meta, "CAMCLO") == casc.lo and card_value(on.meta, "CAMCHI") == casc.hi
    p_on, p_off = np.asarray(on["PROB_CR"]), np.asarray(off["PROB_CR"])
    # decided without the network: PROB_CR is the morph forest's probability
    np.testing.assert_array_equal(p_on[inb & ~net], pm[inb & ~net])
    # scored by the network: the full evaluation's value (windows batched differently:
    # float32 rounding may move a tree across a split)
    np.testing.assert_allclose(p_on[net], p_off[net], rtol=0,
                               atol=2.0 / cam.forest.n_estimators)
    assert np.isnan(p_on[~inb]).all() and not net[~inb].any()
    rej_on = (np.asarray(on["STATUS"]) & 32) > 0
    rej_off = (np.asarray(off["STATUS"]) & 32) > 0
    np.testing.assert_array_equal(rej_on, np.nan_to_num(p_on, nan=-1) >= cam.threshold)
    np.testing.assert_array_equal(rej_on[inb & ~net], pm[inb & ~net] >= casc.hi)
    assert np.mean(rej_on[inb] == rej_off[inb]) >= 0.99
    # the other STATUS bits are untouched
    np.testing.assert_array_equal(np.asarray(on["STATUS"]) & ~32, np.asarray(off["STATUS"]) & ~32)


def test_threshold_outside_the_band_widens_it(simulated):
    cube, events = simulated
    cam = load_model()
    for thr in (0.0, cam.cascade.lo / 2, 1.0):
        out = camf.cam_filter(cube, events, threshold=thr)
        lo, hi = cam.cascade.band(thr)
        assert lo <= thr <= hi
        assert card_value(out.meta, "CAMCLO") == lo and card_value(out.meta, "CAMCHI") == hi
        p = np.asarray(out["PROB_CR"])
        np.testing.assert_array_equal((np.asarray(out["STATUS"]) & 32) > 0,
                                      np.nan_to_num(p, nan=-1) >= thr)


def test_pipeline_sums_network_counts(simulated):
    from xcrfilter.pipeline import run_pipeline
    cube, _ = simulated
    ev = run_pipeline(cube.data[:12] * u.eV, methods="cam", chunk_frames=5)
    assert card_value(ev.meta, "CAMNNET") == int(np.asarray(ev["CAM_NET"]).sum())
    off = run_pipeline(cube.data[:12] * u.eV, methods="cam", chunk_frames=5,
                       options={"cam": {"cascade": False}})
    assert card_value(off.meta, "CAMNNET") == card_value(off.meta, "CAMNSCO")


def test_cli_option_and_bad_values():
    p = argparse.ArgumentParser()
    f = camf.FILTER
    f.add_cli_options(p.add_argument_group("cam"))
    assert f.options_from_args(p.parse_args(["--cam-cascade", "off"])) == {"cascade": False}
    assert f.options_from_args(p.parse_args(["--cam-cascade", "on"])) == {"cascade": True}
    assert "cascade" not in f.options_from_args(p.parse_args([]))
    with pytest.raises(SystemExit):
        p.parse_args(["--cam-cascade", "maybe"])
    frames = np.zeros((1, 64, 64), np.float32) * u.eV
    with pytest.raises(ValueError, match="no cascade band"):
        camf.cam_filter(frames, model="paper", cascade=True)
    with pytest.raises(ValueError, match="cascade"):
        camf.cam_filter(frames, cascade="maybe")
    with pytest.raises(TypeError, match="cascade"):
        camf.cam_filter(frames, cascade=1.5)
    # the paper model runs the full evaluation by default
    out = camf.cam_filter(frames, model="paper")
    assert card_value(out.meta, "CAMCASC") is False
