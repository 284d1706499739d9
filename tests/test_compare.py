"""Tests of the filter comparison report (xcrfilter compare)."""
import argparse

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from xcrfilter.cli import compare as compare_cli
from xcrfilter.evaluation import tables
from xcrfilter.evaluation.compare import compare_filters
from xcrfilter.evaluation.selection import rejected
from xcrfilter.evaluation.pixels import knee_point, pixel_confusion, scan_sigclip
from xcrfilter.evaluation.tables import band_masks


def toy_observation(n=3, shape=(64, 64), seed=3):
    """Frames (eV, 7 e- noise) and labels: X-ray doubles, one CR track per frame
    with three secondary blobs around it."""
    rng = np.random.default_rng(seed)
    frames = rng.normal(0, 25.5, (n,) + shape).astype(np.float32)
    labels = np.zeros((n,) + shape, np.uint8)
    ny, nx = shape
    for f in range(n):
        for _ in range(6):
            y, x = rng.integers(5, ny - 5), rng.integers(5, nx - 6)
            e = float(np.exp(rng.uniform(np.log(400), np.log(9000))))
            frames[f, y, x] += 0.8 * e
            frames[f, y, x + 1] += 0.2 * e
            labels[f, y, x] = labels[f, y, x + 1] = 1
        y0, x0 = rng.integers(10, ny - 30), rng.integers(10, nx - 30)
        for k in range(int(rng.integers(8, 20))):
            yy, xx = y0 + k, x0 + (k * 2) // 3
            frames[f, yy, xx] += 3000.0
            labels[f, yy, xx] = 2
        for _ in range(3):
            y = int(np.clip(y0 + rng.integers(-12, 24), 3, ny - 4))
            x = int(np.clip(x0 + rng.integers(-12, 24), 3, nx - 4))
            frames[f, y, x] += float(rng.uniform(500, 5000))
            labels[f, y, x] = 2
    return frames, labels


def test_band_split_half_open():
    e = np.array([0.299, 0.3, 0.999, 1.0, 1.999, 2.0, 3.999, 4.0, 7.999, 8.0, 9.999, 10.0,
                  12.0]) * u.keV
    m = band_masks(e)
    assert list(m) == ["0.3-10", "0.3-1", "1-2", "2-4", "4-8", "8-10"]
    assert np.flatnonzero(m["0.3-10"]).tolist() == list(range(1, 11))
    assert np.flatnonzero(m["0.3-1"]).tolist() == [1, 2]
    assert np.flatnonzero(m["1-2"]).tolist() == [3, 4]
    assert np.flatnonzero(m["2-4"]).tolist() == [5, 6]
    assert np.flatnonzero(m["4-8"]).tolist() == [7, 8]
    assert np.flatnonzero(m["8-10"]).tolist() == [9, 10]
    # the bands partition the full range
    total = sum(m[k].astype(int) for k in list(m)[1:])
    np.testing.assert_array_equal(total.astype(bool), m["0.3-10"])
    assert total.max() == 1
    # eV input is the same selection
    np.testing.assert_array_equal(band_masks(e.to(u.eV))["2-4"], m["2-4"])
    with pytest.raises(TypeError):
        band_masks(np.array([1.0]))


def test_rejected_unions():
    t = Table({"STATUS": np.array([0, 1, 2, 4, 8, 16, 32, 17], np.int32)})
    assert rejected(t, "VF").tolist() == [0, 1, 1, 1, 0, 0, 0, 1]
    assert rejected(t, "SAC").tolist() == [0, 0, 0, 0, 0, 1, 0, 1]
    assert rejected(t, "VF+SAC").tolist() == [0, 1, 1, 1, 0, 1, 0, 1]
    assert rejected(t, "VF+CAM").tolist() == [0, 1, 1, 1, 0, 0, 1, 1]
    with pytest.raises(ValueError):
        rejected(t, "VF+XYZ")


def _direct(events, truth, bits, lo, hi):
    e = u.Quantity(events["ENERGY"]).to_value(u.keV)
    sel = (e >= lo) & (e < hi)
    rej = (np.asarray(events["STATUS"]) & bits) != 0
    cr, xr = sel & (truth == 2), sel & (truth == 1)
    tp, fn = np.sum(cr & rej), np.sum(cr & ~rej)
    fp, tn = np.sum(xr & rej), np.sum(xr & ~rej)
    return tp, fp, tn, fn


