"""Tests of the physics frame simulator (xcrfilter.simulate)."""
import argparse

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable

from xcrfilter.detector import DetectorModel
from xcrfilter.simulate import (LABEL_CR, LABEL_XRAY, TILE_CR, TILE_EMPTY, TILE_MIX,
                                TILE_XRAY, FrameSimulator, LineSpectrum,
                                LogUniformSpectrum, SimulationParameters,
                                absorption_probability, attenuation_length,
                                build_tile_dataset, cloud_sigma, event_truth,
                                iter_frames, load_tile_dataset, read_truth,
                                simulate_frames, simulate_tiles, tile_classes,
                                write_simulation)
from xcrfilter.simulate.physics import gaussian_noise
from xcrfilter.simulate.showers import track_deposits

SMALL = DetectorModel.wfi(shape=(64, 64))
XRAY_ONLY = SimulationParameters(cr_rate=0.0, xray_rate=20.0)
W = 3.65
FANO = 0.118


def _xrays(n_frames, energy, seed=1, **kw):
    params = XRAY_ONLY.replace(**kw) if kw else XRAY_ONLY
    c = simulate_frames(n_frames, seed=seed, detector=SMALL, params=params,
                        spectrum=LineSpectrum(energy))
    s = c.sources
    return c, s[s["KIND"] == "xray"]


# ---------------------------------------------------------------- physics
def test_attenuation_table_values():
    # NIST XCOM mu/rho (cm2/g) at 1, 5, 10 keV: 1570, 245.0, 33.89; rho 2.329
    for e_kev, mu in ((1.0, 1570.0), (5.0, 245.0), (10.0, 33.89)):
        expect = 1e4 / (mu * 2.329)
        assert attenuation_length(e_kev * 1e3) == pytest.approx(expect, rel=1e-6)
    # the Si K edge: absorption jumps by ~10 just above 1.839 keV
    below, above = attenuation_length([1838.0, 1840.0])
    assert below / above == pytest.approx(3192.0 / 309.2, rel=0.02)
    # log-log interpolation between grid points is monotonic away from edges
    e = np.geomspace(2000, 20000, 50)
    assert np.all(np.diff(attenuation_length(e)) > 0)


def test_cloud_sigma_law():
    # sigma = sqrt(2 kT/q s d / V): full drift through 450 um at 120 V, 213 K
    kt = 8.617333e-5 * 213.0
    expect = np.sqrt(2 * kt * 450 * 450 / 120.0)
    assert cloud_sigma(450.0, 450.0, 120.0, 213.0) == pytest.approx(expect)
    assert 5.0 < expect < 10.0
    assert cloud_sigma(0.0, 450.0, 120.0, 213.0) == 0.0
    # sigma grows as the square root of the drift distance
    assert cloud_sigma(112.5, 450.0, 120.0, 213.0) == pytest.approx(expect / 2)


def test_line_mean_energy_and_fano_width():
    energy = 5.9 * u.keV
    _, x = _xrays(100, energy)
    hit = x[x["HIT"]]
    edep = hit["EDEP"].to_value(u.eV)
    # keep photons well inside the 64x64 frame (no charge lost at the edge)
    inside = (hit["X"].value > 1) & (hit["X"].value < 62) & (hit["Y"].value > 1) & \
        (hit["Y"].value < 62)
    edep = edep[inside]
    n = edep.size
    assert n > 1500
    sigma_fano = np.sqrt(FANO * 5900.0 * W)  # 50.4 eV
    assert abs(edep.mean() - 5900.0) < 4 * sigma_fano / np.sqrt(n)
    # Fano width within 4 standard errors of the sample standard deviation
    assert abs(edep.std() - sigma_fano) < 4 * sigma_fano / np.sqrt(2 * n)


def test_line_in_noisy_frames_recovers_energy():
    # summing the 3x3 pixels around each photon gives the line energy
    c, x = _xrays(20, 5.9 * u.keV, xray_rate=5.0)
    hit = x[x["HIT"]]
    fr = c.frames
    sums = []
    for f, xx, yy in zip(hit["FRAME"], hit["X"].value, hit["Y"].value):
        ix, iy = int(round(xx)), int(round(yy))
        if 1 <= ix < 63 and 1 <= iy < 63:
            sums.append(fr[f, iy - 1:iy + 2, ix - 1:ix + 2].sum())
    sums = np.array(sums)
    noise9 = 3 * 7 * W  # sqrt(9) pixels of 25.55 eV
    sig = np.hypot(np.sqrt(FANO * 5900 * W), noise9)
    assert abs(np.median(sums) - 5900) < 4 * 1.25 * sig / np.sqrt(sums.size)


