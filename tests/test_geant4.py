"""Geant4 pixel-deposit tables: chip geometry, streamed frame groups, truth labels."""
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

from xcrfilter.cli.main import main
from xcrfilter.events import find_events
from xcrfilter.registry import STATUS_BITS
from xcrfilter.filters.vfaint import vfaint_filter
from xcrfilter.io.geant4 import (WFI_GEANT4, ChipGeometry, is_pixel_table, iter_frame_groups,
                                 iter_training_chunks)
from xcrfilter.io.geant4_filter import filter_pixel_table
from xcrfilter.io.eventfile import read_events

ORIGINS = ((100, 10), (130, 10))      # two 16 x 16 chips, ACTX/ACTY of their pixel (0, 0)
SHAPE = (16, 16)

# (frame, chip, row, column, keV, PRIMTYPE, PRIMID); PRIMTYPE 4 gamma (X-ray), 1 proton
DEPOSITS = [
    (0, 0, 5, 6, 1.5, 4, 11),          # X-ray single ...
    (0, 0, 5, 6, 0.2, 1, 14),          # ... with a smaller proton deposit on the same pixel
    (0, 1, 8, 8, 2.0, 1, 12),          # proton-induced double (split to +RAWX)
    (0, 1, 8, 9, 0.5, 1, 12),
    (3, 0, 0, 7, 1.0, 4, 15),          # X-ray single on the chip edge
    (3, 1, 3, 3, 20.0, 1, 13),         # minimum-ionising track
    (3, 1, 3, 4, 20.0, 1, 13),
    (3, 1, 3, 5, 20.0, 1, 13),
]
# (FRAME, chip, RAWY, RAWX): (ENERGY eV, STATUS, TRUTH, PRIMID, EDGE)
EXPECTED = {
    (0, 0, 5, 6): (1700.0, 0, 1, 11, False),
    (0, 1, 8, 8): (2500.0, 0, 2, 12, False),
    (3, 0, 0, 7): (1000.0, 0, 1, 15, True),
    (3, 1, 3, 3): (40000.0, 6, 2, 13, False),
}


def pixel_table(path, keywords=True, detid=None):
    d = np.array(DEPOSITS, dtype=float)
    chip = d[:, 1].astype(int)
    actx = np.array([ORIGINS[c][0] for c in chip]) + d[:, 3].astype(int)
    acty = np.array([ORIGINS[c][1] for c in chip]) + d[:, 2].astype(int)
    cols = [fits.Column("FRAME", "J", array=d[:, 0].astype(int)),
            fits.Column("DETID", "B", array=chip if detid is None else detid),
            fits.Column("ACTX", "I", array=actx), fits.Column("ACTY", "I", array=acty),
            fits.Column("ENERGY", "E", array=d[:, 4]),
            fits.Column("PRIMTYPE", "B", array=d[:, 5].astype(int)),
            fits.Column("PRIMID", "J", array=d[:, 6].astype(int)),
            fits.Column("PRIMENERGY", "E", array=np.full(len(d), 2.5))]
    table = fits.BinTableHDU.from_columns(cols)
    table.header["TEXPFRAM"] = (0.005, "Frame exposure time in sec")
    table.header["NFRAMES"] = 5
    if keywords:
        table.header["CHIPROWS"], table.header["CHIPCOLS"] = SHAPE
        for i, (x0, y0) in enumerate(ORIGINS):
            table.header[f"CHIPX{i}"], table.header[f"CHIPY{i}"] = x0, y0
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    return path


