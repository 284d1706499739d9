"""Tests of xcrfilter.io.frames: frame input (units, masks, files) and FITS writers."""
import hashlib
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, NDData
from astropy.table import QTable
from astropy.utils.exceptions import AstropyUserWarning

from xcrfilter.detector import DetectorModel
from xcrfilter.io.eventfile import read_events, write_events
from xcrfilter.io.frames import FrameCube, as_energy_cube, read_frames
from xcrfilter.io.products import read_cam_maps, write_cam_maps, write_mask
from xcrfilter.meta import CARD_COMMENTS, card_comment, card_value


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
    with pytest.warns(AstropyUserWarning, match="frames: 3 non-finite"):
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
    assert ccd.meta["INFILE01"] == "a.fits" and ccd.meta["INFILE02"] == "b.fits"


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
    with pytest.warns(AstropyUserWarning, match="non-finite"):
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


@pytest.mark.parametrize("bunit, gain, message", [
    ("adu", -1.0, "GAIN keyword"),                                    # negative gain
    ("adu", None, r"frames .* adu but no gain.*gain="),               # adu, no gain
    ("Jy/beam", None, r"frames.*unknown BUNIT 'Jy/beam'.*eV.*adu"),   # not an energy
    (None, None, "frames.*no BUNIT"),                                 # no unit at all
], ids=["negative-gain", "adu-without-gain", "unknown-bunit", "missing-bunit"])
def test_fits_frames_without_a_usable_unit(tmp_path, bunit, gain, message):
    path = _write(tmp_path / "u.fits", np.ones((5, 5), np.float32), bunit=bunit, gain=gain)
    with pytest.raises(ValueError, match=message):
        as_energy_cube(path)


