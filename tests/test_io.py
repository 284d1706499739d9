"""Tests of xcrfilter.io: frame input (units, masks, files) and FITS writers."""
import hashlib

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, NDData

from xcrfilter.detector import DetectorModel
from xcrfilter.io import FrameCube, as_energy_cube, read_frames


def _frames(shape=(2, 8, 9), seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 25.0, size=shape).astype(np.float32)


def _write(path, data, bunit="eV", gain=None, mask=None, mask_name="MASK", primary_data=True):
    if primary_data:
        hdu = fits.PrimaryHDU(data)
        hdus = [hdu]
    else:
        hdu = fits.ImageHDU(data, name="SCI")
        hdus = [fits.PrimaryHDU(), hdu]
    if bunit is not None:
        hdu.header["BUNIT"] = bunit
    if gain is not None:
        hdu.header["GAIN"] = gain
    hdu.header["OBJECT"] = ("test field", "target name")
    if mask is not None:
        hdus.append(fits.ImageHDU(mask.astype(np.uint8), name=mask_name))
    fits.HDUList(hdus).writeto(path)
    return path


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- in memory

def test_quantity_ev_cube():
    raw = _frames()
    cube = as_energy_cube(raw * u.eV)
    assert isinstance(cube, FrameCube)
    assert cube.data.dtype == np.float32 and cube.data.shape == (2, 8, 9)
    assert cube.mask.dtype == bool and not cube.mask.any()
    np.testing.assert_array_equal(cube.data, raw)
    assert cube.data is not raw
    assert cube.was_2d is False and cube.filenames == []


def test_quantity_2d_kev_becomes_3d():
    raw = np.full((6, 7), 1.5, dtype=np.float64)
    cube = as_energy_cube(raw * u.keV)
    assert cube.data.shape == (1, 6, 7) and cube.was_2d
    np.testing.assert_allclose(cube.data, 1500.0)


def test_quantity_electron_uses_pair_energy():
    raw = np.full((1, 5, 5), 100.0)
    cube = as_energy_cube(raw * u.electron)
    np.testing.assert_allclose(cube.data, 365.0, rtol=1e-6)
    det = DetectorModel.wfi(pair_energy=3.71 * u.eV / u.electron)
    cube = as_energy_cube(raw * u.electron, detector=det)
    np.testing.assert_allclose(cube.data, 371.0, rtol=1e-6)


def test_quantity_adu_needs_gain():
    raw = np.full((1, 5, 5), 10.0)
    cube = as_energy_cube(raw * u.adu, gain=4.0 * u.eV / u.adu)
    np.testing.assert_allclose(cube.data, 40.0)
    with pytest.raises(ValueError, match="gain"):
        as_energy_cube(raw * u.adu)
    det = DetectorModel.wfi(gain=2.5 * u.eV / u.adu)
    np.testing.assert_allclose(as_energy_cube(raw * u.adu, detector=det).data, 25.0)


def test_nonfinite_pixels_masked_and_zeroed():
    raw = _frames()
    raw[0, 1, 2] = np.nan
    raw[1, 3, 4] = np.inf
    raw[1, 0, 0] = -np.inf
    before = raw.copy()
    cube = as_energy_cube(raw * u.eV)
    assert cube.mask.sum() == 3
    assert cube.mask[0, 1, 2] and cube.mask[1, 3, 4] and cube.mask[1, 0, 0]
    assert np.all(np.isfinite(cube.data))
    assert cube.data[0, 1, 2] == 0 and cube.data[1, 3, 4] == 0
    np.testing.assert_array_equal(raw, before)  # input untouched


def test_ccddata_mask_honoured_and_input_untouched():
    raw = _frames((8, 9)) + 500
    mask = np.zeros((8, 9), bool)
    mask[4, 4] = True
    ccd = CCDData(raw.copy(), unit="keV", mask=mask.copy(), meta={"OBJECT": "x"})
    cube = as_energy_cube(ccd)
    assert cube.was_2d and cube.data.shape == (1, 8, 9)
    assert cube.mask[0, 4, 4] and cube.mask.sum() == 1
    assert cube.data[0, 4, 4] == 0
    np.testing.assert_allclose(cube.data[0, 0, 0], raw[0, 0] * 1000, rtol=1e-6)
    np.testing.assert_array_equal(ccd.data, raw)
    assert cube.header["OBJECT"] == "x"


def test_nddata_with_unit():
    cube = as_energy_cube(NDData(np.ones((3, 5, 5)), unit=u.eV))
    assert cube.data.shape == (3, 5, 5)


def test_ccddata_adu_uses_gain_keyword():
    ccd = CCDData(np.full((5, 5), 3.0), unit="adu", meta={"GAIN": 5.0})
    np.testing.assert_allclose(as_energy_cube(ccd).data, 15.0)
    # explicit argument wins over the keyword
    np.testing.assert_allclose(as_energy_cube(ccd, gain=2 * u.eV / u.adu).data, 6.0)


