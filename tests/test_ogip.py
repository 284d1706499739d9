"""OGIP / HEASARC conformance of the event files (time, GTI, keywords, channels, checksums)."""
import re
import shutil
import subprocess
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from test_eventlist import geant4_event_list
from xcrfilter.cli.main import main
from xcrfilter.registry import STATUS_BIT_DOC, STATUS_BITS
from xcrfilter.io.eventfile import read_events, read_gti, write_events
from xcrfilter.io.ogip import PI_CHANNELS, pi_channels
from xcrfilter.io.timing import add_time, frame_time_from_header, read_frame_times

OBS = {"TELESCOP": "ATHENA", "INSTRUME": "WFI", "DETNAM": "LDA", "OBJECT": "Cas A",
       "DATE-OBS": "2037-03-01T00:00:00"}


def _cube():
    """Three 32x32 frames: frame 0 a 1500 eV single at (8, 8), frame 1 a double of
    2000 + 400 eV at (20, 20)/(21, 20), frame 2 a 12 keV single at (15, 15)."""
    cube = np.zeros((3, 32, 32), np.float32)
    cube[0, 8, 8] = 1500.0
    cube[1, 20, 20], cube[1, 21, 20] = 2000.0, 400.0
    cube[2, 15, 15] = 12000.0
    return cube


def _cube_file(path, **cards):
    hdu = fits.PrimaryHDU(_cube())
    hdu.header["BUNIT"] = "eV"
    for key, value in cards.items():
        hdu.header[key] = value
    hdu.writeto(path)
    return path


def _filter(args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(["filter", *map(str, args), "-q"])


def test_event_file_keeps_observation_keywords_and_has_ogip_time(tmp_path):
    src = _cube_file(tmp_path / "obs.fits", **OBS, TIMESYS="TT", MJDREFI=51544,
                     MJDREFF=7.428703703703703e-4, TSTART=1000.0, FRAMTIME=0.005)
    out = tmp_path / "ev.fits"
    assert _filter([src, "-o", out]) == 0
    ev = read_events(out)
    # TIME = TSTART + FRAME x frame time
    np.testing.assert_allclose(ev["TIME"].to_value(u.s),
                               1000.0 + 0.005 * np.asarray(ev["FRAME"]), rtol=0, atol=1e-9)
    with fits.open(out) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "EVENTS", "GTI"]
        for h in hdul:
            assert h.verify_checksum() == 1 and h.verify_datasum() == 1, h.name
            for key, value in OBS.items():
                assert h.header[key] == value, (h.name, key)
            assert h.header["TIMESYS"] == "TT" and h.header["MJDREFI"] == 51544
            assert h.header["TSTART"] == 1000.0
            assert h.header["TSTOP"] == pytest.approx(1000.015, abs=1e-9)
        e = hdul["EVENTS"].header
        assert (e["HDUCLASS"], e["HDUCLAS1"]) == ("OGIP", "EVENTS")
        g = hdul["GTI"].header
        assert (g["HDUCLASS"], g["HDUCLAS1"], g["HDUCLAS2"]) == ("OGIP", "GTI", "STANDARD")
        assert e["EXPOSURE"] == pytest.approx(0.015) and e["ONTIME"] == pytest.approx(0.015)
        assert e["LIVETIME"] == pytest.approx(0.015) and e["TIMEDEL"] == 0.005
        gti = hdul["GTI"].data
        assert len(gti) == 1
        assert (gti["START"][0], gti["STOP"][0]) == (1000.0, pytest.approx(1000.015))
        t = np.asarray(ev["TIME"].to_value(u.s))
        assert np.all((t >= gti["START"][0]) & (t < gti["STOP"][0]))
        # PHAS written as a 5x5 image per event
        cols = hdul["EVENTS"].columns
        assert cols["PHAS"].dim == "(5,5)"
        assert hdul["EVENTS"].data["PHAS"].shape == (len(ev), 5, 5)
        assert cols["PI"].unit == "chan" and cols["PHA"].unit == "chan"
        assert cols["ENERGY"].unit == "eV"
        for i, col in enumerate(cols, start=1):
            if col.format[-1] in "BIJK":
                assert f"TLMIN{i}" in e and f"TLMAX{i}" in e, col.name
        ipi = cols.names.index("PI") + 1
        assert (e[f"TLMIN{ipi}"], e[f"TLMAX{ipi}"]) == (0, PI_CHANNELS - 1)
        for name, bit in STATUS_BITS.items():
            assert e[f"STATUS{bit}"] == name
            assert e.comments[f"STATUS{bit}"] == STATUS_BIT_DOC[name][:47]
    # the events of the hand-built cube: PHA the summed pulse height (1 eV
    # channels for frames in eV), PI 5 eV channels of the same sum
    rows = {int(r["FRAME"]): r for r in ev}
    assert set(rows) == {0, 1, 2}
    assert (rows[0]["PHA"], rows[0]["PI"]) == (1500, 300)
    assert (rows[1]["PHA"], rows[1]["PI"]) == (2400, 480)
    assert rows[1]["PATTERN"] == 1 and rows[1]["GRADE"] == 2      # split pixel at +RAWY
    assert (rows[2]["PHA"], rows[2]["PI"]) == (12000, 2400)
    np.testing.assert_array_equal(np.asarray(ev["PHA"]),
                                  np.rint(ev["ENERGY"].to_value(u.eV)).astype(int))
    assert ev["PHAS"].shape == (3, 25) and ev["PHAS"][1, 12] == 2000 * u.eV
    assert ev["PHAS"][1, 17] == 400 * u.eV                        # row-major, +RAWY
    assert read_gti(out)["STOP"][0].to_value(u.s) == pytest.approx(1000.015)


