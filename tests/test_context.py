"""Context features on hand-built frames with known values."""
import astropy.units as u
import numpy as np
import pytest

from xcrfilter import find_events
from xcrfilter.context import (CONTEXT_FEATURES, MODEL_FEATURES, NO_TRACK_DISTANCE,
                               context_features, feature_matrix)


def _frames():
    f = np.zeros((2, 200, 200), np.float32)
    f[0, 50, 20:60] = 1000.0          # horizontal track: 40 px, 40 keV
    f[0, 50, 70] = 2000.0             # secondary on the track axis, 11 px beyond its end
    f[0, 80, 39] = 3000.0             # secondary 30 px across the axis
    f[1, 100, 100] = 1500.0           # isolated X-ray, frame without a track
    f[1, 150, 150] = 1500.0           # a double: 1500 + 500 eV
    f[1, 150, 151] = 500.0
    return f


def _row(events, ctx, frame, x, y):
    m = (np.asarray(events["FRAME"]) == frame) & (np.asarray(events["RAWX"]) == x) & \
        (np.asarray(events["RAWY"]) == y)
    assert m.sum() == 1
    return {k: float(u.Quantity(ctx[k][m][0]).value) for k in ctx.colnames}


@pytest.fixture(scope="module")
def features():
    frames = _frames()
    events = find_events(frames * u.eV)
    return events, context_features(frames, events)


def test_secondary_on_track_axis(features):
    ev, ctx = features
    r = _row(ev, ctx, 0, 70, 50)
    assert r["TRK_DIST"] == pytest.approx(11.0)
    assert r["TRK_E"] == pytest.approx(40000.0)
    assert r["TRK_LEN"] == pytest.approx(40.0)
    assert r["TRK_ANG"] == pytest.approx(0.0, abs=1e-6)
    assert r["TRK_ALONG"] == pytest.approx(30.5)     # centroid at x = 39.5
    assert r["TRK_ACROSS"] == pytest.approx(0.0, abs=1e-5)
    assert r["TRK_END"] == pytest.approx(11.0)
    assert r["IN_TRACK"] == 0
    # siblings: the track (centroid 30.5 px away, 40 keV) and the other
    # secondary (hypot(31, 30) = 43.1 px, 3 keV)
    assert (r["N_ISL_16"], r["N_ISL_32"], r["N_ISL_64"], r["N_ISL_128"]) == (0, 1, 2, 2)
    assert r["E_ISL_32"] == pytest.approx(40000.0)
    assert r["E_ISL_64"] == pytest.approx(43000.0)
    assert (r["N_ISL_FRAME"], r["E_ISL_FRAME"]) == (2, pytest.approx(43000.0))
    assert (r["N_TRK_FRAME"], r["E_TRK_FRAME"]) == (1, pytest.approx(40000.0))


def test_secondary_across_track_axis(features):
    ev, ctx = features
    r = _row(ev, ctx, 0, 39, 80)
    assert r["TRK_DIST"] == pytest.approx(30.0)
    assert r["TRK_ALONG"] == pytest.approx(0.5)
    assert r["TRK_ACROSS"] == pytest.approx(30.0)
    # nearer end point at along = -19.5: 19 px along, 30 px across
    assert r["TRK_END"] == pytest.approx(np.hypot(19.0, 30.0))
    assert (r["N_ISL_16"], r["N_ISL_32"], r["N_ISL_64"]) == (0, 1, 2)


def test_isolated_xray_and_own_shape(features):
    ev, ctx = features
    r = _row(ev, ctx, 1, 100, 100)
    assert r["TRK_DIST"] == NO_TRACK_DISTANCE
    assert r["TRK_END"] == NO_TRACK_DISTANCE
    assert (r["TRK_E"], r["TRK_LEN"], r["N_TRK_FRAME"]) == (0, 0, 0)
    # the double 70.7 px away is the only sibling in the frame
    assert (r["N_ISL_64"], r["N_ISL_128"], r["N_ISL_FRAME"]) == (0, 1, 1)
    assert r["E_ISL_128"] == pytest.approx(2000.0)
    assert (r["N5X5"], r["E5X5"], r["PMAX_FRAC"]) == (1, 1500.0, 1.0)
    assert (r["ISL_NPIX"], r["ISL_E"]) == (1, 1500.0)
    d = _row(ev, ctx, 1, 150, 150)
    assert (d["N5X5"], d["E5X5"], d["PMAX_FRAC"]) == (2, 2000.0, 0.75)
    assert (d["ISL_NPIX"], d["ISL_E"]) == (2, 2000.0)


