"""Event finding, grades and the very-faint-mode filter on hand-built islands."""
import itertools

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import CCDData

from xcrfilter.events import find_events
from xcrfilter.grades import is_accepted_shape
from xcrfilter.grades import GRADE_LUT, NEIGHBOUR_BITS, asca_grade, pattern_code
from xcrfilter.filters.vfaint import vfaint_filter

# (dy, dx) of each neighbour bit; dy = +1 is +RAWY ("up")
_OFFSETS = {1: (-1, -1), 2: (-1, 0), 4: (-1, 1), 8: (0, -1), 16: (0, 1),
            32: (1, -1), 64: (1, 0), 128: (1, 1)}


def _frame_with_pattern(code, centre=1000.0, split_pixel=300.0, shape=(15, 15)):
    frame = np.zeros(shape, dtype=np.float32)
    cy, cx = shape[0] // 2, shape[1] // 2
    frame[cy, cx] = centre
    for bit, (dy, dx) in _OFFSETS.items():
        if code & bit:
            frame[cy + dy, cx + dx] = split_pixel
    return frame, cy, cx


def _expected_asca(code):
    """Independent statement of the ASCA grade table (Chandra ACIS fltgrade lists)."""
    g0 = {0}
    g1 = {1, 4, 5, 32, 128, 33, 36, 37, 129, 132, 133, 160, 161, 164, 165}
    g2 = {2, 34, 130, 162, 64, 65, 68, 69}
    g3 = {8, 12, 136, 140}
    g4 = {16, 17, 48, 49}
    g6 = {72, 76, 104, 108, 80, 81, 208, 209, 18, 22, 50, 54, 10, 11, 138, 139}
    for g, codes in enumerate((g0, g1, g2, g3, g4)):
        if code in codes:
            return g
    if code in g6:
        return 6
    return None  # 5 or 7: checked structurally below


ACCEPTED = {0, 2, 8, 16, 64,            # single, four doubles
            10, 18, 72, 80,             # L-shaped triples
            11, 22, 104, 208}           # square quads (enclosed corner active)


def test_grade_table_matches_asca_lists():
    for code in range(256):
        expected = _expected_asca(code)
        if expected is not None:
            assert GRADE_LUT[code] == expected, code
    # grades 5 and 7 partition the rest: 5 = exactly one side + touching corner
    sides = {2, 8, 16, 64}
    touch = {2: 1 | 4, 64: 32 | 128, 8: 1 | 32, 16: 4 | 128}
    for code in range(256):
        if _expected_asca(code) is None:
            s = [b for b in sides if code & b]
            is5 = len(s) == 1 and bool(code & touch[s[0]])
            assert GRADE_LUT[code] == (5 if is5 else 7), code
    counts = np.bincount(GRADE_LUT, minlength=8)
    assert counts.sum() == 256
    assert list(counts[[0, 1, 2, 3, 4, 6]]) == [1, 15, 8, 4, 4, 16]


@pytest.mark.parametrize("code", range(256))
def test_every_3x3_pattern_grade_and_bit0(code):
    frame, cy, cx = _frame_with_pattern(code)
    events = vfaint_filter(frame * u.eV)
    assert len(events) == 1
    ev = events[0]
    assert (ev["RAWY"], ev["RAWX"], ev["FRAME"]) == (cy, cx, 0)
    assert ev["GRADE"] == GRADE_LUT[code]
    n_split = bin(code).count("1")
    assert ev["ENERGY"] == (1000.0 + 300.0 * n_split) * u.eV
    bit0 = bool(ev["STATUS"] & 1)
    assert bit0 == (code not in ACCEPTED)
    assert not (ev["STATUS"] & 4)       # 1.0-3.4 keV is a valid energy


def test_accepted_shapes_are_the_paper_13():
    assert set(np.flatnonzero([is_accepted_shape(c) for c in range(256)])) == ACCEPTED
    assert set(asca_grade(sorted(ACCEPTED))) == {0, 2, 3, 4, 6}


def test_pattern_code_orientation():
    # PHAS row-major with row 0 = RAWY - 2: index 17 is (RAWY + 1, RAWX) = "up"
    active = np.zeros((1, 25), bool)
    active[0, 17] = True
    assert pattern_code(active)[0] == 64 == NEIGHBOUR_BITS[17]


def test_outer_ring_rejects_non_single_only():
    frame = np.zeros((11, 11), np.float32)
    frame[5, 5], frame[5, 6] = 2000.0, 500.0        # double
    frame[7, 3] = 100.0                              # outer ring, above split
    ev = vfaint_filter(frame * u.eV)
    assert len(ev) == 1 and ev["STATUS"][0] == 2     # bit 1 only
    frame[5, 6] = 0.0                                 # now a single
    ev = vfaint_filter(frame * u.eV)
    assert ev["STATUS"][0] == 0
    frame[5, 6] = 500.0
    frame[7, 3] = 79.0                                # below split: not active
    assert vfaint_filter(frame * u.eV)["STATUS"][0] == 0