def test_per_frame_times_from_the_input_and_split_gti(tmp_path):
    src = tmp_path / "obs.fits"
    times = np.array([10.0, 10.005, 20.0])
    frames = fits.BinTableHDU.from_columns(
        [fits.Column("FRAME", "J", array=np.arange(3)),
         fits.Column("TIME", "D", unit="s", array=times)], name="FRAMES")
    img = fits.PrimaryHDU(_cube())
    img.header["BUNIT"] = "eV"
    img.header["TIMEDEL"] = 0.005
    fits.HDUList([img, frames]).writeto(src)
    np.testing.assert_array_equal(read_frame_times(src, 3).to_value(u.s), times)
    out = tmp_path / "ev.fits"
    assert _filter([src, "-o", out]) == 0
    ev = read_events(out)
    np.testing.assert_allclose(ev["TIME"].to_value(u.s), times[np.asarray(ev["FRAME"])])
    gti = read_gti(out)
    np.testing.assert_allclose(gti["START"].to_value(u.s), [10.0, 20.0])
    np.testing.assert_allclose(gti["STOP"].to_value(u.s), [10.01, 20.005])
    assert ev.meta["ONTIME"] == pytest.approx(0.015)


def test_frame_time_option_and_missing_frame_time(tmp_path, capsys):
    src = _cube_file(tmp_path / "obs.fits")
    out = tmp_path / "ev.fits"
    with pytest.warns(UserWarning, match="no frame time"):
        assert main(["filter", str(src), "-o", str(out), "-q"]) == 0
    ev = read_events(out)
    assert "TIME" not in ev.colnames and read_gti(out) is None
    out2 = tmp_path / "ev2.fits"
    assert _filter([src, "-o", out2, "--frame-time", "2ms"]) == 0
    ev = read_events(out2)
    np.testing.assert_allclose(ev["TIME"].to_value(u.s), 0.002 * np.asarray(ev["FRAME"]))
    assert ev.meta["TIMEDEL"] == 0.002 and ev.meta["EXPOSURE"] == pytest.approx(0.006)
    with pytest.raises(SystemExit):
        main(["filter", str(src), "-o", str(tmp_path / "x.fits"), "--frame-time", "2eV"])


def test_frame_time_keywords_precedence_and_units():
    h = fits.Header({"TIMEDEL": 4.0, "TIMEUNIT": "ms", "FRAMTIME": 0.005})
    assert frame_time_from_header(h) == 0.004 * u.s
    assert frame_time_from_header(fits.Header({"TEXPFRAM": 0.005})) == 0.005 * u.s
    assert frame_time_from_header(h, 1 * u.ms) == 0.001 * u.s
    assert frame_time_from_header(fits.Header()) is None
    with pytest.raises(ValueError, match="positive"):
        frame_time_from_header(fits.Header({"FRAMTIME": 0.0}))
    with pytest.raises(TypeError, match="frame_time"):
        frame_time_from_header(None, 0.005)


def test_mjdref_from_date_obs_and_date_obs_from_mjdref():
    from astropy.table import QTable
    ev = QTable({"FRAME": np.array([0, 2], np.int32)})
    add_time(ev, fits.Header({"DATE-OBS": "2037-03-01T00:00:00", "FRAMTIME": 0.005}),
             n_frames=4)
    mjd = Time("2037-03-01T00:00:00", scale="utc").tt.mjd
    assert ev.meta["MJDREFI"] + ev.meta["MJDREFF"] == pytest.approx(mjd, abs=1e-9)
    assert ev.meta["TIMESYS"] == "TT" and ev.meta["TSTART"] == 0.0
    ev2 = QTable({"FRAME": np.array([1], np.int32)})
    add_time(ev2, fits.Header({"MJDREF": 60000.0, "TIMESYS": "TT", "TSTART": 86400.0,
                               "TIMEDEL": 0.5}), n_frames=2)
    assert ev2.meta["DATE-OBS"] == Time(60001.0, format="mjd", scale="tt").isot
    assert ev2["TIME"][0] == 86400.5 * u.s
    with pytest.raises(ValueError, match="outside"):
        add_time(QTable({"FRAME": np.array([5])}), fits.Header({"TIMEDEL": 1.0}), n_frames=2)