def test_event_inside_a_track_is_at_distance_zero(features):
    ev, ctx = features
    in_track = np.asarray(ctx["IN_TRACK"]) == 1
    assert in_track.any()
    assert np.all(u.Quantity(ctx["TRK_DIST"]).value[in_track] == 0)
    assert np.all(u.Quantity(ctx["ISL_NPIX"]).value[in_track] == 40)


def test_diagonal_track_geometry():
    frames = np.zeros((1, 64, 64), np.float32)
    i = np.arange(10, 30)
    frames[0, i, i] = 900.0            # 20 px diagonal: 45 degrees
    frames[0, 40, 50] = 1200.0
    ev = find_events(frames * u.eV)
    ctx = context_features(frames, ev)
    r = _row(ev, ctx, 0, 50, 40)
    assert r["TRK_ANG"] == pytest.approx(45.0)
    assert r["TRK_LEN"] == pytest.approx(19 * np.sqrt(2) + 1)
    assert r["TRK_DIST"] == pytest.approx(np.hypot(50 - 29, 40 - 29))


def test_track_axis_is_the_principal_axis():
    # a track at an odd angle: orientation and length against the principal
    # axis of the covariance of its pixel coordinates (numpy eigh, the oracle)
    frames = np.zeros((1, 64, 64), np.float32)
    k = np.arange(25)
    ty, tx = 12 + (2 * k) // 5, 8 + k      # slope 0.4: about 21.8 degrees
    frames[0, ty, tx] = 900.0
    frames[0, 50, 10] = 1200.0
    ev = find_events(frames * u.eV)
    r = _row(ev, context_features(frames, ev), 0, 10, 50)
    vals, vecs = np.linalg.eigh(np.cov(np.vstack([tx, ty]).astype(float)))
    vx, vy = vecs[:, np.argmax(vals)]
    angle = np.degrees(np.arctan2(vy, vx))
    angle = (angle + 90) % 180 - 90          # an axis: fold into (-90, 90]
    proj = tx * np.cos(np.radians(angle)) + ty * np.sin(np.radians(angle))
    assert r["TRK_ANG"] == pytest.approx(angle)
    assert r["TRK_LEN"] == pytest.approx(np.ptp(proj) + 1)


def test_columns_units_and_matrix(features):
    ev, ctx = features
    assert set(CONTEXT_FEATURES) == set(ctx.colnames)
    assert ctx["TRK_DIST"].unit == u.pix and ctx["E_ISL_64"].unit == u.eV
    X = feature_matrix(ev, ctx)
    assert X.shape == (len(ev), len(MODEL_FEATURES))
    assert np.all(np.isfinite(X))
    assert "TRK_ANG" not in MODEL_FEATURES


def test_bad_input():
    frames = _frames()
    ev = find_events(frames * u.eV)
    with pytest.raises(KeyError, match="PHAS"):
        context_features(frames, ev[["FRAME", "RAWX", "RAWY", "ENERGY", "GRADE"]])
    with pytest.raises(ValueError, match="outside"):
        context_features(frames[:1], ev)
    with pytest.raises(ValueError, match="2-D or 3-D"):
        context_features(np.zeros(5), ev)
    with pytest.raises(TypeError, match="split_threshold"):
        context_features(frames, ev, split_threshold=80)
    with pytest.raises(ValueError, match="radius"):
        context_features(frames, ev, radii=(0,))


def test_islands_match_ndimage_label():
    from scipy import ndimage

    from xcrfilter.context import label_islands
    rng = np.random.default_rng(5)
    data = (rng.random((3, 40, 50)) < 0.2).astype(np.float32) * 100.0
    idx, lab, n = label_islands(data, 80.0)
    # 8-connectivity inside a frame, no connection between frames
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True
    ref, n_ref = ndimage.label(data >= 80, structure=structure)
    assert n == n_ref and np.array_equal(idx, np.flatnonzero(ref))
    # the same partition: labels map one to one
    pairs = set(zip(lab.tolist(), ref.ravel()[idx].tolist()))
    assert len(pairs) == n
