"""``xcrfilter demo``: files, compact mask, counts and intervals, out-of-band events."""
import os

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from scipy.stats import binomtest

from xcrfilter.cli.main import main
from xcrfilter.cli.demo import MIN_COUNT, format_report
from xcrfilter.io.eventfile import read_events
from xcrfilter.io.masks import event_pixel_mask
from xcrfilter.evaluation.metrics import fraction_interval


def test_fraction_interval_is_wilson():
    for k, n in ((0, 7), (3, 7), (7, 7), (12, 639)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.682689492, method="wilson")
        assert fraction_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)
    lo, hi = fraction_interval([1, 0], [10, 0])
    assert np.isnan(lo[1]) and np.isnan(hi[1]) and lo[0] < 0.1 < hi[0]
    with pytest.raises(ValueError, match="0 <= k <= n"):
        fraction_interval(5, 3)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    rc = main(["demo", "-o", str(out), "--frames", "12", "--chunk-frames", "5", "-q"])
    assert rc == 0
    return out


def test_demo_writes_files_and_compact_mask(demo_dir):
    names = sorted(os.listdir(demo_dir))
    assert names == ["demo_events.fits", "demo_frame.png", "demo_frames.fits", "demo_mask.fits",
                     "demo_roc.png", "demo_spectrum.png", "demo_table.ecsv"]
    for png in ("demo_frame.png", "demo_roc.png", "demo_spectrum.png"):
        with open(demo_dir / png, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    ev = read_events(demo_dir / "demo_events.fits")
    assert ev.meta["NFRAMES"] == 12 and ev.meta["FILTERS"] == "vfaint,sac,cam,morph"
    assert int(np.asarray(ev["FRAME"]).max()) > 5          # several chunks, one frame index
    with fits.open(demo_dir / "demo_mask.fits") as hdul:
        hdu = hdul["MASK"]
        assert isinstance(hdu, fits.CompImageHDU)
        mask = hdu.data
    assert mask.dtype == np.uint8 and mask.shape == (12, 512, 512)
    rej = np.asarray(ev["STATUS"]) != 0
    expected = event_pixel_mask(mask.shape, np.asarray(ev["FRAME"])[rej],
                                np.asarray(ev["RAWX"])[rej], np.asarray(ev["RAWY"])[rej])
    np.testing.assert_array_equal(mask.astype(bool), expected)
    # compact: far below one float copy of the frames (12 MB)
    assert os.path.getsize(demo_dir / "demo_mask.fits") < 200_000
    # the sample frames are the first frames of the observation, with their truth
    with fits.open(demo_dir / "demo_frames.fits") as hdul:
        assert hdul[0].data.shape == (10, 512, 512) and "TRUTH" in hdul


def test_demo_report_counts(demo_dir):
    from astropy.table import Table
    ev = read_events(demo_dir / "demo_events.fits")
    truth = np.asarray(ev["TRUTH"])
    table = Table.read(demo_dir / "demo_table.ecsv")
    full = table[table["BAND"] == "0.3-10"]
    assert list(full["METHOD"]) == ["VF", "SAC", "CAM", "MORPH", "VF+SAC", "VF+CAM", "VF+MORPH"]
    e = u.Quantity(ev["ENERGY"]).to_value(u.keV)
    inband = (e >= 0.3) & (e < 10)
    assert (full["N_CR"] == np.count_nonzero(inband & (truth == 2))).all()
    assert (full["TP"] + full["FN"] == full["N_CR"]).all()
    text = format_report(ev, truth, table)
    n_high = int(np.count_nonzero(e >= 10))
    n_cr_high = int(np.count_nonzero((e >= 10) & (truth == 2)))
    assert f"Not in the table: {n_high} events at >= 10 keV ({n_cr_high} CR," in text
    assert f"{int(np.count_nonzero(e < 0.3))} events at < 0.3 keV" in text
    # every percentage comes with its count and interval
    row = next(line for line in text.splitlines() if line.startswith("VF  "))
    fp, n_x = int(full["FP"][0]), int(full["N_XRAY"][0])
    lo, hi = fraction_interval(fp, n_x)
    assert f"{fp}/{n_x}" in row and f"[{100 * lo:.1f}-{100 * hi:.1f}]" in row
    if full["N_CR"][0] < MIN_COUNT:
        assert "warning: only" in text


def test_demo_refuses_to_overwrite(demo_dir, capsys):
    assert main(["demo", "-o", str(demo_dir), "--frames", "1", "-q"]) == 1
    assert "exists" in capsys.readouterr().err