@pytest.mark.parametrize("energy_kev", [8.0, 12.0, 15.0])
def test_quantum_efficiency_follows_attenuation(energy_kev):
    _, x = _xrays(200, energy_kev * u.keV, seed=3)
    n = len(x)
    qe = np.count_nonzero(x["HIT"]) / n
    expect = float(absorption_probability(energy_kev * 1e3, 450.0))
    assert abs(qe - expect) < 4 * np.sqrt(expect * (1 - expect) / n) + 1e-3
    # absorbed photons: exponential depth with the attenuation length
    z = x["Z"][x["HIT"]].to_value(u.um)
    lam = float(attenuation_length(energy_kev * 1e3))
    # mean of an exponential truncated at the thickness d
    d = 450.0
    tmean = lam - d * np.exp(-d / lam) / (1 - np.exp(-d / lam))
    assert abs(z.mean() - tmean) < 4 * lam / np.sqrt(z.size)


def test_back_illuminated_soft_xrays_spread_more():
    # 0.5 keV photons stop at the entrance and drift 450 um; 8 keV ones drift
    # less on average, so their clouds are narrower: more singles at 8 keV
    # relative to a pure-geometry expectation is not needed -- compare sigma
    sim = FrameSimulator(SMALL)
    s_soft = cloud_sigma(450.0 - 0.4, 450.0, sim.params.bias_voltage,
                         sim.params.temperature)
    s_hard = cloud_sigma(450.0 - attenuation_length(8000.0), 450.0,
                         sim.params.bias_voltage, sim.params.temperature)
    assert s_soft > s_hard
    assert sim.sigma_max == pytest.approx(float(s_soft), rel=0.01)


def test_track_length_and_energy_loss_vs_angle():
    params = SimulationParameters(xray_rate=0.0, cr_rate=1.0, cr_miss_fraction=0.0,
                                  sec_track_mean=0.0, photon_mean=0.0, electron_mean=0.0,
                                  alpha_fraction=0.0, primary_min_energy=2000.0)
    det = DetectorModel.wfi(shape=(256, 256))
    c = simulate_frames(128, seed=11, detector=det, params=params, noise=False)
    s = c.sources
    prim = s[s["KIND"] == "primary"]
    theta = prim["THETA"].to(u.rad).value
    length = prim["LENGTH"].to_value(u.um)
    np.testing.assert_allclose(length, 450.0 / np.cos(theta), rtol=1e-4)
    # energy deposited per um: near minimum ionising, most probable 0.27-0.28
    # keV/um; the median of deposited / length lies between MPV and mean
    x, y = prim["X"].value, prim["Y"].value
    dx = 450.0 * np.tan(theta) * np.cos(prim["PHI"].to(u.rad).value) / 130.0
    dy = 450.0 * np.tan(theta) * np.sin(prim["PHI"].to(u.rad).value) / 130.0
    inside = (np.minimum(x, x + dx) > 3) & (np.maximum(x, x + dx) < 252) & \
        (np.minimum(y, y + dy) > 3) & (np.maximum(y, y + dy) < 252)
    rate = prim["EDEP"].to_value(u.keV)[inside] / length[inside]
    assert 0.27 < np.median(rate) < 0.36
    # the track's pixel extent follows the projected length d tan(theta)
    good = 0
    per_frame = np.bincount(np.asarray(prim["FRAME"]), minlength=c.frames.shape[0])
    alone = per_frame[np.asarray(prim["FRAME"])] == 1
    idx = np.nonzero(inside & alone)[0]
    assert idx.size > 20
    for k in idx:
        f = int(prim["FRAME"][k])
        ys, xs = np.nonzero((c.labels[f] == LABEL_CR) & (c.frames[f] > 80))
        ext_x = xs.max() - xs.min() + 1
        ext_y = ys.max() - ys.min() + 1
        good += (abs(ext_x - abs(dx[k])) <= 2.5) and (abs(ext_y - abs(dy[k])) <= 2.5)
    assert good >= 0.85 * idx.size


