"""``xcrfilter spectrum``: PHA spectra, RMF/ARF, background levels and regions.

Hand-built event files with known counts give the numbers; gammapy (the
``test`` extra) reads the products back as an OGIP client; fitsverify checks
every product.
"""
import os
import shutil

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import poisson_conf_interval
from astropy.table import QTable

from xcrfilter.cli.main import main
from xcrfilter.io.eventfile import write_events
from xcrfilter.io.spectra import band_channels, check_band, parse_combination

#: STATUS bits: vfaint 0-2, SAC 4
VF, SAC = 1, 16
#: (PI, STATUS, TRUTH, count): 2-7 keV is PI 400 .. 1399
ROWS = [(500, 0, 1, 7),       # accepted by all, X-ray, in 2-7 keV
        (1399, 0, 2, 2),      # accepted, CR, last channel of 2-7 keV
        (1400, 0, 2, 3),      # accepted, CR, above 7 keV (in 0.3-10 keV)
        (399, 0, 1, 4),       # accepted, X-ray, below 2 keV (in 0.3-10 keV)
        (800, VF, 2, 5),      # rejected by vfaint only
        (900, SAC, 2, 6),     # rejected by sac only
        (1000, VF | SAC, 2, 8),  # rejected by both
        (3000, 0, 2, 1)]      # accepted, 15 keV: in no band
NFRAMES, TIMEDEL, ROWS_, COLS = 400, 0.005, 32, 48


def _events(tmp_path, name="ev.fits", **cards):
    pi, status, truth, frame = [], [], [], []
    rng = np.random.default_rng(1)
    for p, s, t, n in ROWS:
        pi += [p] * n
        status += [s] * n
        truth += [t] * n
    n = len(pi)
    frame = rng.integers(0, NFRAMES, n)
    ev = QTable()
    ev["FRAME"] = frame.astype(np.int32)
    ev["RAWX"] = rng.integers(0, COLS, n).astype(np.int32)
    ev["RAWY"] = rng.integers(0, ROWS_, n).astype(np.int32)
    ev["ENERGY"] = (np.array(pi) * 5.0 + 2.5) * u.eV
    ev["PI"] = np.array(pi, dtype=np.int16)
    ev["STATUS"] = np.array(status, dtype=np.int32)
    ev["TRUTH"] = np.array(truth, dtype=np.int16)
    meta = dict(FILTERS="vfaint,sac", NFRAMES=NFRAMES, FRMROWS=ROWS_, FRMCOLS=COLS,
                TSTART=0.0, TIMEDEL=TIMEDEL, EXPOSURE=NFRAMES * TIMEDEL,
                TELESCOP="ATHENA", INSTRUME="WFI")
    meta.update(cards)
    ev.meta.update({k: v for k, v in meta.items() if v is not None})
    path = tmp_path / name
    write_events(ev, path)
    return path


def _spectrum(*argv):
    return main(["spectrum", *[str(a) for a in argv]])


def test_band_channels_and_combinations():
    assert band_channels(check_band(2 * u.keV, 7 * u.keV), {})[:2] == (400, 1399)
    assert band_channels(check_band(300 * u.eV, 10 * u.keV), {})[:2] == (60, 1999)
    # edges off the 5 eV grid: only whole channels
    lo, hi, e0, e1 = band_channels(check_band(2.002 * u.keV, 6.999 * u.keV), {})
    assert (lo, hi) == (401, 1398) and e0 == 2.005 * u.keV and e1 == 6.995 * u.keV
    meta = {"FILTERS": "vfaint,sac"}
    assert parse_combination("vfaint+sac", meta) == 0b10111
    assert parse_combination("none", meta) == 0
    with pytest.raises(ValueError, match="did not run"):
        parse_combination("cam", meta)
    with pytest.raises(ValueError, match="unknown filter"):
        parse_combination("magic", meta)


