"""Frame-shift calibration (xcrfilter.calibrate.frameshift, run_pipeline(max_lost_xray)).

Hand-built frames with no noise: one particle track per frame (a straight
row of 12 pixels of 20 keV, far above the MIP threshold, so its own events
are out of band) and single-pixel X-ray events of 1.5 keV at known places.
"""

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable

from xcrfilter import contract
from xcrfilter.calibrate import SHIFTS
from xcrfilter.calibrate.frameshift import shifted_scores
from xcrfilter.meta import card_value
from xcrfilter.pipeline import run_pipeline

SIZE = 64


def hand_built_frames(n, n_xray, *, seed, near=0.0, tracks_from=0):
    """Frames (n, 64, 64) [eV] and the (frame, y, x) of their X-rays.

    ``near``: fraction of the X-rays put within 3-6 pixels of the track of
    their frame (the rest uniform); frames before ``tracks_from`` have no track.
    """
    rng = np.random.default_rng(seed)
    data = np.zeros((n, SIZE, SIZE), np.float32)
    xrays = []
    for f in range(n):
        ty, tx = rng.integers(4, SIZE - 4), rng.integers(2, SIZE - 14)
        if f >= tracks_from:
            data[f, ty, tx:tx + 12] = 20000.0
        placed = 0
        while placed < n_xray:
            if f >= tracks_from and rng.random() < near:
                y = ty + rng.choice([-1, 1]) * rng.integers(3, 7)
                x = rng.integers(tx, tx + 12)
            else:
                y, x = rng.integers(2, SIZE - 2, 2)
            if not (2 <= y < SIZE - 2 and 2 <= x < SIZE - 2):
                continue
            if data[f, y - 1:y + 2, x - 1:x + 2].any():
                continue  # a separate event: nothing else in its 3 x 3
            data[f, y, x] = 1500.0
            xrays.append((f, y, x))
            placed += 1
    return data, np.array(xrays)


def _true_loss(events, xrays):
    key = {tuple(r) for r in xrays.tolist()}
    where = zip(events["FRAME"], events["RAWY"], events["RAWX"])
    rows = np.array([(f, y, x) in key for f, y, x in where])
    assert rows.sum() == len(xrays)  # every X-ray is one event
    sac = (np.asarray(events["STATUS"]) >> 4) & 1
    return sac[rows].mean(), rows


def test_uniform_xrays_estimate_matches_true_loss():
    """X-rays independent of the tracks: the shift estimate is the true loss."""
    data, xrays = hand_built_frames(600, 3, seed=1)
    ev = run_pipeline(data * u.eV, ["sac"], max_lost_xray=0.05)
    true, _ = _true_loss(ev, xrays)
    est = card_value(ev.meta, "SACCALF")
    lo, hi = card_value(ev.meta, "SACCALLO"), card_value(ev.meta, "SACCALHI")
    sigma = (hi - lo) / 2
    assert lo <= 0.05 <= hi and abs(est - 0.05) < 0.005
    # the realised loss of these X-rays: a second draw of the same statistics
    assert abs(true - est) < 3 * np.sqrt(2) * sigma, (true, est, sigma)
    # only X-rays are in band: nothing is rejected beyond chance
    assert abs(card_value(ev.meta, "SACCALX")) < 3 * np.sqrt(2) * sigma
    assert card_value(ev.meta, "SACCALM") == "SHIFT"
    assert card_value(ev.meta, "SACCALS") == "3,7,17,41"
    assert card_value(ev.meta, "SACCALN") == 1800
    radius = card_value(ev.meta, "SACRAD")
    assert radius == card_value(ev.meta, "SACCALV")
    # the radius applied to every event, and the count card follows
    assert np.array_equal((np.asarray(ev["STATUS"]) >> 4) & 1,
                          np.asarray(ev["SAC_DIST"]) <= np.float32(radius))
    assert card_value(ev.meta, "SACNEVT") == int(((np.asarray(ev["STATUS"]) >> 4) & 1).sum())
    assert any("by frame shift" in h for h in ev.meta["HISTORY"])


def test_xrays_near_tracks_show_as_excess():
    """X-rays put near tracks on purpose: the own-frame rate exceeds the shifted one."""
    data, xrays = hand_built_frames(600, 3, seed=2, near=0.3)
    ev = run_pipeline(data * u.eV, ["sac"], max_lost_xray=0.05)
    true, _ = _true_loss(ev, xrays)
    est = card_value(ev.meta, "SACCALF")
    excess = card_value(ev.meta, "SACCALX")
    sigma = (card_value(ev.meta, "SACCALHI") - card_value(ev.meta, "SACCALLO")) / 2
    # the shifted sample is the chance rate: the true loss of these X-rays is
    # far higher, and the header says by how much
    assert true > est + 10 * sigma
    assert excess > 10 * sigma
    assert abs((est + excess) - true) < 0.01  # all in-band events are these X-rays
    assert any("points above the shifted rate" in h for h in ev.meta["HISTORY"])


