"""The CAM filter with the shipped pretrained model (xcrfilter.filters.cam)."""
import argparse

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

pytest.importorskip("xcrfilter.ml.densenet")  # Keras, with the package's backend
pytest.importorskip("imblearn")

from xcrfilter.meta import card_value  # noqa: E402
from xcrfilter.filters import cam as camf  # noqa: E402
from xcrfilter.ml.model import default_model_dir, load_model  # noqa: E402


def test_pretrained_model_is_installed():
    """The package ships its model: a missing file is a packaging defect."""
    for name in ("model.json", "densenet.keras", "forest.skops", "scaling.json",
                 "SHA256SUMS", "MODEL_CARD.md"):
        assert (default_model_dir() / name).is_file(), name


def _frames(n=2, size=128, seed=0):
    """Identical noise frames with X-ray-like islands and a track."""
    rng = np.random.default_rng(seed)
    f = np.repeat(rng.normal(0, 25.5, (1, size, size)).astype(np.float32), n, axis=0)
    f[:, 40:43, 60:63] += np.array([[60, 250, 50], [200, 2400, 300], [40, 220, 70]], np.float32)
    f[:, 90, 10:100] += 3500.0
    f[:, 96:99, 30:33] += np.array([[50, 300, 60], [250, 1800, 200], [70, 150, 40]], np.float32)
    return f


def test_cli_options_roundtrip():
    p = argparse.ArgumentParser()
    camf.FILTER.add_cli_options(p.add_argument_group("cam"))
    a = p.parse_args(["--threshold", "0.6", "--cam-output", "c.fits",
                      "--cam-band", "0.5keV", "8000"])
    o = camf.FILTER.options_from_args(a)
    assert o["threshold"] == 0.6 and o["cam_output"] == "c.fits"
    # units accepted, bare numbers are eV
    assert u.allclose(o["band"], [0.5, 8] * u.keV)
    assert o["band"].unit == u.eV
    assert camf.FILTER.options_from_args(p.parse_args([])) == {}


def test_bad_arguments():
    from xcrfilter.units import as_probability
    with pytest.raises(ValueError, match="threshold"):
        as_probability(1.5, 0.5)
    with pytest.raises(TypeError, match="threshold"):
        as_probability("high", 0.5)
    with pytest.raises(TypeError, match="band"):
        camf._check_band((0.3, 10))
    from astropy.table import QTable
    with pytest.raises(TypeError, match="needs the frames"):
        camf.cam_filter(QTable({"FRAME": [0]}))
    from xcrfilter.ml.checksums import ModelFileError
    with pytest.raises(ModelFileError, match="does not exist"):
        camf.cam_filter(_frames(1) * u.eV, model="/nonexistent/model")


def test_shipped_model_loads_and_is_small():
    m = load_model()
    assert m.forest is not None and 0 < m.threshold < 1
    assert m.feature_names[:3] == ("ENERGY", "P_XRAY", "P_CR")
    total = sum(p.stat().st_size for p in default_model_dir().iterdir() if p.is_file())
    assert total < 25e6


def test_cam_filter_shipped_model(tmp_path):
    frames = _frames()
    out = tmp_path / "cams.fits"
    ev = camf.cam_filter(frames * u.eV, cam_output=out)
    m = load_model()
    e = ev["ENERGY"].to_value(u.eV)
    inb = (e >= 300) & (e < 10000)
    assert inb.sum() >= 4
    p = np.asarray(ev["PROB_CR"])
    assert np.all((p[inb] >= 0) & (p[inb] <= 1)) and np.isnan(p[~inb]).all()
    rej = (np.asarray(ev["STATUS"]) & (1 << camf.CAM_BIT)) > 0
    np.testing.assert_array_equal(rej, np.nan_to_num(p, nan=-1) >= m.threshold)
    assert card_value(ev.meta, "CAMSHA") == m.sha256 and card_value(ev.meta, "CAMMODEL") == m.name
    assert card_value(ev.meta, "CAMTHR") == pytest.approx(m.threshold)
    # identical frames -> identical scores (no dependence on batch position)
    f0 = np.asarray(ev["FRAME"]) == 0
    np.testing.assert_allclose(p[f0], p[~f0], atol=1e-6)
    with fits.open(out) as h:
        assert h["CAM_CR"].data.shape == frames.shape
        assert h["CAM_XRAY"].header["CAMSHA"] == m.sha256
        assert h[0].header["CAMCLASS"] == "EMPTY,XRAY,CR,MIX"
    # threshold 1 rejects nothing, 0 rejects every scored event
    ev1 = camf.cam_filter(frames * u.eV, ev, threshold=1.0)
    assert not ((np.asarray(ev1["STATUS"]) & 32) > 0)[p < 1].any()
    ev0 = camf.cam_filter(frames * u.eV, ev, threshold=0.0)
    np.testing.assert_array_equal((np.asarray(ev0["STATUS"]) & 32) > 0, inb)


def test_pipeline_cam_and_vfaint():
    from xcrfilter.pipeline import run_pipeline
    ev = run_pipeline(_frames() * u.eV, methods="cam,vfaint")
    assert "PROB_CR" in ev.colnames
    st = np.asarray(ev["STATUS"])
    p = np.asarray(ev["PROB_CR"])
    np.testing.assert_array_equal((st & 32) > 0, np.nan_to_num(p, nan=-1) >= load_model().threshold)
    assert "CAMSHA" in ev.meta