def test_read_frames_returns_ccddata():
    ccd = read_frames(np.ones((2, 6, 6)) * u.keV)
    assert isinstance(ccd, CCDData)
    assert ccd.unit == u.eV and ccd.data.shape == (2, 6, 6)
    assert ccd.mask.shape == (2, 6, 6)
    assert ccd.meta["BUNIT"] == "eV"


# ---------------------------------------------------------------- files

def test_fits_primary_ev(tmp_path):
    raw = _frames()
    path = _write(tmp_path / "f.fits", raw)
    cube = as_energy_cube(str(path))
    np.testing.assert_array_equal(cube.data, raw)
    assert cube.filenames == [str(path)]
    assert cube.header["OBJECT"] == "test field"
    assert "NAXIS1" not in cube.header
    cube2 = as_energy_cube(path)  # pathlib
    np.testing.assert_array_equal(cube2.data, raw)


def test_fits_extension_electron_and_dq(tmp_path):
    raw = np.full((2, 6, 6), 10.0, dtype=np.float32)
    dq = np.zeros((2, 6, 6), np.uint8)
    dq[1, 2, 3] = 4
    path = _write(tmp_path / "e.fits", raw, bunit="electron", mask=dq, mask_name="DQ",
                  primary_data=False)
    cube = as_energy_cube(path)
    np.testing.assert_allclose(cube.data[0], 36.5, rtol=1e-6)
    assert cube.mask.sum() == 1 and cube.mask[1, 2, 3]
    assert cube.data[1, 2, 3] == 0


def test_fits_2d_mask_broadcast_over_cube(tmp_path):
    raw = np.full((3, 6, 6), 1.0, dtype=np.float32)
    m = np.zeros((6, 6), np.uint8)
    m[0, 0] = 1
    path = _write(tmp_path / "m.fits", raw, mask=m)
    cube = as_energy_cube(path)
    assert cube.mask[:, 0, 0].all() and cube.mask.sum() == 3


def test_fits_adu_gain_keyword_and_argument(tmp_path):
    raw = np.full((1, 5, 5), 2, dtype=np.int16)
    p1 = _write(tmp_path / "a.fits", raw, bunit="adu", gain=3.5)
    np.testing.assert_allclose(as_energy_cube(p1).data, 7.0)
    p2 = _write(tmp_path / "b.fits", raw, bunit="ADU")
    np.testing.assert_allclose(as_energy_cube(p2, gain=10 * u.eV / u.adu).data, 20.0)


def test_fits_list_concatenated(tmp_path):
    a = _write(tmp_path / "a.fits", np.full((2, 6, 7), 1.0, np.float32))
    b = _write(tmp_path / "b.fits", np.full((6, 7), 2.0, np.float32), bunit="keV")
    cube = as_energy_cube([a, str(b)])
    assert cube.data.shape == (3, 6, 7) and not cube.was_2d
    np.testing.assert_allclose(cube.data[:, 0, 0], [1.0, 1.0, 2000.0])
    assert cube.filenames == [str(a), str(b)]
    ccd = read_frames([a, b])
    assert ccd.meta["INFILE1"] == "a.fits" and ccd.meta["INFILE2"] == "b.fits"


def test_ccddata_written_file_round_trip(tmp_path):
    raw = _frames((7, 7))
    mask = np.zeros((7, 7), bool)
    mask[3, 3] = True
    path = tmp_path / "ccd.fits"
    CCDData(raw, unit="eV", mask=mask).write(path)
    cube = as_energy_cube(path)
    assert cube.mask[0, 3, 3] and cube.mask.sum() == 1


def test_input_file_bytes_unchanged(tmp_path):
    raw = _frames()
    raw[0, 0, 0] = np.nan
    path = _write(tmp_path / "f.fits", raw, bunit="adu", gain=3.0,
                  mask=np.zeros(raw.shape, np.uint8))
    before = _md5(path)
    mtime = path.stat().st_mtime_ns
    as_energy_cube(path)
    read_frames([path, path])
    assert _md5(path) == before
    assert path.stat().st_mtime_ns == mtime


# ---------------------------------------------------------------- bad input

def test_bare_ndarray_is_typeerror_naming_argument():
    with pytest.raises(TypeError, match=r"frames.*Quantity.*eV.*electron.*adu"):
        as_energy_cube(np.zeros((2, 8, 8)))
    with pytest.raises(TypeError, match="science"):
        as_energy_cube(np.zeros((2, 8, 8)), name="science")


def test_wrong_unit():
    with pytest.raises(u.UnitConversionError, match="frames.*eV"):
        as_energy_cube(np.zeros((2, 8, 8)) * u.m)


def test_nddata_without_unit():
    with pytest.raises(TypeError, match="frames.*no unit"):
        as_energy_cube(NDData(np.zeros((8, 8))))


