"""Tests of the self-anti-coincidence (SAC) filter on hand-built frames."""
import argparse

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable

from xcrfilter.filters import sac
from xcrfilter.filters.sac import find_tracks, sac_filter, track_mask


def _frames():
    """Two 64x64 frames (eV): frame 0 holds a horizontal track on row 30,
    columns 10..29 (20 pixels of 5 keV), frame 1 holds no track."""
    frames = np.zeros((2, 64, 64), np.float32)
    frames[0, 30, 10:30] = 5000.0
    return frames


def _events(rows, frame=0):
    n = len(rows)
    return QTable({"FRAME": np.full(n, frame, np.int32),
                   "RAWX": np.array([c for _, c in rows], np.int32),
                   "RAWY": np.array([r for r, _ in rows], np.int32),
                   "ENERGY": np.full(n, 1000.0, np.float32) * u.eV,
                   "STATUS": np.zeros(n, np.int32)})


def test_event_at_r_minus_1_and_r_plus_1():
    R = 6
    frames = _frames()
    # below the track: distance = row offset; beyond its end: column offset
    ev = _events([(30 + R - 1, 20), (30 + R + 1, 20), (30, 29 + R - 1), (30, 29 + R + 1),
                  (30 + R, 20), (30, 15)])
    out = sac_filter(frames * u.eV, ev, radius=R)
    ccd = track_mask(frames * u.eV)
    flagged = (out["STATUS"] & (1 << 4)) > 0
    assert flagged.tolist() == [True, False, True, False, True, True]
    np.testing.assert_allclose(out["SAC_DIST"], [R - 1, R + 1, R - 1, R + 1, R, 0])
    assert out.meta["SACRAD"] == R
    assert out.meta["SACNTRK"] == 1 and out.meta["SACNEVT"] == 4
    assert ccd.mask.sum() == 20 and ccd.header["SACNTRK"] == 1 and ccd.unit == u.eV
    assert ev["STATUS"].sum() == 0  # input not modified


def test_tracks_do_not_cross_frames():
    frames = _frames()
    ev = _events([(30, 20), (31, 20)], frame=1)  # same place, other frame
    out = sac_filter(frames * u.eV, ev, radius=50)
    assert out["STATUS"].tolist() == [0, 0]
    assert np.isinf(out["SAC_DIST"]).all()


def test_track_criteria_energy_and_size():
    frames = np.zeros((3, 32, 32), np.float32)
    frames[0, 5, 5:9] = 3000.0          # 4 pixels, 12 keV -> track by energy
    frames[1, 5, 5:17] = 200.0          # 12 pixels, 2.4 keV -> track by size
    frames[2, 5:7, 5:7] = 2000.0        # 2x2, 8 keV -> X-ray, not a track
    frames[2, 20, 20] = 60.0            # below split threshold
    mask, n = find_tracks(frames * u.eV)
    assert n.tolist() == [1, 1, 0]
    assert mask[0].sum() == 4 and mask[1].sum() == 12 and mask[2].sum() == 0
    mask, n = find_tracks(frames * u.eV, track_energy=20 * u.keV, track_size=20)
    assert n.tolist() == [0, 0, 0]
    # diagonal neighbours belong to the same island (8-connectivity)
    f = np.zeros((1, 16, 16), np.float32)
    idx = np.arange(2, 14)
    f[0, idx, idx] = 1000.0
    assert find_tracks(f * u.eV)[1].tolist() == [1]


def test_events_only_mode():
    ev = _events([(10, 10), (10, 14), (10, 25)])
    ev["ENERGY"] = [50000.0, 1000.0, 1000.0] * u.eV
    out = sac_filter(ev, radius=5)
    assert ((out["STATUS"] & 16) > 0).tolist() == [True, True, False]
    assert out.meta["SACMODE"] == "events"


def test_plugin_and_bad_input():
    parser = argparse.ArgumentParser()
    sac.FILTER.add_cli_options(parser.add_argument_group("sac"))
    opts = sac.FILTER.options_from_args(parser.parse_args(["--sac-radius", "3",
                                                           "--sac-track-energy", "12keV"]))
    assert opts["radius"] == 3.0 and opts["track_energy"] == 12 * u.keV
    # bare numbers are eV, like every energy option
    bare = sac.FILTER.options_from_args(parser.parse_args(["--sac-track-energy", "12000"]))
    assert bare["track_energy"] == 12 * u.keV
    from collections import namedtuple
    Cube = namedtuple("Cube", ["data", "mask", "header", "filenames", "was_2d"])
    frames = _frames()
    ev = _events([(33, 20), (37, 20)])
    out = sac.pipeline_step(Cube(frames, np.zeros(frames.shape, bool), None, [], False), ev,
                            **opts)
    assert out["STATUS"].tolist() == [16, 0]
    with pytest.raises(ValueError, match="radius"):
        sac_filter(frames * u.eV, ev, radius=-1)
    with pytest.raises(TypeError, match="track_energy"):
        sac_filter(frames * u.eV, ev, track_energy=10000.0)
    with pytest.raises(ValueError, match="outside"):
        sac_filter(frames * u.eV, _events([(70, 3)]))


def test_rerun_replaces_bit_and_header():
    """R = 20 then R = 2: bit 4 only on events within 2 px, header SACRAD = 2."""
    frames = _frames()
    ev = _events([(31, 20), (32, 20), (38, 20), (45, 20)])  # 1, 2, 8, 15 px from the track
    ev["STATUS"] = np.array([0, 1, 1 << 5, 0], np.int32)  # other filters' bits are kept
    wide = sac_filter(frames * u.eV, ev, radius=20)
    assert ((wide["STATUS"] & 16) > 0).tolist() == [True, True, True, True]
    narrow = sac_filter(frames * u.eV, wide, radius=2)
    assert ((narrow["STATUS"] & 16) > 0).tolist() == [True, True, False, False]
    assert narrow["STATUS"].tolist() == [16, 17, 32, 0]
    assert narrow.meta["SACRAD"] == 2 and narrow.meta["SACNEVT"] == 2
    assert narrow.colnames.count("SAC_DIST") == 1
    assert ((wide["STATUS"] & 16) > 0).all()  # the first result is not modified
    # events-only mode too
    ev["ENERGY"] = [20000.0, 1000.0, 1000.0, 1000.0] * u.eV
    again = sac_filter(sac_filter(ev, radius=20), radius=2)
    assert ((again["STATUS"] & 16) > 0).tolist() == [True, True, False, False]


def test_events_found_when_not_given_and_missing_columns():
    frames = _frames()
    frames[0, 33, 20] = 1000.0   # an X-ray 3 px below the track
    frames[1, 40, 40] = 1000.0   # an X-ray in the empty frame
    out = sac_filter(frames * u.eV, radius=5)
    assert isinstance(out, QTable)
    xray = out[out["ENERGY"] < 2 * u.keV]
    assert len(xray) == 2
    assert ((xray["STATUS"] & 16) > 0).tolist() == [True, False]
    with pytest.raises(ValueError, match=r"column\(s\) \['STATUS'\]"):
        sac_filter(frames * u.eV, _events([(3, 3)])[["FRAME", "RAWX", "RAWY", "ENERGY"]])
    with pytest.raises(ValueError, match="ENERGY"):
        sac_filter(_events([(3, 3)])[["FRAME", "RAWX", "RAWY", "STATUS"]])
    nan = _events([(3, 3)])
    nan["ENERGY"][0] = np.nan * u.eV
    with pytest.raises(ValueError, match="NaN"):
        sac_filter(nan)