def test_noise_statistics():
    rng = np.random.default_rng(5)
    x = gaussian_noise(rng, (8, 256, 256), 25.55)
    assert abs(x.mean()) < 5 * 25.55 / np.sqrt(x.size)
    assert x.std() == pytest.approx(25.55, rel=3e-3)
    from scipy.stats import norm
    n_over = np.count_nonzero(x > 80.0)
    expect = norm.sf(80 / 25.55) * x.size
    assert abs(n_over - expect) < 5 * np.sqrt(expect)
    c = simulate_frames(4, seed=2, detector=SMALL,
                        params=SimulationParameters(xray_rate=0, cr_rate=0))
    assert c.frames.std() == pytest.approx(7 * W, rel=0.03)


# ---------------------------------------------------------------- truth
def test_reproducible_by_seed_and_chunk_size():
    a = simulate_frames(40, seed=123, detector=SMALL)
    b = simulate_frames(40, seed=123, detector=SMALL)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.labels, b.labels)
    parts = list(iter_frames(40, seed=123, detector=SMALL, chunk_size=7))
    assert [p.first_frame for p in parts] == list(range(0, 40, 7))
    np.testing.assert_array_equal(np.concatenate([p.frames for p in parts]), a.frames)
    frames_col = np.concatenate([np.asarray(p.sources["FRAME"]) for p in parts])
    np.testing.assert_array_equal(frames_col, np.asarray(a.sources["FRAME"]))
    d = simulate_frames(5, seed=123, detector=SMALL)   # a prefix of the same run
    np.testing.assert_array_equal(d.frames, a.frames[:5])
    assert len(d.sources) == np.count_nonzero(a.sources["FRAME"] < 5)
    c = simulate_frames(40, seed=124, detector=SMALL)
    assert not np.array_equal(a.frames, c.frames)


def test_no_pileup_between_xrays_and_cr():
    params = SimulationParameters(xray_rate=15.0, cr_rate=4.0)
    c = simulate_frames(30, seed=9, detector=SMALL, params=params, noise=False)
    s = c.sources
    x = s[(s["KIND"] == "xray") & s["HIT"]]
    assert len(x) > 300
    for f, xx, yy in zip(x["FRAME"], x["X"].value, x["Y"].value):
        ix, iy = int(np.floor(xx + 0.5)), int(np.floor(yy + 0.5))
        win = c.labels[f, max(iy - 1, 0):iy + 2, max(ix - 1, 0):ix + 2]
        assert not np.any(win == LABEL_CR)
    # every X-ray pixel carries the X-ray label, no CR deposit above 1 eV
    assert np.count_nonzero(c.labels == LABEL_XRAY) >= len(x)


def test_labels_and_event_truth():
    c = simulate_frames(16, seed=4, detector=SMALL,
                        params=SimulationParameters(xray_rate=3, cr_rate=1))
    ev = QTable({"FRAME": [0, 0], "RAWX": [0, 1], "RAWY": [0, 0]})
    truth = event_truth(ev, c.labels)
    np.testing.assert_array_equal(truth, c.labels[0, 0, :2])
    s = c.sources
    x = s[(s["KIND"] == "xray") & s["HIT"] & (s["ENERGY"] > 1 * u.keV)]
    ev = QTable({"FRAME": x["FRAME"], "RAWX": np.rint(x["X"].value).astype(int),
                 "RAWY": np.rint(x["Y"].value).astype(int)})
    assert np.all(event_truth(ev, c.labels) == LABEL_XRAY)
    with pytest.raises(ValueError):
        event_truth(QTable({"FRAME": [99], "RAWX": [0], "RAWY": [0]}), c.labels)


def test_tile_classes_rules():
    lab = np.zeros((1, 128, 128), np.uint8)
    dep = np.zeros((1, 128, 128), np.float32)
    lab[0, 5, 5], dep[0, 5, 5] = LABEL_XRAY, 500.0          # tile (0,0): X-ray
    lab[0, 5, 70], dep[0, 5, 70] = LABEL_CR, 5000.0         # tile (0,1): CR
    lab[0, 70, 5], dep[0, 70, 5] = LABEL_CR, 50.0           # tile (1,0): CR below 80 eV
    lab[0, 70, 70], dep[0, 70, 70] = LABEL_XRAY, 300.0      # tile (1,1): MIX
    lab[0, 71, 71], dep[0, 71, 71] = LABEL_CR, 300.0
    tc = tile_classes(lab, dep, tile=64)
    np.testing.assert_array_equal(tc[0], [[TILE_XRAY, TILE_CR], [TILE_EMPTY, TILE_MIX]])
    assert tile_classes(lab, tile=64)[0, 1, 0] == TILE_CR  # without deposits