def test_pha_counts_exposure_and_levels_by_hand(tmp_path, capsys):
    ev = _events(tmp_path)
    out = tmp_path / "obs"
    assert _spectrum(ev, "-o", out, "--combination", "vfaint", "--combination", "vfaint+sac",
                     "--combination", "all", "--combination", "none") == 0
    printed = capsys.readouterr().out
    counts = {c: np.zeros(4096, int) for c in ("vfaint", "vfaint+sac", "all", "none")}
    for p, s, _, n in ROWS:
        counts["none"][p] += n
        if not s & VF:
            counts["vfaint"][p] += n
        if not s:
            counts["vfaint+sac"][p] += n
            counts["all"][p] += n
    for combo, expected in counts.items():
        with fits.open(f"{out}_{combo}.pha") as hdul:
            spec = hdul["SPECTRUM"]
            np.testing.assert_array_equal(spec.data["CHANNEL"], np.arange(4096))
            np.testing.assert_array_equal(spec.data["COUNTS"], expected)
            h = spec.header
            assert h["EXPOSURE"] == pytest.approx(2.0)
            assert (h["HDUCLASS"], h["HDUCLAS1"], h["CHANTYPE"]) == ("OGIP", "SPECTRUM", "PI")
            assert (h["TLMIN1"], h["TLMAX1"], h["DETCHANS"]) == (0, 4095, 4096)
            assert h["POISSERR"] is True and h["AREASCAL"] == 1.0
            assert (h["TELESCOP"], h["INSTRUME"], h["FILTCOMB"]) == ("ATHENA", "WFI", combo)
            assert h["RESPFILE"] == "NONE"
    # the level table against a hand computation: 2-7 keV is 400..1399 (5 keV)
    levels = QTable.read(f"{out}_levels.ecsv")
    area = ROWS_ * COLS * (130e-4) ** 2  # cm2: 130 um WFI pixels (no PIXSIZE keyword)
    hand = {"vfaint": 7 + 2 + 6, "vfaint+sac": 9, "all": 9, "none": 7 + 2 + 5 + 6 + 8}
    for combo, n in hand.items():
        row = levels[(levels["COMBINATION"] == combo) & (levels["BAND"] == "2-7 keV")][0]
        assert row["COUNTS"] == n
        level = n / (2.0 * 5.0 * area)
        assert row["LEVEL"].to_value(u.ct / u.s / u.keV / u.cm ** 2) == pytest.approx(level)
        lo, hi = poisson_conf_interval(n, interval="frequentist-confidence")
        assert row["LEVEL_LO"].value == pytest.approx(lo / (2.0 * 5.0 * area))
        assert row["LEVEL_HI"].value == pytest.approx(hi / (2.0 * 5.0 * area))
        assert f"{level:.4g}" in printed
    # truth split: all, 2-7 keV: 7 X-ray (PI 500) + 2 CR (PI 1399)
    row = levels[(levels["COMBINATION"] == "all") & (levels["BAND"] == "2-7 keV")][0]
    assert (row["COUNTS_XRAY"], row["COUNTS_CR"]) == (7, 2)
    # 0.3-10 keV (60..1999, 9.7 keV): all accepts 7 + 2 + 3 + 4
    row = levels[(levels["COMBINATION"] == "all") & (levels["BAND"] == "0.3-10 keV")][0]
    assert row["COUNTS"] == 16 and (row["COUNTS_XRAY"], row["COUNTS_CR"]) == (11, 5)
    assert row["LEVEL"].value == pytest.approx(16 / (2.0 * 9.7 * area))
    assert levels.meta["AREA"].to_value(u.cm ** 2) == pytest.approx(area)


def test_exposure_and_pixel_size_sources(tmp_path):
    # no EXPOSURE: NFRAMES x TIMEDEL; PIXSIZE from the header
    ev = _events(tmp_path, EXPOSURE=None, PIXSIZE=75.0)
    assert _spectrum(ev, "-o", tmp_path / "a", "--combination", "all") == 0
    assert fits.getheader(f"{tmp_path}/a_all.pha", "SPECTRUM")["EXPOSURE"] == \
        pytest.approx(NFRAMES * TIMEDEL)
    levels = QTable.read(f"{tmp_path}/a_levels.ecsv")
    assert levels.meta["AREA"].to_value(u.cm ** 2) == pytest.approx(ROWS_ * COLS * 75e-4 ** 2)
    # options win over the header
    assert _spectrum(ev, "-o", tmp_path / "b", "--combination", "all", "--frame-time", "10ms",
                     "--pixel-size", "100um", "--band", "1keV", "2keV") == 0
    assert fits.getheader(f"{tmp_path}/b_all.pha", "SPECTRUM")["EXPOSURE"] == \
        pytest.approx(NFRAMES * 0.01)
    levels = QTable.read(f"{tmp_path}/b_levels.ecsv")
    assert list(levels["BAND"]) == ["1-2 keV"]
    assert levels.meta["AREA"].to_value(u.cm ** 2) == pytest.approx(ROWS_ * COLS * 0.01 ** 2)
    assert _spectrum(ev, "-o", tmp_path / "c", "--exposure", "7s", "--combination", "all") == 0
    assert fits.getheader(f"{tmp_path}/c_all.pha", "SPECTRUM")["EXPOSURE"] == 7.0


