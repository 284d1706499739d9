"""Threshold calibration by X-ray injection (frame shift: test_frame_shift.py)."""
import astropy.units as u
import numpy as np
import pytest

from xcrfilter.meta import card_value
from xcrfilter.calibrate import parse_fraction, write_calibration_cards
from xcrfilter.calibrate.injection import inject_xrays
from xcrfilter.filters import morph
from xcrfilter.pipeline import run_pipeline
from xcrfilter.simulate import SimulationParameters, simulate_frames


def test_parse_fraction():
    assert parse_fraction("2%") == pytest.approx(0.02)
    assert parse_fraction("0.015") == pytest.approx(0.015)
    for bad in ("150%", "0", "abc", "-1%"):
        with pytest.raises(ValueError):
            parse_fraction(bad)


def test_injected_islands_keep_clear_of_active_pixels():
    rng = np.random.default_rng(0)
    frames = rng.normal(0, 25, (60, 64, 64)).astype(np.float32)
    frames[:, 30:34, :] = 5000.0                      # a band of active pixels in every frame
    out, charge = inject_xrays(frames, energies_ev=np.full(50, 5000.0), seed=3)
    added = out - frames
    assert np.all(added[~charge] < 1.0)
    per_frame = added.sum(axis=(1, 2))
    placed = per_frame > 0
    assert 20 < placed.sum() <= 60
    # all the photon's charge lands in the frame: 5000 eV within the Fano spread
    np.testing.assert_allclose(per_frame[placed], 5000.0, atol=5 * np.sqrt(0.118 * 5000 * 3.65))
    # never next to the active band (rows 30-33): one pixel of margin
    assert not charge[:, 29:35, :].any()
    np.testing.assert_array_equal(frames[:, 30:34], 5000.0)   # input untouched


def test_pipeline_calibrates_sac_radius():
    sim = simulate_frames(160, seed=4, params=SimulationParameters(cr_rate=2.0))
    ev = run_pipeline(sim.frames * u.eV, methods="sac", max_lost_xray=0.05, chunk_frames=160,
                      calibration="injection")
    n = card_value(ev.meta, "SACCALN")
    f = card_value(ev.meta, "SACCALF")
    assert n >= 400
    assert f <= 0.05 and f > 0.05 - 2.0 / n
    assert card_value(ev.meta, "SACCALLO") < f < card_value(ev.meta, "SACCALHI")
    radius = card_value(ev.meta, "SACCALV")
    assert card_value(ev.meta, "SACRAD") == pytest.approx(radius)
    # the calibrated radius is what SAC then applies
    d = np.asarray(ev["SAC_DIST"])
    rej = (np.asarray(ev["STATUS"]) >> 4) & 1
    np.testing.assert_array_equal(rej.astype(bool), d <= radius)
    assert any(h.endswith(f"calibrate: sac radius [pixel] {radius:.4g} rejects "
                          f"{100 * f:.2f}% of {n} injected X-ray events (asked 5.00%)")
               for h in ev.meta["HISTORY"])
    meta = {}
    write_calibration_cards(meta, {"morph": morph.FILTER}, {"morph": dict(
        method="injection", value=0.8, achieved=0.02, lo=0.01, hi=0.03, n=500, target=0.02)})
    assert meta["HISTORY"][-1].endswith("calibrate: morph PROB_MORPH threshold 0.8 rejects "
                                        "2.00% of 500 injected X-ray events (asked 2.00%)")
    with pytest.raises(ValueError, match="injected"):
        run_pipeline(sim.frames[:3] * u.eV, methods="sac", max_lost_xray=0.05,
                     calibration="injection")