@pytest.mark.parametrize("cards, frame_times, tstart", [
    ({"TSTART": 100.0}, None, 100.0),
    ({}, np.array([50.0, 50.005, 50.01, 50.015]), 50.0),
], ids=["tstart", "frame-times"])
def test_mjdref_from_date_obs_with_tstart_or_frame_times(cards, frame_times, tstart):
    """DATE-OBS with TSTART or frame times used to leave MJDREF unset and write the false
    HISTORY line 'the input has no MJDREF, MJDREFI or DATE-OBS keyword'."""
    from astropy.table import QTable
    ev = QTable({"FRAME": np.array([0, 2], np.int32)})
    header = fits.Header({"DATE-OBS": "2037-03-01T00:00:00", "FRAMTIME": 0.005, **cards})
    add_time(ev, header, n_frames=4,
             frame_times=None if frame_times is None else frame_times * u.s)
    mjd = Time("2037-03-01T00:00:00", scale="utc").tt.mjd - tstart / 86400.0
    assert ev.meta["MJDREFI"] + ev.meta["MJDREFF"] == pytest.approx(mjd, abs=1e-9)
    assert ev.meta["TSTART"] == tstart and ev.meta["TIMESYS"] == "TT"
    assert not any("has no MJDREF" in line for line in ev.meta["HISTORY"])
    assert any(line.endswith("MJDREFI/MJDREFF from DATE-OBS: TIME = TSTART is at DATE-OBS")
               for line in ev.meta["HISTORY"])


def test_pi_channels_width_and_overflow():
    e = np.array([0.0, 4.99, 5.0, 1486.7, 20474.9, 20475.0, 1e6]) * u.eV
    np.testing.assert_array_equal(pi_channels(e), [0, 0, 1, 297, 4094, 4095, 4095])
    with pytest.raises(ValueError, match="NaN"):
        pi_channels(np.array([np.nan]) * u.eV)


def test_adu_frames_pha_in_adu(tmp_path):
    src = tmp_path / "adu.fits"
    hdu = fits.PrimaryHDU((_cube() / 4.0).astype(np.float32))
    hdu.header["BUNIT"] = "adu"
    hdu.header["GAIN"] = 4.0
    hdu.writeto(src)
    out = tmp_path / "ev.fits"
    assert _filter([src, "-o", out, "--frame-time", "5ms"]) == 0
    ev = read_events(out)
    assert sorted(np.asarray(ev["PHA"]).tolist()) == [375, 600, 3000]   # adu
    assert sorted(np.asarray(ev["PI"]).tolist()) == [300, 480, 2400]    # 5 eV
    assert ev.meta["PHAWIDTH"] == 4.0


def test_round_trip_keeps_time_gti_and_phas(tmp_path):
    src = _cube_file(tmp_path / "obs.fits", FRAMTIME=0.005, TSTART=5.0)
    out = tmp_path / "ev.fits"
    assert _filter([src, "-o", out]) == 0
    back = read_events(out)
    write_events(back, tmp_path / "again.fits", gti=read_gti(out))
    again = read_events(tmp_path / "again.fits")
    assert again.colnames == back.colnames
    for name in back.colnames:
        np.testing.assert_array_equal(np.asarray(again[name]), np.asarray(back[name]))
        assert again[name].dtype == back[name].dtype
    for key in back.meta:
        if key not in ("DATE",):
            assert again.meta[key] == back.meta[key], key
    np.testing.assert_array_equal(read_gti(tmp_path / "again.fits")["START"],
                                  read_gti(out)["START"])


def fitsverify_counts(path):
    run = subprocess.run(["fitsverify", str(path)], capture_output=True, text=True)
    m = re.search(r"Verification found (\d+) warning\(s\) and (\d+) error\(s\)", run.stdout)
    assert m, run.stdout[-2000:]
    return int(m.group(1)), int(m.group(2)), run.stdout


@pytest.mark.skipif(shutil.which("fitsverify") is None,
                    reason="fitsverify (HEASARC; Debian package, .ci/run installs it) not on PATH")
def test_fitsverify_reports_no_warning_and_no_error(tmp_path):
    from test_geant4 import pixel_table

    src = _cube_file(tmp_path / "obs.fits", **OBS, TSTART=100.0, MJDREF=51544.0, TIMEDEL=0.005)
    outputs = []
    out = tmp_path / "frames_ev.fits"
    assert _filter([src, "-o", out, "--edge-status"]) == 0
    outputs.append(out)
    evt = geant4_event_list(tmp_path / "g4_evt.fits")
    out = tmp_path / "list_ev.fits"
    assert _filter([evt, "-o", out, "--phas-order", "centre-first", "--phas-unit", "keV",
                    "--event-threshold", "100eV", "--split-threshold", "100eV"]) == 0
    outputs.append(out)
    pix = pixel_table(tmp_path / "g4_pix.fits")
    out = tmp_path / "pix_ev.fits"
    assert _filter([pix, "-o", out, "--phas-unit", "keV"]) == 0
    outputs.append(out)
    for out in outputs:
        warnings_, errors, text = fitsverify_counts(out)
        assert (warnings_, errors) == (0, 0), text