def test_refusals_leave_nothing(tmp_path, capsys):
    ev = _events(tmp_path)
    before = ev.read_bytes()
    assert _spectrum(ev, "-o", tmp_path / "x", "--combination", "cam") == 1
    assert "did not run" in capsys.readouterr().err
    (tmp_path / "y_levels.ecsv").write_text("keep")
    assert _spectrum(ev, "-o", tmp_path / "y", "--combination", "all") == 1
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "y_levels.ecsv").read_text() == "keep"
    assert _spectrum(ev, "-o", tmp_path / "z", "--band", "7keV", "2keV") == 1
    assert ev.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ev.fits", "y_levels.ecsv"]
    assert _spectrum(ev, "-o", tmp_path / "y", "--combination", "all", "--overwrite") == 0


def test_regions_accepted_and_rejected(tmp_path):
    regions = pytest.importorskip("regions")
    ev = _events(tmp_path)
    assert _spectrum(ev, "-o", tmp_path / "s", "--combination", "vfaint",
                     "--regions", tmp_path / "r") == 0
    regs = regions.Regions.read(str(tmp_path / "r_vfaint.reg"), format="ds9")
    ok = [r for r in regs if r.meta.get("tag") == ["accepted"]]
    bad = [r for r in regs if r.meta.get("tag") == ["rejected"]]
    assert (len(ok), len(bad)) == (7 + 2 + 3 + 4 + 6 + 1, 5 + 8)
    from xcrfilter.io.eventfile import read_events
    events = read_events(ev)
    first = events[np.asarray(events["STATUS"]) & VF == 0][0]
    assert (ok[0].center.x, ok[0].center.y) == (first["RAWX"] + 1, first["RAWY"] + 1)


@pytest.fixture(scope="module")
def mn_products(tmp_path_factory):
    """A simulated Mn K-alpha observation: 5.9 keV X-rays, filtered and made spectra of."""
    d = tmp_path_factory.mktemp("mn")
    assert main(["simulate", "--frames", "40", "--shape", "64", "64", "--seed", "2",
                 "--xray-energy", "5.9keV", "--xray-rate", "10", "--cr-rate", "0.2", "-q",
                 "-o", str(d / "mn.fits")]) == 0
    assert main(["filter", str(d / "mn.fits"), "-m", "vfaint", "-o", str(d / "ev.fits"),
                 "-q"]) == 0
    assert _spectrum(d / "ev.fits", "-o", d / "mn", "--rmf", "--combination", "vfaint",
                     "--combination", "none", "--regions", d / "mn") == 0
    return d


def test_rmf_is_normalised_and_centred(mn_products):
    with fits.open(mn_products / "mn.rmf") as hdul:
        m = hdul["MATRIX"]
        assert (m.header["HDUCLAS3"], m.header["DETCHANS"]) == ("REDIST", 4096)
        row = np.argmin(np.abs(m.data["ENERG_LO"] - 5.89))
        assert m.data["ENERG_LO"][row] == pytest.approx(5.88, abs=1e-4)
        for r in m.data:
            assert r["MATRIX"].sum() == pytest.approx(1.0, abs=1e-5)
        r = m.data[row]
        centres = (r["F_CHAN"][0] + np.arange(r["N_CHAN"][0]) + 0.5) * 5.0  # eV
        mean = np.sum(r["MATRIX"] * centres)
        rms = np.sqrt(np.sum(r["MATRIX"] * (centres - mean) ** 2))
        assert mean == pytest.approx(5890.0, abs=0.5)
        # Fano 0.118, 7 e- read noise, 3.65 eV per pair: sqrt(2537 + 653) eV; the 5 eV
        # channels add 5**2 / 12 in quadrature
        assert rms == pytest.approx(np.sqrt(0.118 * 5890 * 3.65 + (7 * 3.65) ** 2 + 25 / 12),
                                    rel=2e-3)
    assert fits.getheader(mn_products / "mn.arf", "SPECRESP")["DETAREA"] == \
        pytest.approx(64 * 64 * 0.013 ** 2, rel=1e-6)


@pytest.mark.skipif(shutil.which("fitsverify") is None,
                    reason="fitsverify (HEASARC; Debian package, .ci/run installs it) not on PATH")
def test_fitsverify_every_product(mn_products):
    from test_ogip import fitsverify_counts
    names = ["mn_vfaint.pha", "mn_none.pha", "mn.rmf", "mn.arf"]
    for name in names:
        warnings_, errors, text = fitsverify_counts(mn_products / name)
        assert (warnings_, errors) == (0, 0), text