def _filter(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return filter_pixel_table(path, "vfaint", **kwargs)


def _by_key(ev):
    return {(int(r["FRAME"]), int(r["DETID"]), int(r["RAWY"]), int(r["RAWX"])): r for r in ev}


def test_pixel_table_events_truth_and_columns(tmp_path):
    path = pixel_table(tmp_path / "pix.fits")
    assert is_pixel_table(path)
    ev = _filter(path)
    rows = _by_key(ev)
    assert set(rows) == set(EXPECTED)
    for key, (energy, status, truth, primid, edge) in EXPECTED.items():
        r = rows[key]
        assert r["ENERGY"].to_value(u.eV) == pytest.approx(energy, rel=1e-6), key
        assert (r["STATUS"], r["TRUTH"], r["PRIMID"], bool(r["EDGE"])) == \
            (status, truth, primid, edge), key
        x0, y0 = ORIGINS[key[1]]
        assert (r["ACTX"], r["ACTY"]) == (key[3] + x0, key[2] + y0)
        assert r["PRIMENERGY"] == pytest.approx(2.5)
    assert rows[(0, 1, 8, 8)]["PATTERN"] == 2
    np.testing.assert_allclose(ev["TIME"].to_value(u.s), 0.005 * np.asarray(ev["FRAME"]))
    assert ev.meta["EXPOSURE"] == pytest.approx(0.025) and ev.meta["NFRAMES"] == 5
    assert ev.meta["CHIPX1"] == 130 and ev.meta["NCHIPS"] == 2
    assert any("read in keV" in h for h in ev.meta["HISTORY"])


def test_pixel_table_matches_dense_frames(tmp_path):
    """The streamed result equals find_events + vfaint on dense chip cubes built here."""
    path = pixel_table(tmp_path / "pix.fits")
    ev = _by_key(_filter(path, edge_status=True))
    for chip in (0, 1):
        cube = np.zeros((5,) + SHAPE, np.float32)
        for f, c, y, x, kev, _, _ in DEPOSITS:
            if c == chip:
                cube[f, y, x] += kev * 1000.0
        dense = vfaint_filter(find_events(cube * u.eV, edge_status=True))
        for r in dense:
            got = ev[(int(r["FRAME"]), chip, int(r["RAWY"]), int(r["RAWX"]))]
            assert got["STATUS"] == r["STATUS"]
            np.testing.assert_allclose(got["PHAS"].value, r["PHAS"].value, rtol=1e-6)
    assert ev[(3, 0, 0, 7)]["STATUS"] == 1 << STATUS_BITS["EDGE"]


def test_groups_stream_and_give_the_same_events(tmp_path):
    path = pixel_table(tmp_path / "pix.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        groups = list(iter_frame_groups(path, group_frames=1))
    assert len(groups) == 4          # 2 frames with signal x 2 chips, one frame at a time
    assert all(cube.data.shape == (1,) + SHAPE for _, _, cube, _ in groups)
    assert [int(ids[0]) for _, ids, _, _ in groups] == [0, 0, 3, 3]
    one = _filter(path, group_frames=1)
    many = _filter(path, group_frames=16)
    for name in ("FRAME", "DETID", "RAWX", "RAWY", "STATUS", "TRUTH"):
        np.testing.assert_array_equal(np.asarray(one[name]), np.asarray(many[name]))


def test_training_chunks_labels(tmp_path):
    path = pixel_table(tmp_path / "pix.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chunks = list(iter_training_chunks(path))
    assert len(chunks) == 2
    (f0, l0), (f1, l1) = chunks
    assert f0.shape == l0.shape == (2,) + SHAPE and l0.dtype == np.uint8
    assert l0[0, 5, 6] == 1 and f0[0, 5, 6] == pytest.approx(1700.0)   # X-ray wins
    assert l0[1, 0, 7] == 1
    assert l1[0, 8, 8] == l1[0, 8, 9] == 2 and (l1[1, 3, 3:6] == 2).all()
    assert int((l0 > 0).sum() + (l1 > 0).sum()) == 7
    from xcrfilter.ml.stage2 import frame_sources
    names, it = frame_sources([path])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert sum(len(fr) for fr, _ in it) == 4 and names == [str(path)]


def test_geometry_spec_keywords_and_checks(tmp_path):
    geo = ChipGeometry.parse("16x16:100,10;130,10")
    assert geo.origins == ORIGINS and geo.shape == SHAPE and geo.ids == (0, 1)
    assert ChipGeometry.parse("512x512:3=1,2").ids == (3,)
    assert ChipGeometry.parse("wfi-geant4") is WFI_GEANT4
    spec = tmp_path / "chips.txt"
    spec.write_text("# WFI test\n16x16:100,10;130,10\n")
    assert ChipGeometry.parse(spec) == geo
    with pytest.raises(ValueError, match="ROWSxCOLS"):
        ChipGeometry.parse("four chips")
    np.testing.assert_array_equal(geo.locate([100, 115, 116, 130, 99], [10, 25, 10, 10, 10]),
                                  [0, 0, -1, 1, -1])
    path = pixel_table(tmp_path / "nokw.fits", keywords=False)
    with pytest.raises(ValueError, match="chip geometry is unknown"):
        _filter(path)
    assert len(_filter(path, geometry="16x16:100,10;130,10")) == 4
    wrong = pixel_table(tmp_path / "wrong.fits", detid=np.ones(len(DEPOSITS), int))
    with pytest.raises(ValueError, match="check the chip geometry"):
        _filter(wrong)


def test_wfi_layout_recognised_without_keywords(tmp_path):
    # two deposits on chips 1 and 3 of the WFI Geant4 layout, DETID as that layout
    cols = [fits.Column("FRAME", "J", array=[0, 0]), fits.Column("DETID", "B", array=[1, 3]),
            fits.Column("ACTX", "I", array=[700, 100]), fits.Column("ACTY", "I", array=[700, 100]),
            fits.Column("ENERGY", "E", unit="keV", array=[1.0, 2.0])]
    path = tmp_path / "wfi.fits"
    fits.BinTableHDU.from_columns(cols).writeto(path)
    ev = filter_pixel_table(path, "vfaint", frame_time=5 * u.ms)
    assert sorted(zip(np.asarray(ev["DETID"]).tolist(), np.asarray(ev["RAWX"]).tolist(),
                      np.asarray(ev["RAWY"]).tolist())) == [(1, 68, 90), (3, 41, 48)]
    assert ev.meta["CHIPX2"] == 59 and ev["ENERGY"].unit == u.eV


def test_filter_command_on_a_pixel_table(tmp_path):
    path = pixel_table(tmp_path / "pix.fits")
    out = tmp_path / "ev.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["filter", str(path), "-o", str(out), "-q", "--phas-unit", "keV"]) == 0
    ev = read_events(out)
    assert len(ev) == 4 and "TRUTH" in ev.colnames and "ACTX" in ev.colnames
    with fits.open(out) as hdul:
        assert hdul["GTI"].data["STOP"][0] == pytest.approx(0.025)


@pytest.mark.parametrize("extra, expected", [
    (["-m", "cam", "--cam-output", "{cam}"], "--cam-output needs image frames"),
    (["--mask-output", "{cam}"], "--mask-output needs image frames"),
])
def test_frame_outputs_refused_for_a_pixel_table_before_any_work(
        tmp_path, capsys, monkeypatch, extra, expected):
    import xcrfilter.io.geant4_filter

    def no_work(*args, **kwargs):
        raise AssertionError("the pixel table was filtered before the options were checked")

    monkeypatch.setattr(xcrfilter.io.geant4_filter, "filter_pixel_table", no_work)
    path = pixel_table(tmp_path / "pix.fits")
    argv = ["filter", str(path), "-o", str(tmp_path / "ev.fits"), "-q", "--phas-unit", "keV"]
    assert main(argv + [a.format(cam=tmp_path / "cam.fits") for a in extra]) == 1
    assert expected in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pix.fits"]


def test_unit_warning_names_the_option(tmp_path):
    path = pixel_table(tmp_path / "pix.fits")
    with pytest.warns(Warning, match="ENERGY has no TUNIT: read in keV.*give --phas-unit"):
        filter_pixel_table(path, "vfaint")
