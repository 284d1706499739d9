"""Tests of the L.A.Cosmic (astroscrappy) baseline filter."""
import argparse
from collections import namedtuple

import astropy.units as u
import astroscrappy
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.table import QTable
from scipy import ndimage

from xcrfilter.cli import lacosmic as lacosmic_cli
from xcrfilter.filters import laplacian
from xcrfilter.filters.laplacian import lacosmic_filter, lacosmic_mask, mask_to_events
from xcrfilter.io.realdata import load_real_frame, real_frame_path

PAIR = 3.65  # eV / electron (DetectorModel default)
Cube = namedtuple("Cube", ["data", "mask", "header", "filenames", "was_2d"])


def _xray_like(n=2, shape=(64, 64), seed=1):
    """Frames in eV: 7 e- read noise, a 4-pixel X-ray and a bright CR streak."""
    rng = np.random.default_rng(seed)
    frames = rng.normal(0.0, 7 * PAIR, size=(n,) + shape).astype(np.float32)
    frames[:, 20, 20] += 5000.0
    frames[:, 20, 21] += 900.0
    for k in range(12):
        frames[:, 40 + k // 3, 10 + k] += 6000.0
    return frames


def test_mask_equals_direct_astroscrappy_energy_frames():
    frames = _xray_like()
    ccd = lacosmic_mask(frames * u.eV, sigclip=5.0, objlim=4.0, niter=2)
    for i in range(frames.shape[0]):
        direct, _ = astroscrappy.detect_cosmics(
            (frames[i].astype(np.float64) / PAIR).astype(np.float32), sigclip=5.0, objlim=4.0,
            niter=2, gain=1.0, readnoise=7.0, satlevel=np.inf)
        np.testing.assert_array_equal(ccd.mask[i], direct)
    assert ccd.mask[:, 40:44, 10:22].sum() >= 12  # the streak is found
    assert ccd.header["LACSIGCL"] == 5.0
    assert ccd.header["LACRDNS"] == 7.0
    assert ccd.header["LACNCRPX"] == int(ccd.mask.sum())


def test_mask_equals_direct_astroscrappy_adu_and_keV():
    ccd_real = load_real_frame("saao")
    out = lacosmic_mask(ccd_real, sigclip=6.0, sigfrac=0.5, cleantype="medmask")
    direct, _ = astroscrappy.detect_cosmics(ccd_real.data, sigclip=6.0, sigfrac=0.5,
                                            cleantype="medmask", gain=1.9, readnoise=5.0,
                                            satlevel=np.inf)
    np.testing.assert_array_equal(out.mask, direct)
    # keV input gives the same mask as eV input.
    frames = _xray_like(n=1)
    a = lacosmic_mask(frames * u.eV)
    b = lacosmic_mask(frames / 1000.0 * u.keV)
    np.testing.assert_array_equal(a.mask, b.mask)


def test_real_frame_pixel_counts_pinned():
    gmos = load_real_frame("gmos")
    assert gmos.unit == u.electron and gmos.shape == (150, 200)
    out = lacosmic_mask(gmos)  # gain 1 (electrons), read noise 4.24 e- from header
    assert out.header["LACNCRPX"] == 157
    labels, n = ndimage.label(out.mask)
    assert n >= 2
    # astroscrappy's own test parameters (gain 1.933 on the same array): 4
    # regions of 1, 1, 74 and 93 pixels.
    out2 = lacosmic_mask(gmos.data, unit="adu", gain=1.933 * u.electron / u.adu, readnoise=4.24)
    labels, n = ndimage.label(out2.mask)
    assert sorted(np.bincount(labels.ravel())[1:].tolist()) == [1, 1, 74, 93]
    saao = load_real_frame("saao")
    assert saao.unit == u.adu and saao.shape == (520, 512)
    assert lacosmic_mask(saao).header["LACNCRPX"] == 162


def test_real_frames_found_in_site_packages():
    assert real_frame_path("gmos").endswith("astroscrappy/tests/data/gmos.fits")
    assert real_frame_path("saao").endswith("ccdproc/tests/data/a8280271.fits")
    with pytest.raises(KeyError):
        real_frame_path("hubble")


def test_events_status_bit3_and_meta():
    mask = np.zeros((2, 10, 10), bool)
    mask[0, 5, 5] = True
    events = QTable({"FRAME": np.array([0, 0, 0, 1], np.int32),
                     "RAWX": np.array([6, 7, 4, 5], np.int32),
                     "RAWY": np.array([6, 5, 4, 5], np.int32),
                     "STATUS": np.array([0, 0, 1, 0], np.int32)})
    out, touched = mask_to_events(events, mask)
    assert touched.tolist() == [True, False, True, False]
    assert out["STATUS"].tolist() == [8, 0, 9, 0]
    assert events["STATUS"].tolist() == [0, 0, 1, 0]  # input untouched


def test_filter_with_events_and_pipeline_step():
    frames = _xray_like(n=2)
    events = QTable({"FRAME": np.array([0, 1, 1], np.int32),
                     "RAWX": np.array([11, 20, 60], np.int32),
                     "RAWY": np.array([40, 20, 5], np.int32),
                     "ENERGY": np.array([6000, 5900, 300], np.float32) * u.eV,
                     "STATUS": np.zeros(3, np.int32)})
    ev = lacosmic_filter(frames * u.eV, events)
    assert ev["STATUS"][0] & 8  # on the streak
    assert not ev["STATUS"][2] & 8  # far from everything
    assert ev.meta["LACNEVT"] == int((ev["STATUS"] & 8 > 0).sum())
    assert "LACSIGCL" in ev.meta and any("lacosmic_filter" in h for h in ev.meta["HISTORY"])
    cube = Cube(frames, np.zeros(frames.shape, bool), fits.Header(), [], False)
    ev2 = laplacian.pipeline_step(cube, events, sigclip=4.5)
    np.testing.assert_array_equal(ev2["STATUS"], ev["STATUS"])
    assert events["STATUS"].sum() == 0


def test_cli_options_roundtrip():
    parser = argparse.ArgumentParser()
    laplacian.FILTER.add_cli_options(parser.add_argument_group("lacosmic"))
    args = parser.parse_args(["--lacosmic-sigclip", "6", "--lacosmic-no-sepmed"])
    opts = laplacian.FILTER.options_from_args(args)
    assert opts["sigclip"] == 6.0 and opts["sepmed"] is False and "readnoise" not in opts


def test_cli_real_frame(tmp_path, capsys):
    out = tmp_path / "saao_mask.fits"
    assert lacosmic_cli.main(["--real", "saao", "-o", str(out)]) == 0
    assert "162 cosmic-ray pixels" in capsys.readouterr().out
    ccd = CCDData.read(out, hdu_mask="MASK")
    assert int(ccd.mask.sum()) == 162 and ccd.header["LACGAIN"] == 1.9


def test_cleaned_image_and_no_mutation():
    frames = _xray_like(n=1)[0]
    q = frames.copy() * u.eV
    ccd = lacosmic_mask(q, return_cleaned=True)
    np.testing.assert_array_equal(q.value, frames)
    assert ccd.unit == u.eV and ccd.data.shape == frames.shape
    assert ccd.data[41, 13] < 2000.0  # streak pixel replaced by its surroundings
    assert ccd.data[0, 0] == pytest.approx(frames[0, 0], rel=1e-5)


def test_bad_input():
    with pytest.raises(TypeError, match="unit"):
        lacosmic_mask(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="5 x 5"):
        lacosmic_mask(np.zeros((4, 8)) * u.eV)
    with pytest.raises(ValueError, match="gain"):
        lacosmic_mask(np.zeros((8, 8)), unit="adu")
    with pytest.raises(ValueError, match="cleantype"):
        lacosmic_mask(np.zeros((8, 8)) * u.eV, cleantype="mean")
    with pytest.raises(u.UnitConversionError):
        lacosmic_mask(np.zeros((8, 8)) * u.m)


def test_framecube_without_mask_and_with_bad_pixels():
    frames = _xray_like(n=1)
    cube = Cube(frames, None, None, [], False)
    a = lacosmic_mask(cube)
    assert a.mask.shape == frames.shape
    bad = np.zeros(frames.shape, bool)
    bad[0, 5, 5] = True
    b = lacosmic_mask(Cube(frames, bad, fits.Header(), [], False))
    assert b.mask[0, 5, 5] and b.header["LACNCRPX"] == int(b.mask.sum()) - 1


@pytest.mark.parametrize("option, value", [
    ("satlevel", -1.0), ("satlevel", 0.0), ("psfsize", 0), ("psfsize", 4), ("psffwhm", 0.0),
    ("psfbeta", -2.0), ("niter", 0), ("niter", 1.5), ("sigclip", float("nan")),
    ("objlim", -5.0), ("pssl", float("inf"))])
def test_invalid_settings_name_the_parameter(option, value):
    frames = _xray_like(n=1)
    with pytest.raises(ValueError, match=option):
        lacosmic_mask(frames * u.eV, **{option: value})
    with pytest.raises(ValueError, match=option):
        lacosmic_filter(frames * u.eV, **{option: value})


def test_filter_returns_qtable_and_rerun_replaces_bit():
    frames = _xray_like(n=1)
    events = QTable({"FRAME": np.array([0, 0], np.int32),
                     "RAWX": np.array([11, 60], np.int32),
                     "RAWY": np.array([40, 5], np.int32),
                     "ENERGY": np.array([6000, 300], np.float32) * u.eV,
                     "STATUS": np.array([0, 8 | 1], np.int32)})  # a stale bit 3 on row 1
    ev = lacosmic_filter(frames * u.eV, events)
    assert isinstance(ev, QTable)
    assert ev["STATUS"].tolist() == [8, 1]  # bit 3 recomputed, bit 0 kept
    strict = lacosmic_filter(frames * u.eV, ev, sigclip=1e6)
    assert strict["STATUS"].tolist() == [0, 1] and strict.meta["LACSIGCL"] == 1e6
    assert events["STATUS"].tolist() == [0, 9]
    # without events, they are found in the frames
    found = lacosmic_filter(frames * u.eV)
    assert isinstance(found, QTable) and len(found) >= 2
    assert found.meta["LACNEVT"] == int(((found["STATUS"] & 8) > 0).sum()) >= 1
    with pytest.raises(ValueError, match=r"\['STATUS'\]"):
        lacosmic_filter(frames * u.eV, events[["FRAME", "RAWX", "RAWY"]])


def test_lacosmic_command_bare_gain_is_electrons_per_adu(tmp_path):
    """L.A.Cosmic users give the gain in electrons per count (astroscrappy's convention);
    a bare --gain 1.9 used to be read as 1.9 eV/adu, i.e. 0.52 e-/adu."""
    from xcrfilter.cli.argtypes import parse_gain_electrons
    from xcrfilter.cli.main import main
    assert parse_gain_electrons("1.9") == 1.9 * u.electron / u.adu
    assert parse_gain_electrons("3.65eV/adu") == 3.65 * u.eV / u.adu
    saao = load_real_frame("saao")
    src = tmp_path / "saao.fits"
    fits.PrimaryHDU(np.asarray(saao.data, np.float32), header=fits.Header(
        {"BUNIT": "adu"})).writeto(src)
    out = tmp_path / "mask.fits"
    assert main(["lacosmic", str(src), "-o", str(out), "--gain", "1.9",
                 "--lacosmic-readnoise", "5"]) == 0
    with fits.open(out) as hdul:
        assert hdul[0].header["LACGAIN"] == pytest.approx(1.9)
        mask = np.asarray(hdul["MASK"].data, bool)
    direct, _ = astroscrappy.detect_cosmics(np.asarray(saao.data, np.float32), gain=1.9,
                                            readnoise=5.0, satlevel=np.inf)
    np.testing.assert_array_equal(mask, direct)


def test_gain_on_energy_frames_warns(tmp_path):
    from astropy.utils.exceptions import AstropyUserWarning

    from xcrfilter.cli.main import main
    from xcrfilter.io.frames import as_energy_cube
    frames = _xray_like(n=1)
    with pytest.warns(AstropyUserWarning, match="gain is ignored"):
        lacosmic_mask(frames * u.eV, gain=3.65 * u.eV / u.adu)
    with pytest.warns(AstropyUserWarning, match="the gain given is ignored"):
        as_energy_cube(frames * u.eV, gain=3.65 * u.eV / u.adu)
    src = tmp_path / "ev.fits"
    fits.PrimaryHDU(frames.astype(np.float32), header=fits.Header({"BUNIT": "eV"})
                    ).writeto(src)
    with pytest.warns(AstropyUserWarning, match="the gain given is ignored"):
        assert main(["filter", str(src), "-q", "-o", str(tmp_path / "e.fits"),
                     "--gain", "3.65eV/adu"]) == 0