def test_gammapy_reads_counts_exposure_and_fits_mn_line(mn_products):
    pytest.importorskip("gammapy")
    from gammapy.datasets import SpectrumDataset, SpectrumDatasetOnOff
    from gammapy.modeling import Fit
    from gammapy.modeling.models import GaussianSpectralModel, SkyModel

    from xcrfilter.io.eventfile import read_events
    pha = mn_products / "mn_vfaint.pha"
    ds = SpectrumDatasetOnOff.read(pha, format="ogip", name="mn")
    events = read_events(mn_products / "ev.fits")
    expected = np.bincount(np.asarray(events["PI"])[np.asarray(events["STATUS"]) & 7 == 0],
                           minlength=4096)
    np.testing.assert_array_equal(ds.counts.data.ravel(), expected)
    assert ds.exposure.meta["livetime"] == 40 * 0.005 * u.s
    edges = ds.counts.geom.axes["energy"].edges.to_value(u.keV)
    np.testing.assert_allclose(edges[1:], np.arange(1, 4097) * 0.005, rtol=1e-6)
    # the 5.9 keV line, forward-folded through the RMF and the ARF (detector area)
    data = SpectrumDataset(counts=ds.counts, exposure=ds.exposure, edisp=ds.edisp, name="s")
    line = GaussianSpectralModel(amplitude=1e3 * u.Unit("cm-2 s-1"), mean=5.5 * u.keV,
                                 sigma=0.01 * u.keV)
    line.sigma.frozen = True
    data.models = [SkyModel(spectral_model=line, name="mn")]
    data.mask_fit = data.counts.geom.energy_mask(4 * u.keV, 8 * u.keV)
    assert Fit().run([data]).success
    # split-threshold losses put the peak a little below 5.9 keV
    assert line.mean.quantity.to_value(u.keV) == pytest.approx(5.9, abs=0.04)
    area = 64 * 64 * 0.013 ** 2
    n_line = int(expected[800:1600].sum())
    assert line.amplitude.value * 0.2 * area == pytest.approx(n_line, rel=0.05)


def test_area_counts_every_chip_of_a_pixel_table(tmp_path):
    ev = _events(tmp_path, NCHIPS=4)
    assert _spectrum(ev, "-o", tmp_path / "s", "--combination", "all") == 0
    levels = QTable.read(f"{tmp_path}/s_levels.ecsv")
    assert levels.meta["AREA"].to_value(u.cm ** 2) == pytest.approx(
        4 * ROWS_ * COLS * 0.013 ** 2)


@pytest.mark.filterwarnings("ignore:Data has no positive values")  # compare's empty ROC
def test_filter_and_compare_print_the_levels(tmp_path, capsys):
    obs = tmp_path / "obs.fits"
    assert main(["simulate", "--frames", "20", "--shape", "64", "64", "--seed", "1", "-q",
                 "-o", str(obs)]) == 0
    assert main(["filter", str(obs), "-m", "vfaint,sac", "-o", str(tmp_path / "ev.fits"),
                 "-q"]) == 0
    filtered = capsys.readouterr().out.splitlines()
    assert any(line.startswith("background levels: exposure 0.1 s") for line in filtered)
    assert _spectrum(tmp_path / "ev.fits", "-o", tmp_path / "s") == 0
    spectrum = capsys.readouterr().out.splitlines()
    names = (["none"], ["vfaint"], ["sac"], ["all"])
    rows = [line for line in spectrum if line.split()[:1] in names]
    assert len(rows) == 8 and set(rows) <= set(filtered)
    assert main(["compare", str(obs), "-o", str(tmp_path / "rep"), "-m", "vfaint,sac"]) == 0
    compared = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(compared) if line.startswith("background levels"))
    assert compared[head + 1].split()[-2:] == ["X-ray", "CR"]
    # the same events as filter's, with the truth split added
    assert [line[:len(r)] for line, r in zip(compared[head + 2:head + 10], rows)] == rows


def test_regions_missing_is_one_clear_error_before_any_file(tmp_path, capsys, monkeypatch):
    import sys
    ev = _events(tmp_path)
    monkeypatch.setitem(sys.modules, "regions", None)  # import regions -> ImportError
    assert _spectrum(ev, "-o", tmp_path / "s", "--regions", tmp_path / "r") == 1
    assert "--regions needs the regions package" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["ev.fits"]