@pytest.mark.parametrize("shape", [(8,), (1, 2, 8, 8), ()])
def test_wrong_ndim(shape):
    with pytest.raises(ValueError, match=r"frames must be a 2-D frame.*3-D cube"):
        as_energy_cube(np.zeros(shape) * u.eV)


@pytest.mark.parametrize("shape", [(4, 8), (2, 8, 4), (3, 3)])
def test_too_small(shape):
    with pytest.raises(ValueError, match=r"frames.*at least 5 x 5"):
        as_energy_cube(np.zeros(shape) * u.eV)


def test_zero_frames():
    with pytest.raises(ValueError, match="frames is empty.*0 frames"):
        as_energy_cube(np.zeros((0, 8, 8)) * u.eV)


def test_empty_list():
    with pytest.raises(ValueError, match="frames is an empty list"):
        as_energy_cube([])


def test_list_of_arrays_rejected():
    with pytest.raises(TypeError, match=r"frames\[0\] must be a FITS file path"):
        as_energy_cube([np.zeros((8, 8))])


def test_other_type_rejected():
    with pytest.raises(TypeError, match="frames must be"):
        as_energy_cube({"a": 1})


@pytest.mark.parametrize("gain", [-2 * u.eV / u.adu, 0 * u.eV / u.adu])
def test_nonpositive_gain_argument(gain):
    with pytest.raises(ValueError, match="gain must be a finite positive"):
        as_energy_cube(np.ones((5, 5)) * u.adu, gain=gain)


def test_gain_bare_float():
    with pytest.raises(TypeError, match="gain must be an astropy Quantity in eV/adu"):
        as_energy_cube(np.ones((5, 5)) * u.adu, gain=3.0)


def test_gain_wrong_unit():
    with pytest.raises(u.UnitConversionError, match="gain must be in eV/adu"):
        as_energy_cube(np.ones((5, 5)) * u.adu, gain=3.0 * u.m)


def test_negative_gain_keyword(tmp_path):
    path = _write(tmp_path / "n.fits", np.ones((5, 5), np.float32), bunit="adu", gain=-1.0)
    with pytest.raises(ValueError, match="GAIN keyword"):
        as_energy_cube(path)


def test_fits_adu_without_gain(tmp_path):
    path = _write(tmp_path / "n.fits", np.ones((5, 5), np.float32), bunit="adu")
    with pytest.raises(ValueError, match=r"frames .* adu but no gain.*gain="):
        as_energy_cube(path)


def test_fits_without_image_data(tmp_path):
    path = tmp_path / "table.fits"
    table = fits.BinTableHDU.from_columns([fits.Column("A", "E", array=np.ones(3))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    with pytest.raises(ValueError, match="frames.*no image data.*2-D frame or a 3-D cube"):
        as_energy_cube(path)


def test_fits_unknown_bunit(tmp_path):
    path = _write(tmp_path / "u.fits", np.ones((5, 5), np.float32), bunit="Jy/beam")
    with pytest.raises(ValueError, match=r"frames.*unknown BUNIT 'Jy/beam'.*eV.*adu"):
        as_energy_cube(path)


def test_fits_missing_bunit(tmp_path):
    path = _write(tmp_path / "u.fits", np.ones((5, 5), np.float32), bunit=None)
    with pytest.raises(ValueError, match="frames.*no BUNIT"):
        as_energy_cube(path)


def test_fits_wrong_ndim(tmp_path):
    path = _write(tmp_path / "u.fits", np.ones((2, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="frames.*no image data"):
        as_energy_cube(path)


def test_fits_too_small(tmp_path):
    path = _write(tmp_path / "s.fits", np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match="frames.*at least 5 x 5"):
        as_energy_cube(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="frames.*does not exist"):
        as_energy_cube(tmp_path / "nope.fits")


def test_not_a_fits_file(tmp_path):
    path = tmp_path / "x.fits"
    path.write_text("hello, not FITS")
    with pytest.raises(OSError, match="frames.*cannot read"):
        as_energy_cube(path)


def test_list_shape_mismatch(tmp_path):
    a = _write(tmp_path / "a.fits", np.ones((6, 6), np.float32))
    b = _write(tmp_path / "b.fits", np.ones((7, 6), np.float32))
    with pytest.raises(ValueError, match=r"frames\[1\].*same frame shape"):
        as_energy_cube([a, b])


def test_mask_shape_mismatch():
    ccd = CCDData(np.ones((6, 6)), unit="eV", mask=np.zeros((6, 6), bool))
    ccd._mask = np.zeros((3, 3), bool)
    with pytest.raises(ValueError, match="frames mask has shape"):
        as_energy_cube(ccd)


def test_bad_detector_type():
    with pytest.raises(TypeError, match="detector must be a DetectorModel"):
        as_energy_cube(np.ones((5, 5)) * u.eV, detector="wfi")