def test_first_chunk_without_tracks():
    """The first chunk holds no track: the whole observation calibrates the radius."""
    data, xrays = hand_built_frames(600, 3, seed=3, tracks_from=200)
    ev = run_pipeline(data * u.eV, ["sac"], max_lost_xray=0.05, chunk_frames=200)
    radius = card_value(ev.meta, "SACCALV")
    assert 0 < radius < 0.5 * np.hypot(SIZE, SIZE)
    true, _ = _true_loss(ev, xrays)
    sigma = (card_value(ev.meta, "SACCALHI") - card_value(ev.meta, "SACCALLO")) / 2
    assert abs(true - 0.05) < 3 * np.sqrt(2) * sigma + 0.005
    # injection on the first chunk sees no track, and takes the frame diagonal
    inj = run_pipeline(data * u.eV, ["sac"], max_lost_xray=0.05, chunk_frames=200,
                       calibration="injection")
    assert card_value(inj.meta, "SACCALM") == "INJECTION"
    assert card_value(inj.meta, "SACCALV") > 0.9 * np.hypot(SIZE, SIZE)


def test_too_few_events_is_an_error():
    data, _ = hand_built_frames(60, 1, seed=4)
    with pytest.raises(ValueError, match=r"frame-shift sample of sac .* needs at least 500"):
        run_pipeline(data * u.eV, ["sac"], max_lost_xray=0.02)
    with pytest.raises(ValueError, match="'shift' or 'injection'"):
        run_pipeline(data * u.eV, ["sac"], max_lost_xray=0.02, calibration="shifted")


def test_on_chunk_gets_final_verdicts():
    data, _ = hand_built_frames(400, 3, seed=5)
    seen = []
    ev = run_pipeline(data * u.eV, ["sac"], max_lost_xray=0.05, chunk_frames=100,
                      on_chunk=lambda first, n, events: seen.append((first, n, events)))
    assert [(a, b) for a, b, _ in seen] == [(0, 100), (100, 100), (200, 100), (300, 100)]
    np.testing.assert_array_equal(np.concatenate([np.asarray(e["STATUS"]) for *_, e in seen]),
                                  np.asarray(ev["STATUS"]))


def _recording_filter(uses_shape):
    """A filter whose step records what it is given; score = the event's energy."""
    calls = []

    def step(cube, events, threshold=None):
        calls.append((np.array(cube.data), QTable(events)))
        out = QTable(events, copy=True)
        out["SCORE"] = np.asarray(out["ENERGY"].to_value(u.eV), float)
        return out

    cal = contract.Calibration("SCORE", "threshold", +1, card="RECTHR", count_card=None,
                               prefix="REC", uses_shape=uses_shape)
    return contract.Filter(name="rec", step=step, status={"REC": (9, "test")},
                           params=(contract.Param("threshold"),), calibration=cal), calls


def _events_of(data):
    from xcrfilter.events import find_events
    from xcrfilter.io.frames import as_energy_cube
    cube = as_energy_cube(data * u.eV)
    return cube, find_events(cube)


def test_shape_filter_events_pasted_into_other_frames():
    """Each placed event: its own 3 x 3 in a copy of a frame ``k`` in SHIFTS later."""
    n = 50
    data, xrays = hand_built_frames(n, 2, seed=6)
    for f, y, x in xrays:
        data[f, y, x + 1] = 300.0 + f     # a split pixel that tells the event's frame
    data[:, 0, 0] = 10.0 + np.arange(n)   # below the split threshold: tells the frame
    cube, events = _events_of(data)
    module, calls = _recording_filter(uses_shape=True)
    common = dict(split_threshold=80 * u.eV, mip_threshold=10 * u.keV,
                  event_threshold=260 * u.eV)
    scores, used = shifted_scores(module, cube, events, common, {},
                                  rng=np.random.default_rng(0), clean_radius=0.0)
    assert used > 0 and scores.size >= used
    n_checked = 0
    for copies, placed in calls:
        for i, row in enumerate(placed):
            y, x = int(row["RAWY"]), int(row["RAWX"])
            own = int(round(copies[i, y, x + 1] - 300))
            other = int(round(copies[i, 0, 0] - 10))
            assert (other - own) % n in SHIFTS
            np.testing.assert_array_equal(copies[i, y - 1:y + 2, x - 1:x + 2],
                                          data[own, y - 1:y + 2, x - 1:x + 2])
            rest, ref = copies[i].copy(), data[other].copy()
            rest[y - 1:y + 2, x - 1:x + 2] = ref[y - 1:y + 2, x - 1:x + 2] = 0
            np.testing.assert_array_equal(rest, ref)
            # nothing of the other frame on the event's own pixels (its 3 x 3)
            assert not (data[other, y - 1:y + 2, x - 1:x + 2] >= 80).any()
            n_checked += 1
    assert n_checked == scores.size
    # the score of each placement is the pasted event's own (here: its energy)
    assert np.all(scores >= 1500.0)


def test_context_filter_positions_against_other_frames():
    data, _ = hand_built_frames(50, 2, seed=7)
    cube, events = _events_of(data)
    module, calls = _recording_filter(uses_shape=False)
    common = dict(split_threshold=80 * u.eV, mip_threshold=10 * u.keV,
                  event_threshold=260 * u.eV)
    scores, used = shifted_scores(module, cube, events, common, {},
                                  rng=np.random.default_rng(0))
    (frames, placed), = calls  # one call: the chunk itself, events moved to other frames
    np.testing.assert_array_equal(frames, data)
    inband = events[(events["ENERGY"].to_value(u.eV) >= 300)
                    & (events["ENERGY"].to_value(u.eV) < 10000)]
    assert used == len(inband) and scores.size == len(placed) <= 4 * len(inband)
    active = data >= 80
    for row in placed:
        g, y, x = int(row["FRAME"]), int(row["RAWY"]), int(row["RAWX"])
        assert not active[g, y - 1:y + 2, x - 1:x + 2].any()
