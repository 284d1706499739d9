"""Randomised simulator physics, presets and power-law spectra."""
from dataclasses import fields

import astropy.units as u
import numpy as np
import pytest

from xcrfilter.simulate import (PRESETS, FrameSimulator, PhysicsRanges, PowerLawSpectrum,
                                RandomPhysicsSimulator, SimulationParameters, preset,
                                simulate_frames)
from xcrfilter.simulate.showers import place_along_axis


def test_draws_stay_in_their_ranges():
    ranges = PhysicsRanges()
    rng = np.random.default_rng(1)
    for _ in range(50):
        params, noise, spec = ranges.draw(rng)
        for f in fields(ranges):
            lo, hi = getattr(ranges, f.name)
            if f.name == "readout_noise":
                v = noise.to_value(u.electron)
            elif f.name == "xray_index":
                v = spec.index
            elif f.name == "xray_emax":
                v = spec.e_max / 1e3
            else:
                v = getattr(params, f.name)
            assert lo <= v <= hi, f.name


def test_excluding_leaves_out_the_preset_values():
    for name, spec in PRESETS.items():
        ranges = PhysicsRanges().excluding(name)
        params, det = preset(name)
        for key, (lo, hi) in spec["exclude"].items():
            value = det.readout_noise.value if key == "readout_noise" else getattr(params, key)
            assert not lo <= value <= hi, (name, key)
            assert getattr(ranges, key) == (lo, hi)


def test_preset_values():
    params, det = preset("wide")
    assert params.sec_track_scale == 120.0 and params.sec_perp_sigma == 10.0
    assert det.readout_noise == 7 * u.electron
    assert preset("noisy")[1].readout_noise == 9 * u.electron
    assert preset("high-cr")[0].cr_rate == 2.0
    with pytest.raises(ValueError, match="unknown preset"):
        preset("nope")


def test_random_physics_is_reproducible_and_varies_by_block():
    phys = RandomPhysicsSimulator()
    a = phys.block_simulator(5, 0, (64, 64))
    b = phys.block_simulator(5, 0, (64, 64))
    c = phys.block_simulator(5, 1, (64, 64))
    assert a.params == b.params and a.noise_ev == b.noise_ev
    assert a.params != c.params
    s1 = simulate_frames(32, seed=3, shape=(64, 64), physics=phys)
    s2 = simulate_frames(32, seed=3, shape=(64, 64), physics=phys)
    np.testing.assert_array_equal(s1.frames, s2.frames)
    # the default simulation is not changed by the new (zero) parameters
    d1 = simulate_frames(16, seed=3, shape=(64, 64))
    d2 = simulate_frames(16, seed=3, shape=(64, 64), params=SimulationParameters())
    np.testing.assert_array_equal(d1.frames, d2.frames)


def _angles(params, n=20000):
    sim = FrameSimulator(params=params)
    rng = np.random.default_rng(0)
    x, y = place_along_axis(sim, rng, np.zeros(n), np.zeros(n), np.zeros(n), 30.0, n)
    return np.abs(np.arctan2(y, x))


def test_isotropic_secondaries():
    along = _angles(SimulationParameters())
    iso = _angles(SimulationParameters(sec_iso_fraction=1.0, sec_iso_scale=30.0))
    # along the axis (phi = 0) the angle is near 0 or pi; isotropic: uniform
    near_axis = lambda a: np.mean((a < 0.3) | (a > np.pi - 0.3))  # noqa: E731
    assert near_axis(along) > 0.7
    assert near_axis(iso) == pytest.approx(0.6 / np.pi, abs=0.02)


def test_orphan_spread_scales_distances():
    sim = FrameSimulator(params=SimulationParameters(orphan_spread=3.0))
    rng = np.random.default_rng(0)
    n = 20000
    orphan = np.arange(n) % 2 == 0
    x, y = place_along_axis(sim, rng, np.zeros(n), np.zeros(n), np.zeros(n), 30.0, n, orphan)
    r = np.hypot(x, y)
    assert np.median(r[orphan]) / np.median(r[~orphan]) == pytest.approx(3.0, rel=0.05)


def test_power_law_spectrum():
    rng = np.random.default_rng(2)
    flat = PowerLawSpectrum(0.0, 1 * u.keV, 3 * u.keV).sample(rng, 100000)
    assert flat.mean() == pytest.approx(2000.0, rel=0.01)
    steep = PowerLawSpectrum(2.0, 1 * u.keV, 10 * u.keV).sample(rng, 100000)
    # dN/dE ~ E^-2: median m solves 1/1 - 1/m = (1 - 1/10) / 2
    assert np.median(steep) == pytest.approx(1000.0 / 0.55, rel=0.02)
    log = PowerLawSpectrum(1.0, 1 * u.keV, 100 * u.keV).sample(rng, 100000)
    assert np.median(log) == pytest.approx(10000.0, rel=0.03)
    assert flat.min() >= 1000 and flat.max() <= 3000
    with pytest.raises(ValueError):
        PowerLawSpectrum(1.0, 5 * u.keV, 1 * u.keV)


def test_bad_ranges():
    with pytest.raises(ValueError, match="cr_rate"):
        PhysicsRanges(cr_rate=(3, 1))
    with pytest.raises(ValueError, match="log-uniform"):
        PhysicsRanges(sec_track_scale=(0, 10))
    with pytest.raises(KeyError):
        PhysicsRanges().excluding("nope")


def test_simulate_cli_randomize_and_preset(tmp_path):
    from astropy.io import fits

    from xcrfilter.cli.main import main
    out = tmp_path / "r.fits"
    assert main(["simulate", "--frames", "20", "--shape", "64", "64", "--randomize",
                 "--seed", "1", "-q", "-o", str(out)]) == 0
    h = fits.getheader(out)
    assert h["RANDPHYS"] is True and h["RNDPAR14"] == "cr_rate:0.5:3"
    out2 = tmp_path / "w.fits"
    assert main(["simulate", "--frames", "20", "--shape", "64", "64", "--preset", "wide",
                 "--seed", "1", "-q", "-o", str(out2)]) == 0
    assert fits.getheader(out2)["SECSCALE"] == 120.0
    assert main(["simulate", "--frames", "5", "--randomize", "--preset", "wide",
                 "-o", str(tmp_path / "x.fits")]) == 2