def test_report_numbers_equal_direct_computation(tmp_path):
    from xcrfilter.io.eventfile import read_events

    frames, labels = toy_observation()
    rep = compare_filters(frames * u.eV, labels, ["vfaint", "lacosmic", "sac"],
                          outdir=str(tmp_path), pixel_frames=2)
    assert rep.methods == ["VF", "LACOSMIC", "SAC"]
    for name in ("table.ecsv", "table.txt", "roc.ecsv", "events.fits", "roc.png",
                 "background_spectrum.png", "for_improvement.png", "lost_signal.png",
                 "laplacian_confusion.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    table = Table.read(tmp_path / "table.ecsv")
    events = read_events(tmp_path / "events.fits")
    truth = labels[events["FRAME"], events["RAWY"], events["RAWX"]].astype(int)
    np.testing.assert_array_equal(truth, np.asarray(events["TRUTH"]))
    assert set(table["METHOD"]) == {"VF", "LACOSMIC", "SAC", "VF+LACOSMIC", "VF+SAC"}
    bits = {"VF": 7, "LACOSMIC": 8, "SAC": 16, "VF+LACOSMIC": 15, "VF+SAC": 23}
    n_checked = 0
    for row in table:
        tp, fp, tn, fn = _direct(events, truth, bits[row["METHOD"]], row["E_LO"], row["E_HI"])
        assert (row["TP"], row["FP"], row["TN"], row["FN"]) == (tp, fp, tn, fn)
        if tp + fn:
            assert row["RECALL"] == pytest.approx(tp / (tp + fn))
        if tn + fp:
            assert row["FPR"] == pytest.approx(fp / (tn + fp))
        if tn + fn:
            assert row["FOR"] == pytest.approx(fn / (tn + fn))
        if tp:
            p, r = tp / (tp + fp), tp / (tp + fn)
            assert row["F1"] == pytest.approx(2 * p * r / (p + r))
        n_checked += 1
    assert n_checked == 5 * 6
    # FOR improvement relative to VF in the full band
    full = table[table["BAND"] == "0.3-10"]
    vf_for = full[full["METHOD"] == "VF"]["FOR"][0]
    sac = full[full["METHOD"] == "VF+SAC"][0]
    assert sac["FOR_IMPR"] == pytest.approx(1 - sac["FOR"] / vf_for)
    # the toy CRs are found: SAC catches the secondaries VF keeps
    assert sac["RECALL"] > full[full["METHOD"] == "VF"]["RECALL"][0]
    text = (tmp_path / "table.txt").read_text()
    assert "VF+SAC" in text and "Pixel-wise" in text


def test_roc_sweep_sac_radius(tmp_path):
    frames, labels = toy_observation()
    rep = compare_filters(frames * u.eV, labels, ["vfaint", "sac"], pixel_frames=0,
                          sac_radii=[-1, 0, 5, 1000])
    r = rep.roc[rep.roc["CURVE"] == "SAC"]
    assert r["PARAM"].tolist() == [-1, 0, 5, 1000]
    assert r["RECALL"][0] == 0 and r["FPR"][0] == 0
    assert np.all(np.diff(r["RECALL"]) >= 0) and np.all(np.diff(r["FPR"]) >= 0)
    # radius 1000 px covers every frame that holds a track (every frame here)
    assert r["RECALL"][-1] == 1.0 and r["FPR"][-1] == 1.0


def test_pixel_confusion_and_knee():
    labels = np.array([[0, 1, 2, 2], [0, 0, 2, 1]], np.uint8)
    mask = np.array([[0, 1, 1, 0], [1, 0, 1, 0]], bool)
    c = pixel_confusion(mask, labels)
    assert (c["TP"], c["FP"], c["FN"], c["TN"], c["FP_XRAY"]) == (2, 2, 1, 3, 1)
    assert c["PURITY"] == 0.5 and c["COMPLETENESS"] == pytest.approx(2 / 3)
    assert c["MSE"] == pytest.approx(3 / 8)
    x = np.linspace(1, 10, 10)
    y = 1000 * np.exp(-(x - 1))  # knee where the decay flattens
    # normalised distance to the chord, 1 - x_n - y_n: 0.521, 0.642, 0.617 at
    # indices 1, 2, 3 (by hand), so the knee is index 2 (x = 3)
    assert knee_point(x, y) == 2
    assert knee_point([0, 1, 2, 3, 4], [10, 2, 1, 0.5, 0]) == 1
    assert knee_point([0, 1, 2], [0, 1, 2]) == 0  # a straight line: no knee, the first point
    with pytest.raises(ValueError, match="3 points"):
        knee_point([0, 1], [1, 0])


def test_scan_sigclip_small():
    frames, labels = toy_observation(n=2, shape=(48, 48), seed=5)
    t = scan_sigclip(frames * u.eV, labels, sigclips=[2.0, 4.5, 8.0, 20.0])
    assert t["SIGCLIP"].tolist() == [2.0, 4.5, 8.0, 20.0]
    assert np.all(np.diff(t["N_CRPIX"]) <= 0)  # fewer pixels at higher sigclip
    i = int(np.argmin(t["MSE"]))
    assert t.meta["SIGMSE"] == t["SIGCLIP"][i]
    assert t.meta["SIGKNEE"] == t["SIGCLIP"][knee_point(t["SIGCLIP"], t["N_CRPIX"])]
    np.testing.assert_allclose(t["MSE"], (t["FP"] + t["FN"]) / labels.size)


def test_cli_run_with_labels_extension(tmp_path, capsys):
    frames, labels = toy_observation(n=2)
    path = tmp_path / "obs.fits"
    hdr = fits.Header()
    hdr["BUNIT"] = "eV"
    fits.HDUList([fits.PrimaryHDU(frames, header=hdr),
                  fits.ImageHDU(labels, name="LABELS")]).writeto(path)
    parser = argparse.ArgumentParser()
    compare_cli.add_arguments(parser)
    args = parser.parse_args([str(path), "-o", str(tmp_path / "rep"),
                              "--method", "vfaint,sac", "--sac-radius", "8",
                              "--chunk-frames", "1"])
    assert compare_cli.run(args) == 0
    out = capsys.readouterr().out
    assert "Band 0.3-10 keV" in out and "VF+SAC" in out
    t = Table.read(tmp_path / "rep" / "table.ecsv")
    assert set(t["METHOD"]) == {"VF", "SAC", "VF+SAC"}


def test_chunked_equals_single_call():
    from xcrfilter.evaluation.compare import compare_chunks
    frames, labels = toy_observation(n=4, seed=11)
    one = compare_filters(frames * u.eV, labels, ["vfaint", "sac"], pixel_frames=0)
    two = compare_chunks([(frames[:1] * u.eV, labels[:1]), (frames[1:] * u.eV, labels[1:])],
                         ["vfaint", "sac"], pixel_frames=0)
    assert len(one.events) == len(two.events) and two.n_frames == 4
    np.testing.assert_array_equal(one.events["FRAME"], two.events["FRAME"])
    np.testing.assert_array_equal(one.truth, two.truth)
    for col in ("TP", "FP", "TN", "FN"):
        np.testing.assert_array_equal(one.table[col], two.table[col])


def test_missing_columns_are_named():
    from astropy.table import QTable
    events = QTable({"ENERGY": [1.0, 2.0] * u.keV})
    for func in (tables.compare_table, tables.roc_sweeps):
        with pytest.raises(ValueError, match=r"lack column\(s\) \['STATUS'\]"):
            func(events, np.array([1, 2]))


def test_compare_streams_frames_as_filter_does(tmp_path, monkeypatch):
    """compare reads the frames chunk by chunk through FrameStream, as filter does.

    Frames in adu with GAIN and ADUOFFS: the same events and verdicts as
    ``xcrfilter filter``, and no read larger than ``--chunk-frames``.
    """
    import xcrfilter.io.stream as stream
    from xcrfilter.cli.main import main
    from xcrfilter.io.eventfile import read_events
    frames, labels = toy_observation(n=5)
    path = tmp_path / "obs.fits"
    hdr = fits.Header([("BUNIT", "adu"), ("GAIN", 3.65), ("ADUOFFS", 100.0)])
    fits.HDUList([fits.PrimaryHDU(np.round(frames / 3.65 + 100).astype(np.int16), header=hdr),
                  fits.ImageHDU(labels, name="LABELS")]).writeto(path)
    reads = []
    read = stream.FrameStream.read
    monkeypatch.setattr(stream.FrameStream, "read",
                        lambda self, a, b: reads.append((a, b)) or read(self, a, b))
    assert main(["compare", str(path), "-o", str(tmp_path / "rep"), "--method", "vfaint,sac",
                 "--chunk-frames", "2"]) == 0
    assert reads == [(0, 2), (2, 4), (4, 5)]
    assert main(["filter", str(path), "-o", str(tmp_path / "ev.fits"), "-q",
                 "-m", "vfaint,sac"]) == 0
    got, want = read_events(tmp_path / "rep" / "events.fits"), read_events(tmp_path / "ev.fits")
    assert len(want) > 20
    for col in ("FRAME", "RAWX", "RAWY", "ENERGY", "STATUS"):
        np.testing.assert_array_equal(np.asarray(got[col]), np.asarray(want[col]))
