"""The ``xcrfilter filter`` command and the pipeline on a FITS cube of hand-built islands."""
import hashlib

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

from xcrfilter.cli.argtypes import parse_energy
from xcrfilter.cli.main import main
from xcrfilter.io.eventfile import read_events
from xcrfilter.pipeline import parse_methods, run_pipeline


def _cube():
    rng = np.random.default_rng(7)
    cube = rng.normal(0.0, 25.55, (3, 32, 32)).astype(np.float32)
    # frame 0: a single (accepted) and a diagonal double (bit 0)
    cube[0, 8, 8] = 1500.0
    cube[0, 20, 20], cube[0, 21, 21] = 2000.0, 400.0
    # frame 1: an L-triple (accepted) and a double with an outer-ring pixel (bit 1)
    cube[1, 10, 10], cube[1, 10, 11], cube[1, 11, 10] = 3000.0, 500.0, 450.0
    cube[1, 22, 22], cube[1, 22, 23], cube[1, 24, 20] = 1200.0, 300.0, 200.0
    # frame 2: a 12 keV single (bit 2)
    cube[2, 15, 15] = 12000.0
    return cube


@pytest.fixture
def cube_file(tmp_path):
    path = tmp_path / "frames.fits"
    hdu = fits.PrimaryHDU(_cube())
    hdu.header["BUNIT"] = "eV"
    hdu.header["OBJECT"] = "test islands"
    hdu.writeto(path)
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_filter_cli_sets_status_bits(cube_file, tmp_path, capsys):
    before = _digest(cube_file)
    out = tmp_path / "events.fits"
    mask = tmp_path / "mask.fits"
    rc = main(["filter", str(cube_file), "--method", "vfaint", "-o", str(out),
               "--mask-output", str(mask), "-q"])
    assert rc == 0
    assert _digest(cube_file) == before            # input never modified
    ev = read_events(out)
    got = {(int(r["FRAME"]), int(r["RAWY"]), int(r["RAWX"])): int(r["STATUS"]) for r in ev}
    assert got == {(0, 8, 8): 0, (0, 20, 20): 1, (1, 10, 10): 0, (1, 22, 22): 2,
                   (2, 15, 15): 4}
    assert ev.meta["EVTTHR"] == 260.0 and ev.meta["MIPTHR"] == 10000.0
    assert str(ev["ENERGY"].unit) == "eV"
    with fits.open(mask) as hdul:
        m = hdul["MASK"].data.astype(bool)
    # 3x3 of the three rejected events, clipped to nothing at the frame edges
    assert m.shape == (3, 32, 32) and m.sum() == 27
    assert m[0, 20, 20] and not m[0, 8, 8]
    printed = capsys.readouterr().out
    assert "5 events written" in printed


def test_filter_cli_thresholds_and_errors(cube_file, tmp_path, capsys):
    out = tmp_path / "ev.fits"
    rc = main(["filter", str(cube_file), "-o", str(out), "-q",
               "--mip-threshold", "15keV", "--event-threshold", "1.6keV"])
    assert rc == 0
    ev = read_events(out)
    assert sorted(ev["ENERGY"].to_value(u.eV).round()) == [2400.0, 3950.0, 12000.0]
    assert np.all(ev["STATUS"][ev["ENERGY"] > 10 * u.keV] == 0)
    # existing output without --overwrite, and an input used as output
    assert main(["filter", str(cube_file), "-o", str(out), "-q"]) == 1
    assert main(["filter", str(cube_file), "-o", str(cube_file), "-q", "--overwrite"]) == 1
    assert main(["filter", str(tmp_path / "missing.fits"), "-o", str(tmp_path / "x.fits"),
                 "-q"]) == 1
    assert main(["filter", str(cube_file), "-o", str(tmp_path / "y.fits"), "-q",
                 "--split-threshold", "300eV"]) == 1
    err = capsys.readouterr().err
    assert "exists" in err and "never modified" in err and "split_threshold" in err
    with pytest.raises(SystemExit):
        main(["filter", str(cube_file), "-o", str(out), "--event-threshold", "260s"])


def test_parse_energy():
    assert parse_energy("0.26keV") == 260 * u.eV
    assert parse_energy("80") == 80 * u.eV
    with pytest.raises(Exception, match="energy"):
        parse_energy("3 m")


def test_pipeline_chunking_is_invisible():
    cube = _cube() * u.eV
    one = run_pipeline(cube, "vfaint", chunk_frames=10)
    many = run_pipeline(cube, "vfaint", chunk_frames=1)
    for col in ("FRAME", "RAWX", "RAWY", "STATUS", "GRADE"):
        assert np.array_equal(one[col], many[col])
    assert many.meta["NFRAMES"] == 3
    assert any("chunks" in h for h in many.meta["HISTORY"])


def test_parse_methods():
    assert parse_methods("vfaint, vfaint") == ["vfaint"]
    assert "vfaint" in parse_methods("all")
    with pytest.raises(ValueError, match="unknown"):
        parse_methods("vfaint,magic")
    with pytest.raises(ValueError, match="at least one"):
        parse_methods(" , ")


def test_filter_cli_all_methods_one_pass(cube_file, tmp_path):
    """--method all fills every STATUS bit and PROB_CR in one pass, and every
    header card fits the FITS standard (no truncation warning)."""
    import warnings

    from astropy.io.fits.verify import VerifyWarning

    from xcrfilter.pipeline import available_methods
    out = tmp_path / "all.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("error", VerifyWarning)
        assert main(["filter", str(cube_file), "--method", "all", "-o", str(out), "-q"]) == 0
    ev = read_events(out)
    methods = available_methods()
    assert ev.meta["FILTERS"].split(",") == methods
    vf = {(int(r["FRAME"]), int(r["RAWY"]), int(r["RAWX"])): int(r["STATUS"]) & 7 for r in ev}
    assert vf == {(0, 8, 8): 0, (0, 20, 20): 1, (1, 10, 10): 0, (1, 22, 22): 2,
                  (2, 15, 15): 4}
    if "cam" in methods:
        in_band = (ev["ENERGY"] >= 0.3 * u.keV) & (ev["ENERGY"] < 10 * u.keV)
        prob = np.asarray(ev["PROB_CR"])
        assert np.all(np.isfinite(prob[in_band])) and np.all(np.isnan(prob[~in_band]))
        assert np.all((prob[in_band] >= 0) & (prob[in_band] <= 1))
        assert "CAMSHA" in ev.meta and "CAMTHR" in ev.meta
    if "sac" in methods:
        assert "SACRAD" in ev.meta


def test_pipeline_sums_count_cards_over_chunks():
    cube = _cube()
    cube[1, 2:30, 5] = 900.0                 # a 28-pixel track in frame 1
    cube[2, 3:25, 28] = 900.0                # and one in frame 2
    one = run_pipeline(cube * u.eV, "vfaint,sac", chunk_frames=10)
    many = run_pipeline(cube * u.eV, "vfaint,sac", chunk_frames=1)
    # the two tracks and the 12 keV island (>= the 10 keV track energy)
    assert one.meta["SACNTRK"] == 3 == many.meta["SACNTRK"]
    assert one.meta["SACNEVT"] == many.meta["SACNEVT"] \
        == int(np.count_nonzero(many["STATUS"] & 16))