def test_energy_bit_and_mip_threshold():
    frame = np.zeros((3, 9, 9), np.float32)
    frame[0, 4, 4] = 9999.0
    frame[1, 4, 4] = 10000.0                 # at the MIP threshold: invalid
    frame[2, 4, 4] = 300.0
    frame[2, 4, 5] = 70.0                    # below split, not summed
    ev = vfaint_filter(frame * u.eV)
    assert list(ev["STATUS"]) == [0, 4, 0]
    assert ev["ENERGY"][2] == 300.0 * u.eV
    ev = vfaint_filter(frame * u.eV, mip_threshold=20 * u.keV)
    assert list(ev["STATUS"]) == [0, 0, 0]


def test_tie_rule_first_pixel_in_raster_order_wins():
    frame = np.zeros((9, 9), np.float32)
    frame[4, 4] = frame[4, 5] = 500.0
    frame[5, 4] = 500.0
    ev = find_events(frame * u.eV)
    assert len(ev) == 1
    assert (ev["RAWY"][0], ev["RAWX"][0]) == (4, 4)
    assert ev["ENERGY"][0] == 1500.0 * u.eV


def test_event_threshold_is_inclusive_and_local_maxima_only():
    frame = np.zeros((12, 12), np.float32)
    frame[3, 3] = 260.0
    frame[8, 8] = 259.9
    frame[3, 8], frame[3, 9] = 400.0, 300.0    # 300 is not a maximum
    ev = find_events(frame * u.eV)
    assert sorted(zip(ev["RAWY"], ev["RAWX"])) == [(3, 3), (3, 8)]


def test_phas_layout_and_edge_flag():
    frame = np.zeros((8, 10), np.float32)
    frame[0, 9] = 1000.0           # corner of the frame
    frame[1, 9] = 200.0            # up
    frame[0, 8] = 150.0            # left
    ev = find_events(frame * u.eV)
    assert len(ev) == 1 and bool(ev["EDGE"][0])
    phas = ev["PHAS"][0].to_value(u.eV).reshape(5, 5)
    assert phas[2, 2] == 1000.0 and phas[3, 2] == 200.0 and phas[2, 1] == 150.0
    assert np.all(phas[:2, :] == 0) and np.all(phas[:, 3:] == 0)
    assert ev["GRADE"][0] == 6 and ev["STATUS"][0] == 0
    inner = np.zeros((8, 10), np.float32)
    inner[4, 4] = 1000.0
    assert not find_events(inner * u.eV)["EDGE"][0]


def test_masked_and_nan_pixels_never_seed_or_join():
    data = np.zeros((10, 10), np.float32)
    data[5, 5] = 1000.0
    data[5, 6] = 5000.0          # masked: would otherwise be the maximum
    data[2, 2] = np.nan
    data[2, 3] = 700.0
    mask = np.zeros_like(data, bool)
    mask[5, 6] = True
    ev = find_events(CCDData(data, unit="eV", mask=mask))
    got = {(int(r["RAWY"]), int(r["RAWX"])): float(r["ENERGY"].value) for r in ev}
    assert got == {(5, 5): 1000.0, (2, 3): 700.0}
    assert ev.meta["NMASKED"] == 2


def test_cube_frames_are_independent_and_units_converted():
    cube = np.zeros((2, 9, 9), np.float32)
    cube[0, 4, 4] = 1.0          # keV
    cube[1, 4, 4] = 0.5
    cube[1, 4, 5] = 0.1
    ev = find_events(cube * u.keV)
    assert list(ev["FRAME"]) == [0, 1]
    np.testing.assert_allclose(ev["ENERGY"].to_value(u.eV), [1000.0, 600.0], rtol=1e-6)
    electrons = find_events(cube * 1000 / 3.65 * u.electron)
    np.testing.assert_allclose(electrons["ENERGY"].to_value(u.eV), [1000.0, 600.0],
                               rtol=1e-5)


def test_vfaint_event_list_mode_matches_frame_mode():
    rng = np.random.default_rng(3)
    cube = rng.normal(0, 25.55, (4, 40, 40)).astype(np.float32)
    for k, (y, x) in enumerate(itertools.product((8, 20, 31), (9, 25))):
        cube[k % 4, y, x] += 800 + 400 * k
        cube[k % 4, y, x + 1] += 150 * (k % 3)
        cube[k % 4, y + 2, x - 2] += 120 * (k % 2)
    from_frames = vfaint_filter(cube * u.eV)
    stripped = from_frames.copy()
    stripped["STATUS"] = 0
    from_list = vfaint_filter(stripped)
    assert np.array_equal(from_list["STATUS"], from_frames["STATUS"])
    assert np.any(from_frames["STATUS"] != 0) and np.any(from_frames["STATUS"] == 0)
    # the input table is not modified
    assert np.all(stripped["STATUS"] == 0)


