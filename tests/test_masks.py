"""Tests of xcrfilter.io.masks.mask_events on hand-built events."""
import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import CCDData
from astropy.table import QTable
from astropy.utils.exceptions import AstropyUserWarning

from xcrfilter.io.masks import event_pixel_mask, mask_events


def _events():
    t = QTable()
    t["FRAME"] = np.array([0, 0, 1, 1, 2], dtype=np.int32)
    t["RAWX"] = np.array([3, 0, 5, 9, 4], dtype=np.int32)
    t["RAWY"] = np.array([3, 0, 6, 7, 4], dtype=np.int32)
    # accepted, GRADE (bit 0), OUTER_RING (bit 1), CAM (bit 5), ENERGY (bit 2)
    t["STATUS"] = np.array([0, 1, 2, 32, 4], dtype=np.int32)
    return t


def _frames(shape=(3, 8, 10)):
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape) * u.eV


def _window(shape, f, x, y):
    m = np.zeros(shape, bool)
    m[f, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = True
    return m


def test_rejected_all_bits():
    frames = _frames()
    ccd = mask_events(frames, _events())
    assert isinstance(ccd, CCDData) and ccd.unit == u.eV
    np.testing.assert_array_equal(ccd.data, frames.value)
    expected = (_window(ccd.shape, 0, 0, 0) | _window(ccd.shape, 1, 5, 6)
                | _window(ccd.shape, 1, 9, 7) | _window(ccd.shape, 2, 4, 4))
    np.testing.assert_array_equal(ccd.mask, expected)
    # corner event clipped to 2x2; (5,6): rows 5-7 x cols 4-6 = 9 pixels;
    # (9,7) at the right and top edges of the 8x10 frame: rows 6-7 x cols 8-9
    assert ccd.mask[0].sum() == 4
    assert ccd.mask[1].sum() == 9 + 4
    assert ccd.meta["NMASKEV"] == 4
    assert ccd.meta["MASKWHCH"] == "rejected"


def test_accepted_and_all():
    ev = _events()
    acc = mask_events(_frames(), ev, which="accepted")
    np.testing.assert_array_equal(acc.mask, _window(acc.shape, 0, 3, 3))
    assert acc.mask.sum() == 9
    every = mask_events(_frames(), ev, which="all")
    rej = mask_events(_frames(), ev, which="rejected")
    np.testing.assert_array_equal(every.mask, acc.mask | rej.mask)


def test_bits_choose_filters():
    ev = _events()
    vf = mask_events(_frames(), ev, bits=["GRADE", "OUTER_RING"])
    expected = _window(vf.shape, 0, 0, 0) | _window(vf.shape, 1, 5, 6)
    np.testing.assert_array_equal(vf.mask, expected)
    cam = mask_events(_frames(), ev, bits=5)
    np.testing.assert_array_equal(cam.mask, _window(cam.shape, 1, 9, 7))
    # events rejected only by the CAM bit count as accepted for the VF bits
    acc = mask_events(_frames(), ev, which="accepted", bits=[0, 1])
    assert acc.meta["NMASKEV"] == 3


def test_2d_input_gives_2d_output_and_inputs_untouched():
    frame = np.zeros((8, 10), np.float32) * u.eV
    ev = QTable({"FRAME": [0], "RAWX": [4], "RAWY": [2], "STATUS": np.array([1], np.int32)})
    before = ev.copy()
    ccd = mask_events(frame, ev)
    assert ccd.shape == (8, 10) and ccd.mask.shape == (8, 10)
    assert ccd.mask[1:4, 3:6].all() and ccd.mask.sum() == 9
    assert np.all(ev["STATUS"] == before["STATUS"]) and ev.colnames == before.colnames


def test_no_events_and_bad_pixels():
    frames = _frames().value.copy()
    frames[1, 2, 2] = np.nan
    ev = _events()[:0]
    with pytest.warns(AstropyUserWarning, match="non-finite"):
        ccd = mask_events(frames * u.eV, ev)
    assert not ccd.mask.any()
    with pytest.warns(AstropyUserWarning, match="non-finite"):
        ccd = mask_events(frames * u.eV, ev, include_bad_pixels=True)
    assert ccd.mask.sum() == 1 and ccd.mask[1, 2, 2] and ccd.data[1, 2, 2] == 0


def test_event_pixel_mask_5x5():
    m = event_pixel_mask((1, 9, 9), [0], [4], [4], half_width=2)
    assert m.sum() == 25 and m[0, 2:7, 2:7].all()


def test_vectorised_many_events():
    rng = np.random.default_rng(1)
    n = 2000
    ev = QTable({"FRAME": rng.integers(0, 4, n), "RAWX": rng.integers(0, 64, n),
                 "RAWY": rng.integers(0, 64, n), "STATUS": np.ones(n, np.int32)})
    ev["STATUS"][::3] = 0
    ccd = mask_events(np.zeros((4, 64, 64)) * u.eV, ev)
    reference = np.zeros((4, 64, 64), bool)
    for f, x, y, s in zip(ev["FRAME"], ev["RAWX"], ev["RAWY"], ev["STATUS"]):
        if s:
            reference |= _window(reference.shape, f, x, y)
    np.testing.assert_array_equal(ccd.mask, reference)


# ---------------------------------------------------------------- bad input

def test_bad_which():
    with pytest.raises(ValueError, match="which must be one of"):
        mask_events(_frames(), _events(), which="cr")


def test_missing_columns():
    with pytest.raises(ValueError, match=r"events lacks column\(s\) \['RAWY'\]"):
        mask_events(_frames(), QTable({"FRAME": [0], "RAWX": [1]}))
    with pytest.raises(ValueError, match="events has no STATUS"):
        mask_events(_frames(), QTable({"FRAME": [0], "RAWX": [1], "RAWY": [1]}))


def test_events_not_table():
    with pytest.raises(TypeError, match="events must be an astropy Table"):
        mask_events(_frames(), {"FRAME": [0]})


def test_status_not_integer():
    ev = _events()
    ev["STATUS"] = ev["STATUS"].astype(float)
    with pytest.raises(TypeError, match=r"events\['STATUS'\] must be integer"):
        mask_events(_frames(), ev)


def test_event_outside_frames():
    ev = _events()
    ev["FRAME"][0] = 7
    with pytest.raises(ValueError, match=r"events\['FRAME'\] has values outside 0..2"):
        mask_events(_frames(), ev, which="all")
    ev = _events()
    ev["RAWX"][1] = 10
    with pytest.raises(ValueError, match=r"events\['RAWX'\]"):
        mask_events(_frames(), ev)


def test_unknown_bit_name():
    with pytest.raises(ValueError, match="bits: unknown STATUS bit name"):
        mask_events(_frames(), _events(), bits="XYZ")


def test_frames_bare_ndarray():
    with pytest.raises(TypeError, match="frames is a bare ndarray"):
        mask_events(np.zeros((3, 8, 10)), _events())