def test_simulated_tiles_have_their_class():
    tiles, labels, classes, n_xray = simulate_tiles(6, seed=3)
    assert tiles.shape == (24, 64, 64) and tiles.dtype == np.float32
    assert np.bincount(classes, minlength=4).tolist() == [6, 6, 6, 6]
    has_x = (labels == LABEL_XRAY).any(axis=(1, 2))
    has_c = (labels == LABEL_CR).any(axis=(1, 2))
    assert np.all(has_x[(classes == TILE_XRAY) | (classes == TILE_MIX)])
    assert np.all(has_c[(classes == TILE_CR) | (classes == TILE_MIX)])
    assert not np.any(has_x[(classes == TILE_EMPTY) | (classes == TILE_CR)])
    # X-rays centred in the tile (a few tiles only catch a neighbour's charge)
    assert np.mean(n_xray[classes == TILE_XRAY] >= 1) >= 0.8
    # noise everywhere
    assert tiles[classes == TILE_EMPTY].std() == pytest.approx(7 * W, rel=0.1)


def test_build_tile_dataset_file(tmp_path):
    out = tmp_path / "tiles.npz"
    info = build_tile_dataset(3, out, seed=1)
    assert info["counts"] == [3, 3, 3, 3]
    d = load_tile_dataset(out)
    assert d["tiles"].shape == (12, 64, 64) and d["labels"].dtype == np.uint8
    from xcrfilter.ml.scaling import log_energy
    x = log_energy(d["tiles"])
    assert d["scaling_mean"] == pytest.approx(x.mean(), rel=1e-5)
    assert d["scaling_std"] == pytest.approx(x.std(), rel=1e-5)
    assert d["meta"]["tile"] == 64
    with pytest.raises(FileExistsError):
        build_tile_dataset(1, out, seed=1)


# ---------------------------------------------------------------- FITS, CLI
def test_fits_round_trip(tmp_path):
    path = tmp_path / "obs.fits"
    det = DetectorModel.wfi(shape=(48, 40))
    info = write_simulation(path, 21, seed=5, detector=det, chunk_size=8)
    assert info["n_frames"] == 21
    ref = simulate_frames(21, seed=5, detector=det)
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "TRUTH", "SOURCES"]
        assert hdul[0].header["BUNIT"] == "eV"
        assert hdul[0].header["SIMSEED"] == 5
        assert hdul[0].header["PIXSIZE"] == 130.0
        assert hdul[0].data.shape == (21, 48, 40)
        np.testing.assert_array_equal(hdul[0].data, ref.frames)
        params = SimulationParameters.from_header(hdul[0].header)
        assert params == SimulationParameters()
    labels, sources = read_truth(path)
    np.testing.assert_array_equal(labels, ref.labels)
    assert len(sources) == len(ref.sources)
    assert set(sources["KIND"]) <= {"xray", "primary", "secondary_track", "photon", "electron"}
    from xcrfilter.io.frames import as_energy_cube
    cube = as_energy_cube(str(path))
    np.testing.assert_allclose(cube.data, ref.frames)
    with pytest.raises(FileExistsError):
        write_simulation(path, 2, seed=1, detector=det)
    write_simulation(path, 3, seed=5, detector=det, gain=2.0 * u.eV / u.adu,
                     offset=100.0, overwrite=True)
    with fits.open(path) as hdul:
        assert hdul[0].header["ADUOFFS"] == 100.0
        np.testing.assert_allclose(hdul[0].data, ref.frames[:3] / 2.0 + 100.0, rtol=1e-6)


def _cli(argv):
    from xcrfilter.cli import simulate as cli
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    return cli.run(p.parse_args(argv))