def test_vfaint_keeps_other_bits_and_every_row():
    frame = np.zeros((9, 9), np.float32)
    frame[4, 4] = 1000.0
    frame[3, 3] = 300.0          # diagonal: grade 1, bit 0
    ev = find_events(frame * u.eV)
    ev["STATUS"] = np.int32(1 << 4)
    out = vfaint_filter(ev)
    assert len(out) == len(ev)
    assert out["STATUS"][0] == (1 << 4) | 1


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(event_threshold=260), TypeError, "event_threshold"),
    (dict(split_threshold=300 * u.eV), ValueError, "split_threshold"),
    (dict(mip_threshold=200 * u.eV), ValueError, "mip_threshold"),
    (dict(event_threshold=260 * u.s), u.UnitConversionError, "event_threshold"),
    (dict(event_threshold=-5 * u.eV), ValueError, "event_threshold"),
])
def test_bad_thresholds(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        find_events(np.zeros((9, 9)) * u.eV, **kwargs)


def test_vfaint_rejects_table_without_phas():
    from astropy.table import QTable
    with pytest.raises(ValueError, match="PHAS"):
        vfaint_filter(QTable({"ENERGY": [1.0] * u.keV}))


# EPIC-pn PATTERN of the 13 accepted codes, numbered as in the Athena WFI Geant4
# background team's event files (0 single, 1-4 doubles up/right/down/left,
# 5-8 L-triples, 9-12 quads)
EPIC_OF_ACCEPTED = {0: 0, 64: 1, 16: 2, 2: 3, 8: 4, 72: 5, 80: 6, 18: 7, 10: 8,
                    104: 9, 208: 10, 22: 11, 11: 12}


def test_epic_pattern_of_every_3x3_pattern():
    from xcrfilter.grades import epic_pattern
    for code in range(256):
        assert epic_pattern(code) == EPIC_OF_ACCEPTED.get(code, 13), code
    frame, cy, cx = _frame_with_pattern(64 | 8)           # up + left: L-triple 5
    ev = find_events(frame * u.eV)
    assert (ev["PATTERN"][0], ev["GRADE"][0]) == (5, 6)


def test_split_threshold_equal_to_event_threshold_is_allowed():
    frame = np.zeros((9, 9), np.float32)
    frame[4, 4], frame[4, 5] = 150.0, 100.0
    ev = vfaint_filter(frame * u.eV, event_threshold=100 * u.eV, split_threshold=100 * u.eV)
    assert len(ev) == 1 and ev["ENERGY"][0] == 250 * u.eV and ev["STATUS"][0] == 0
    with pytest.raises(ValueError, match="must not exceed"):
        find_events(frame * u.eV, event_threshold=100 * u.eV, split_threshold=101 * u.eV)


def test_strict_thresholds_use_greater_than():
    frame = np.zeros((11, 11), np.float32)
    frame[3, 3] = 100.0                        # exactly the event threshold
    frame[7, 7], frame[7, 8] = 500.0, 100.0    # split pixel exactly the split threshold
    kw = dict(event_threshold=100 * u.eV, split_threshold=100 * u.eV)
    loose = find_events(frame * u.eV, **kw)
    strict = find_events(frame * u.eV, **kw, strict=True)
    assert [(int(r["RAWY"]), int(r["RAWX"])) for r in loose] == [(3, 3), (7, 7)]
    assert [(int(r["RAWY"]), int(r["RAWX"])) for r in strict] == [(7, 7)]
    assert loose["ENERGY"][1] == 600 * u.eV and loose["PATTERN"][1] == 2
    assert strict["ENERGY"][0] == 500 * u.eV and strict["PATTERN"][0] == 0
    assert strict.meta["STRICTTH"] is True


def test_edge_status_bit_is_optional():
    from xcrfilter.registry import STATUS_BITS
    frame = np.zeros((12, 12), np.float32)
    frame[1, 6] = 1000.0                        # 5x5 island cut by the bottom edge
    frame[6, 6] = 1000.0
    off = find_events(frame * u.eV)
    on = find_events(frame * u.eV, edge_status=True)
    assert off["EDGE"].tolist() == [True, False] and off["STATUS"].tolist() == [0, 0]
    assert on["STATUS"].tolist() == [1 << STATUS_BITS["EDGE"], 0]
    # the VF filter recomputes bits 0-2 only: the EDGE bit stays
    assert vfaint_filter(on)["STATUS"].tolist() == [1 << STATUS_BITS["EDGE"], 0]


def test_event_positions_checked_against_the_cube():
    from astropy.table import Table
    from xcrfilter.events import event_positions
    ev = Table({"FRAME": [0, 2], "RAWY": [3, 0], "RAWX": [4, 9]})
    f, y, x = event_positions(ev, (3, 4, 10))
    assert f.tolist() == [0, 2] and y.tolist() == [3, 0] and x.tolist() == [4, 9]
    assert f.dtype == np.intp
    with pytest.raises(ValueError, match=r"outside the label cube \(3 frames of 4 x 9 pixels\)"):
        event_positions(ev, (3, 4, 9), "the label cube")
    with pytest.raises(ValueError, match="outside the frames"):
        event_positions(ev, (2, 4, 10))
    empty = Table({"FRAME": [], "RAWY": [], "RAWX": []})
    assert all(a.size == 0 for a in event_positions(empty, (0, 0, 0)))