def test_fits_without_image_data(tmp_path):
    path = tmp_path / "table.fits"
    table = fits.BinTableHDU.from_columns([fits.Column("A", "E", array=np.ones(3))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    with pytest.raises(ValueError, match="frames.*no image data.*2-D frame or a 3-D cube"):
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


# ---------------------------------------------------------------- event files

def _events(n=4):
    rng = np.random.default_rng(3)
    t = QTable()
    t["FRAME"] = np.arange(n, dtype=np.int32)
    t["RAWX"] = np.array([0, 5, 100, 511][:n], dtype=np.int32)
    t["RAWY"] = np.array([3, 2, 400, 510][:n], dtype=np.int32)
    t["ENERGY"] = rng.uniform(300, 9000, n).astype(np.float32) * u.eV
    t["PHA"] = rng.uniform(260, 5000, n).astype(np.float32) * u.eV
    t["PHAS"] = rng.normal(0, 25, (n, 25)).astype(np.float32) * u.eV
    t["GRADE"] = np.array([0, 2, 6, 7][:n], dtype=np.int16)
    t["EDGE"] = np.array([True, False, False, True][:n])
    t["STATUS"] = np.array([0, 1, 6, 32][:n], dtype=np.int32)
    t["PROB_CR"] = np.array([0.1, 0.5, 0.77, 0.99][:n], dtype=np.float32)
    t.meta["EVTTHR"] = (260.0, "[eV] event threshold")
    t.meta["SPLTHR"] = (80.0, "[eV] split threshold")
    t.meta["MIPTHR"] = (10000.0, "[eV] MIP threshold")
    t.meta["FRMCOLS"] = (512, "columns of one frame")
    t.meta["FRMROWS"] = 512
    t.meta["TELESCOP"] = ("ATHENA", "mission")
    t.meta["INSTRUME"] = "WFI"
    t.meta["VFAINT"] = (True, "very-faint filter applied")
    t.meta["MODEL"] = ("densenet_cam_v1", "CAM model name")
    t.meta["HISTORY"] = ["2026-11-22T10:00:00 find_events(event_threshold=260 eV)",
                         "a long line " + "x" * 150 + " end",
                         "2026-11-22T10:00:01 vfaint_filter()"]
    return t


def test_events_round_trip(tmp_path):
    t = _events()
    meta_before = {k: (list(v) if isinstance(v, list) else v) for k, v in t.meta.items()}
    path = tmp_path / "ev.fits"
    write_events(t, path, input_files=["/data/a.fits", "b.fits"], history="extra step")
    assert t.meta == meta_before  # input untouched
    back = read_events(path)
    assert back.colnames == t.colnames
    assert len(back) == len(t)
    for name in t.colnames:
        assert back[name].dtype == t[name].dtype, name
        assert getattr(back[name], "unit", None) == getattr(t[name], "unit", None), name
        assert back[name].shape == t[name].shape, name
        np.testing.assert_array_equal(np.asarray(back[name]), np.asarray(t[name]))
    assert isinstance(back["ENERGY"], u.Quantity) and back["ENERGY"].unit == u.eV
    for key, value in t.meta.items():
        if key == "HISTORY":
            continue
        # read back as astropy reads tables: plain values, comments kept aside
        assert back.meta[key] == card_value(t.meta, key), key
        assert card_comment(back.meta, key) == card_comment(t.meta, key), key
    assert back.meta["EVTTHR"] * u.eV == 260 * u.eV
    assert back.meta["HISTORY"] == t.meta["HISTORY"] + ["extra step"]
    assert back.meta["INFILE01"] == "/data/a.fits"
    assert card_comment(back.meta, "INFILE01") == "input frame file"
    assert back.meta["INFILE02"] == "b.fits"
    assert back.meta["NINFILES"] == 2
    assert back.meta["CREATOR"].startswith("xcrfilter ")
    assert back.meta["HDUCLAS1"] == "EVENTS"
    # a second round trip reproduces the same table and keywords
    write_events(back, tmp_path / "ev2.fits")
    again = read_events(tmp_path / "ev2.fits")
    for key in back.meta:
        if key not in ("DATE",):
            assert again.meta[key] == back.meta[key], key


def test_events_file_ogip_keywords(tmp_path):
    path = tmp_path / "ev.fits"
    write_events(_events(), path)
    with fits.open(path) as hdul:
        assert hdul[1].name == "EVENTS"
        h = hdul[1].header
        assert h["HDUCLASS"] == "OGIP" and h["HDUCLAS1"] == "EVENTS"
        cols = [h[f"TTYPE{i}"] for i in range(1, h["TFIELDS"] + 1)]
        ix, iy, ie = cols.index("RAWX") + 1, cols.index("RAWY") + 1, cols.index("ENERGY") + 1
        assert (h[f"TLMIN{ix}"], h[f"TLMAX{ix}"]) == (0, 511)
        assert (h[f"TLMIN{iy}"], h[f"TLMAX{iy}"]) == (0, 511)
        assert h[f"TUNIT{ie}"] == "eV"
        assert h[f"TUNIT{cols.index('PHAS') + 1}"] == "eV"
        assert f"TUNIT{cols.index('STATUS') + 1}" not in h
        assert h.comments["EVTTHR"] == "[eV] event threshold"
        assert hdul[0].header["TELESCOP"] == "ATHENA"
        assert "DATE" in hdul[0].header and "CREATOR" in hdul[1].header


def test_events_kev_written_in_ev(tmp_path):
    t = _events()
    t["ENERGY"] = t["ENERGY"].to(u.keV)
    write_events(t, tmp_path / "k.fits")
    back = read_events(tmp_path / "k.fits")
    assert back["ENERGY"].unit == u.eV
    np.testing.assert_allclose(back["ENERGY"].value, t["ENERGY"].to_value(u.eV), rtol=1e-6)


def test_events_limits_without_frame_keywords(tmp_path):
    t = _events()
    del t.meta["FRMCOLS"], t.meta["FRMROWS"]
    write_events(t, tmp_path / "e.fits")
    h = fits.getheader(tmp_path / "e.fits", "EVENTS")
    assert h["TLMAX2"] == 511 and h["TLMAX3"] == 510


def test_empty_events_round_trip(tmp_path):
    t = _events()[:0]
    write_events(t, tmp_path / "e.fits")
    back = read_events(tmp_path / "e.fits")
    assert len(back) == 0 and back.colnames == t.colnames
    assert back["PHAS"].shape == (0, 25)
    h = fits.getheader(tmp_path / "e.fits", "EVENTS")
    assert h["TLMAX2"] == 511


def test_write_events_refuses_overwrite(tmp_path):
    path = tmp_path / "e.fits"
    write_events(_events(), path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_events(_events(), path)
    write_events(_events(2), path, overwrite=True)
    assert len(read_events(path)) == 2


def test_write_events_bad_input(tmp_path):
    with pytest.raises(TypeError, match="events must be an astropy Table"):
        write_events({"RAWX": [1]}, tmp_path / "x.fits")
    t = _events()
    t.meta["BAD"] = [1, 2, 3]
    with pytest.raises(TypeError, match="BAD"):
        write_events(t, tmp_path / "x.fits")


def test_read_events_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_events(tmp_path / "none.fits")
    path = _write(tmp_path / "img.fits", np.ones((5, 5), np.float32))
    with pytest.raises(ValueError, match="no EVENTS"):
        read_events(path)


def test_cam_maps(tmp_path):
    maps = {"XRAY": np.random.default_rng(0).random((2, 8, 8)), "CR": np.zeros((2, 8, 8))}
    path = tmp_path / "cam.fits"
    write_cam_maps(path, maps, [("MODEL", "densenet", "model name"), ("UPSAMPLE", "bilinear")])
    with fits.open(path) as hdul:
        assert [h.name for h in hdul[1:]] == ["CAM_XRAY", "CAM_CR"]
        assert hdul["CAM_XRAY"].data.dtype.name == "float32"
        assert hdul["CAM_CR"].header["MODEL"] == "densenet"
        assert hdul["CAM_CR"].header["CLASSNAM"] == "CR"
        assert hdul[0].header.comments["MODEL"] == "model name"
    back, header = read_cam_maps(path)
    np.testing.assert_allclose(back["XRAY"], maps["XRAY"].astype(np.float32))
    assert header["NCAMMAPS"] == 2
    with pytest.raises(TypeError, match="maps must be a non-empty dict"):
        write_cam_maps(tmp_path / "x.fits", {}, None)
    with pytest.raises(ValueError, match=r"maps\['CR'\] must be 2-D"):
        write_cam_maps(tmp_path / "x.fits", {"CR": np.zeros(4)}, None)


def test_cam_map_writer_appends_chunks(tmp_path):
    from xcrfilter.io.products import CamMapWriter
    rng = np.random.default_rng(1)
    maps = {"XRAY": rng.random((5, 8, 8)), "CR": rng.random((5, 8, 8))}
    cards = [("MODEL", "densenet", "model name")]
    whole, chunked = tmp_path / "whole.fits", tmp_path / "chunked.fits"
    write_cam_maps(whole, maps, cards)
    with CamMapWriter(chunked) as writer:
        assert not chunked.exists() and not list(tmp_path.glob("chunked*"))  # nothing yet
        for a, b in ((0, 2), (2, 5)):
            writer.append({k: v[a:b] for k, v in maps.items()}, cards)
        with pytest.raises(ValueError, match="classes"):
            writer.append({"CR": maps["CR"][:1]})
    with fits.open(whole) as one, fits.open(chunked) as two:
        for h1, h2 in zip(one, two):
            assert h1.name == h2.name
            if h1.data is not None:
                np.testing.assert_array_equal(h1.data, h2.data)
            drop = ("DATE", "CREATOR", "CHECKSUM", "DATASUM")
            assert {k: v for k, v in h1.header.items() if k not in drop} == \
                {k: v for k, v in h2.header.items() if k not in drop}
    with pytest.raises(FileExistsError):
        CamMapWriter(chunked)
    # an error inside the block leaves no file and no side files
    with pytest.raises(RuntimeError):
        with CamMapWriter(tmp_path / "bad.fits") as writer:
            writer.append({k: v[:2] for k, v in maps.items()}, cards)
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunked.fits", "whole.fits"]


def test_write_mask_readable_by_ccddata(tmp_path):
    mask = np.zeros((2, 6, 6), bool)
    mask[1, 2:5, 2:5] = True
    ccd = CCDData(np.ones((2, 6, 6), np.float32), unit="eV", mask=mask)
    path = tmp_path / "mask.fits"
    write_mask(path, ccd)
    back = CCDData.read(path)
    np.testing.assert_array_equal(back.mask, mask)
    assert back.unit == u.eV
    with pytest.raises(ValueError, match="ccd has no mask"):
        write_mask(tmp_path / "m2.fits", CCDData(np.ones((6, 6)), unit="eV"))
    with pytest.raises(TypeError, match="ccd must be a CCDData"):
        write_mask(tmp_path / "m2.fits", np.ones((6, 6)))


def test_huge_finite_values_not_masked():
    # the sum overflows to inf although every pixel is finite
    raw = np.full((2, 5, 5), 3e38, dtype=np.float32)
    cube = as_energy_cube(raw * u.eV)
    assert not cube.mask.any()
    raw[1, 1, 1] = np.inf
    with pytest.warns(AstropyUserWarning, match="1 non-finite"):
        assert as_energy_cube(raw * u.eV).mask.sum() == 1


def test_truncated_fits(tmp_path):
    path = _write(tmp_path / "t.fits", np.ones((3, 50, 50), np.float32))
    (tmp_path / "trunc.fits").write_bytes(path.read_bytes()[:17280])
    with pytest.raises(OSError, match="frames: FITS file .* corrupt or truncated"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            as_energy_cube(tmp_path / "trunc.fits")


def test_long_comment_shortened_without_warning(tmp_path):
    t = _events()
    t.meta["LONGCOM"] = (1.5, "a comment " * 12)
    t.meta["LONGSTR"] = ("s" * 90, "long string value")
    t.meta["INFILE01"] = ("p" * 64, "input frame file")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_events(t, tmp_path / "c.fits", input_files=["/x/" + "q" * 70])
    back = read_events(tmp_path / "c.fits")
    assert back.meta["LONGCOM"] == 1.5
    assert ("a comment " * 12).startswith(card_comment(back.meta, "LONGCOM"))
    assert back.meta["LONGSTR"] == "s" * 90
    assert back.meta["INFILE01"] == "q" * 68  # basename tail of a long path


def test_filtered_events_round_trip(tmp_path):
    """Events from find_events + vfaint_filter survive write/read unchanged."""
    from xcrfilter.filters.vfaint import vfaint_filter

    rng = np.random.default_rng(11)
    frames = rng.normal(0, 25.55, (2, 16, 20)).astype(np.float32)
    frames[0, 5, 5] = 1500.0                                # single
    frames[0, 10, 12], frames[0, 11, 13] = 2000.0, 400.0    # diagonal double
    frames[1, 8, 8], frames[1, 8, 9] = 12500.0, 300.0       # above 10 keV
    path = _write(tmp_path / "frames.fits", frames)
    events = vfaint_filter(path)
    assert len(events) == 3
    out = tmp_path / "events.fits"
    write_events(events, out, input_files=[path])
    back = read_events(out)
    for name in events.colnames:
        assert back[name].dtype == events[name].dtype, name
        np.testing.assert_array_equal(np.asarray(back[name]), np.asarray(events[name]))
    for key, value in events.meta.items():
        if key == CARD_COMMENTS:
            assert value.items() <= back.meta[key].items()
        elif key != "INFILE01":
            assert back.meta[key] == value, key
    # input_files replaces the path tail recorded by find_events
    assert back.meta["INFILE01"] in (str(path), "frames.fits")
    h = fits.getheader(out, "EVENTS")
    names = [h[f"TTYPE{i}"] for i in range(1, h["TFIELDS"] + 1)]
    assert h[f"TLMAX{names.index('RAWX') + 1}"] == 19
    assert h[f"TLMAX{names.index('RAWY') + 1}"] == 15
    assert sorted(back["STATUS"].tolist()) == [0, 1, 4]


def test_framecube_input_copied_and_mask_none_accepted():
    cube = as_energy_cube(np.ones((2, 6, 6)) * u.eV)
    again = as_energy_cube(cube)
    assert again.data is not cube.data and again.mask is not cube.mask
    np.testing.assert_array_equal(again.data, cube.data)
    bare = FrameCube(np.ones((1, 6, 6), np.float32), None, None, None, True)
    out = as_energy_cube(bare)
    assert out.mask.shape == (1, 6, 6) and not out.mask.any() and out.was_2d
    with pytest.raises(ValueError, match="frames.*at least 5 x 5"):
        as_energy_cube(FrameCube(np.ones((1, 4, 6), np.float32), None, None, None, False))


def test_float32_ev_input_is_a_read_only_view_and_never_modified():
    import astropy.units as u
    from xcrfilter.io.frames import as_energy_cube
    values = np.zeros((2, 8, 8), np.float32)
    values[0, 3, 3] = 500.0
    q = values * u.eV
    cube = as_energy_cube(q)
    assert np.shares_memory(cube.data, q.value) and not cube.data.flags.writeable
    with pytest.raises(ValueError):
        cube.data[0, 0, 0] = 1.0
    # a NaN forces a copy: the input keeps its NaN, the cube has 0 and a mask
    q2 = q.copy()
    q2[1, 2, 2] = np.nan * u.eV
    with pytest.warns(Warning, match="non-finite"):
        cube2 = as_energy_cube(q2)
    assert not np.shares_memory(cube2.data, q2.value)
    assert np.isnan(q2[1, 2, 2].value) and cube2.data[1, 2, 2] == 0 and cube2.mask[1, 2, 2]


def test_adu_offset_keyword_is_subtracted(tmp_path):
    import astropy.units as u
    from xcrfilter.io.frames import as_energy_cube
    adu = np.full((1, 6, 6), 100.0, np.float32)
    adu[0, 2, 2] = 100.0 + 250.0
    hdu = fits.PrimaryHDU(adu)
    hdu.header["BUNIT"] = "adu"
    hdu.header["GAIN"] = 4.0
    hdu.header["ADUOFFS"] = 100.0
    path = tmp_path / "adu.fits"
    hdu.writeto(path)
    cube = as_energy_cube(str(path))
    assert cube.data[0, 2, 2] == pytest.approx(1000.0) and cube.data[0, 0, 0] == 0.0
    assert cube.data.dtype == np.float32
    assert u.Quantity(cube.data[0, 2, 2], u.eV) == 1 * u.keV