def test_cli(tmp_path, capsys):
    out = tmp_path / "o.fits"
    argv = ["--frames", "5", "--shape", "32", "32", "--seed", "2", "-o", str(out),
            "--xray-energy", "5.9keV", "--readout-noise", "5", "-q"]
    assert _cli(argv) == 0
    with fits.open(out) as hdul:
        h = hdul[0].header
        assert h["RDNOISE"] == 5.0 and "5.9" in h["XSPECTRM"]
        assert hdul["TRUTH"].data.dtype == np.uint8
    assert _cli(argv) == 2  # exists, no --overwrite
    assert "exists" in capsys.readouterr().err
    assert _cli(argv + ["--overwrite", "--gain", "3.65"]) == 0
    with fits.open(out) as hdul:
        assert hdul[0].header["BUNIT"] == "adu" and hdul[0].header["GAIN"] == 3.65
        adu = np.array(hdul[0].data)
    # one meaning of gain: 1 electron/adu is 3.65 eV/adu with the WFI pair energy
    assert _cli(argv + ["--overwrite", "--gain", "1electron/adu"]) == 0
    with fits.open(out) as hdul:
        assert hdul[0].header["GAIN"] == pytest.approx(3.65)
        np.testing.assert_array_equal(hdul[0].data, adu)
    assert _cli(argv + ["--overwrite", "--set", "photon_mean=0.5", "--set",
                        "no_pileup=false"]) == 0
    with fits.open(out) as hdul:
        assert hdul[0].header["PHOTMEAN"] == 0.5 and hdul[0].header["NOPILEUP"] is False
    assert _cli(argv + ["--overwrite", "--set", "nonsense=1"]) == 2


# ---------------------------------------------------------------- validation
def test_bad_inputs():
    with pytest.raises(TypeError):
        LineSpectrum(5.9)
    with pytest.raises(ValueError):
        LogUniformSpectrum(10 * u.keV, 1 * u.keV)
    with pytest.raises(ValueError):
        SimulationParameters(cr_miss_fraction=1.5)
    with pytest.raises(ValueError):
        SimulationParameters(xray_rate=-1)
    with pytest.raises(TypeError):
        FrameSimulator(params={"xray_rate": 1})
    with pytest.raises(ValueError):
        list(iter_frames(4, chunk_size=0))


def test_callable_spectrum():
    def spec(rng, n):
        return rng.uniform(1, 2, n) * u.keV

    c = simulate_frames(5, seed=1, detector=SMALL, params=XRAY_ONLY, spectrum=spec)
    e = c.sources["ENERGY"].to_value(u.eV)
    assert np.all((e >= 1000) & (e <= 2000))


def test_minimum_ionising_loss_in_silicon():
    from xcrfilter.simulate import physics as ph
    # Bethe-Bloch minimum of Si, PDG: 1.664 MeV cm2/g = 0.3876 keV/um
    bg = np.geomspace(1, 30, 200)
    dedx = ph.bethe_restricted_kev_um(bg)
    assert dedx.min() == pytest.approx(0.3876, rel=0.02)
    assert 2.5 < bg[np.argmin(dedx)] < 4.5
    # most probable deposit of normally incident 3 GeV protons in 450 um
    sim = FrameSimulator()
    rng = np.random.default_rng(1)
    n = 6000
    z = np.zeros(n)
    tid, xs, ys, zs, es = track_deposits(sim, rng, z + 1e3, z + 1e3, z, z, z, z + 1, np.ones(n),
                                      np.full(n, ph.MP_MEV), np.full(n, 3000.0),
                                      np.full(n, np.inf))
    inside = (zs >= 0) & (zs <= 450)
    tot = np.bincount(tid, weights=es * inside, minlength=n) / 1e3 / 450.0
    hist, edges = np.histogram(tot, bins=np.arange(0.2, 0.5, 0.005))
    mpv = edges[np.argmax(hist)] + 0.0025
    assert 0.265 <= mpv <= 0.29
    assert 0.32 < tot.mean() < 0.40   # Landau tail; escaping delta rays lower it


def test_gcr_spectrum_solar_minimum():
    from xcrfilter.simulate import physics as ph
    s = ph.GCRSampler()
    e = s.sample(np.random.default_rng(0), 20000)
    assert 700 < np.median(e) < 1400          # MeV, peak of the modulated spectrum
    t = np.geomspace(1e4, 1e5, 5)             # high-energy slope ~ -2.7
    f = ph.gcr_differential_flux(t)
    slope = np.polyfit(np.log(t), np.log(f), 1)[0]
    assert -2.85 < slope < -2.6
