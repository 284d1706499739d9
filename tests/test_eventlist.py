"""Event lists as input: PHAS order and unit, verdicts of hand-built islands, columns kept."""
import hashlib
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

from xcrfilter.cli.main import main
from xcrfilter.io.eventlist import read_event_list, to_row_major
from xcrfilter.io.eventfile import read_events

# (dy, dx) in the centre-first order, written from its definition: the centre,
# the 3x3 ring row-major from (-1, -1), the outer 16 row-major from (-2, -2)
_CF = ([(0, 0)] + [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
       + [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
          if max(abs(dy), abs(dx)) == 2])

# name: (centre eV, {(dy, dx): eV}, STATUS, ASCA GRADE, EPIC-pn PATTERN), split 100 eV
# dy = +1 is +RAWY (the next image row).
ISLANDS = {
    "single": (1000.0, {}, 0, 0, 0),
    "double_up": (2000.0, {(1, 0): 500.0}, 0, 2, 1),
    "double_right_outer": (1500.0, {(0, 1): 400.0, (0, 2): 200.0}, 2, 4, 2),
    "single_outer": (1200.0, {(2, 2): 300.0}, 0, 0, 0),
    "diagonal": (1000.0, {(1, 1): 400.0}, 1, 1, 13),
    "triple_up_left": (3000.0, {(1, 0): 300.0, (0, -1): 300.0}, 0, 6, 5),
    "quad_down_right": (3000.0, {(-1, 0): 200.0, (0, 1): 200.0, (-1, 1): 200.0}, 0, 6, 11),
    "mip": (12000.0, {}, 4, 0, 0),
    "split_at_threshold": (1000.0, {(0, 1): 100.0}, 0, 4, 2),
}


def _centre_first_kev(centre, pixels):
    values = {(0, 0): centre, **pixels}
    return np.array([values.get(off, 0.0) for off in _CF]) / 1000.0


def geant4_event_list(path, nan_row=None):
    """An event list as the Geant4 background team writes one: PHAS centre-first in
    keV, no TUNIT, no EXTNAME, their own PATTERN, truth columns, TEXPFRAM."""
    n = len(ISLANDS)
    phas = np.array([_centre_first_kev(c, p) for c, p, *_ in ISLANDS.values()], np.float32)
    energy = np.where(phas >= 0.1, phas, 0).sum(axis=1).astype(np.float32)
    if nan_row is not None:
        energy[nan_row] = np.nan
    cols = [fits.Column("FRAME", "J", array=np.arange(n) // 3),
            fits.Column("DETID", "B", array=np.arange(n) % 4),
            fits.Column("ACTX", "I", array=100 + 10 * np.arange(n)),
            fits.Column("ACTY", "I", array=200 + 7 * np.arange(n)),
            fits.Column("ENERGY", "E", array=energy),
            fits.Column("PATTERN", "B", array=np.full(n, 13)),
            fits.Column("PHA", "E", array=energy),
            fits.Column("PHAS", "25E", array=phas),
            fits.Column("PRIMID", "J", array=1000 + np.arange(n)),
            fits.Column("RUNID", "K", array=np.full(n, 2020100617315700))]
    table = fits.BinTableHDU.from_columns(cols)
    table.header["TEXPFRAM"] = (0.005, "Frame exposure time in sec")
    table.header["NFRAMES"] = 3
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    return path


def _run(*args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(["filter", *map(str, args), "-q"])


TARGET = ["--phas-order", "centre-first", "--phas-unit", "keV",
          "--event-threshold", "100eV", "--split-threshold", "100eV"]


def test_geant4_event_list_verdicts_and_columns(tmp_path):
    src = geant4_event_list(tmp_path / "evt.fits")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    out = tmp_path / "out.fits"
    assert _run(src, "--method", "vfaint", "-o", out, *TARGET) == 0
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
    ev = read_events(out)
    names = list(ISLANDS)
    expect = np.array([v[2] for v in ISLANDS.values()])
    got = np.asarray(ev["STATUS"])
    assert dict(zip(names, got)) == dict(zip(names, expect))
    assert np.asarray(ev["GRADE"]).tolist() == [v[3] for v in ISLANDS.values()]
    assert np.asarray(ev["PATTERN_X"]).tolist() == [v[4] for v in ISLANDS.values()]
    # every input column kept, in order, with its values (energies now in eV); the
    # file's ENERGY as ENERGY_IN, ENERGY the active 3x3 sum (bit 2 and PI)
    with fits.open(src) as hdul:
        data = hdul[1].data
        for name in data.columns.names:
            assert name in ev.colnames
            if name in ("ENERGY", "PHA"):
                got_in = ev["ENERGY_IN" if name == "ENERGY" else name]
                np.testing.assert_allclose(got_in.to_value(u.keV), data[name], rtol=1e-6)
            elif name == "PHAS":
                rm = ev["PHAS"].to_value(u.keV)
                for k, (dy, dx) in enumerate(_CF):
                    np.testing.assert_allclose(rm[:, (dy + 2) * 5 + dx + 2], data["PHAS"][:, k],
                                               rtol=1e-6)
            else:
                np.testing.assert_array_equal(np.asarray(ev[name]), data[name])
    assert [c for c in ev.colnames if c != "ENERGY_IN"][:10] == \
        [c.upper() for c in data.columns.names]
    assert ev.colnames.index("ENERGY_IN") == ev.colnames.index("ENERGY") + 1
    rm = ev["PHAS"].to_value(u.eV).reshape(-1, 5, 5)[:, 1:4, 1:4].reshape(-1, 9)
    np.testing.assert_allclose(ev["ENERGY"].to_value(u.eV),
                               np.where(rm >= 100.0, rm, 0).sum(axis=1), rtol=1e-6)
    assert ev.meta["TEXPFRAM"] == 0.005
    np.testing.assert_allclose(ev["TIME"].to_value(u.s), 0.005 * np.asarray(ev["FRAME"]))
    np.testing.assert_array_equal(np.asarray(ev["PI"]),
                                  np.floor(ev["ENERGY"].to_value(u.eV) / 5.0 + 1e-6))


def test_strict_thresholds_on_an_event_list(tmp_path):
    src = geant4_event_list(tmp_path / "evt.fits")
    out = tmp_path / "strict.fits"
    assert _run(src, "-o", out, *TARGET, "--strict-thresholds") == 0
    ev = read_events(out)
    assert "SACRAD" not in ev.meta and "SAC_DIST" not in ev.colnames  # vfaint only
    k = list(ISLANDS).index("split_at_threshold")
    assert ev["PATTERN_X"][k] == 0 and ev["GRADE"][k] == 0 and ev["STATUS"][k] == 0
    assert ev.meta["VFSTRICT"] is True
    k = list(ISLANDS).index("double_up")
    assert ev["PATTERN_X"][k] == 1


def test_event_list_errors(tmp_path, capsys):
    src = geant4_event_list(tmp_path / "evt.fits")
    assert _run(src, "-o", tmp_path / "a.fits", "--phas-order", "centre-first") == 1
    assert "--phas-unit" in capsys.readouterr().err
    bad = geant4_event_list(tmp_path / "nan.fits", nan_row=4)
    assert _run(bad, "-o", tmp_path / "b.fits", *TARGET) == 1
    err = capsys.readouterr().err
    assert "NaN" in err and "row 4" in err
    assert _run(src, "-o", tmp_path / "c.fits", "--method", "sac", *TARGET) == 1
    assert "only the vfaint filter" in capsys.readouterr().err
    # nothing to calibrate on an event list: an explicit fraction is refused
    assert _run(src, "-o", tmp_path / "d.fits", "--max-lost-xray", "2%", *TARGET) == 1
    assert "calibrates on image frames" in capsys.readouterr().err
    assert not (tmp_path / "d.fits").exists()
    assert not (tmp_path / "a.fits").exists() and not (tmp_path / "b.fits").exists()


def test_events_extension_preferred_and_tunit_honoured(tmp_path):
    decoy = fits.BinTableHDU.from_columns([fits.Column("X", "J", array=[1])], name="OTHER")
    phas = np.zeros((1, 25), np.float32)
    phas[0, 12], phas[0, 13] = 900.0, 300.0
    events = fits.BinTableHDU.from_columns(
        [fits.Column("PHAS", "25E", unit="eV", array=phas),
         fits.Column("ENERGY", "E", unit="eV", array=[1200.0])], name="EVENTS")
    path = tmp_path / "ev.fits"
    fits.HDUList([fits.PrimaryHDU(), decoy, events]).writeto(path)
    ev = read_event_list(path, phas_unit="keV")     # TUNIT wins over phas_unit
    assert ev["PHAS"].unit == u.eV and ev["PHAS"][0, 13] == 300 * u.eV
    assert ev["ENERGY"][0] == 1200 * u.eV


def test_to_row_major_inverts_centre_first():
    rm = np.arange(50, dtype=float).reshape(2, 25)
    cf = np.array([[row[(dy + 2) * 5 + dx + 2] for dy, dx in _CF] for row in rm])
    np.testing.assert_array_equal(to_row_major(cf, "centre-first"), rm)
    with pytest.raises(ValueError, match="phas_order"):
        to_row_major(cf, "spiral")


def test_event_list_and_frames_give_the_same_verdict(tmp_path):
    """Bit 2 (MIP) uses the active 3x3 sum whatever the input: an event whose 5x5 sum
    (the file's ENERGY, as the Geant4 team writes it) is above 10 keV and its 3x3 sum
    below used to be rejected from the event list and accepted from the frames."""
    from xcrfilter import run_pipeline
    cube = np.zeros((1, 32, 32), np.float32)
    cube[0, 10, 10] = 6000.0           # centre of a double
    cube[0, 10, 11] = 3900.0           # 3x3: 9.9 keV in all
    cube[0, 12, 12] = 200.0            # outer ring, active: the 5x5 sum is 10.1 keV
    cube[0, 20, 20] = 9900.0           # a single ...
    cube[0, 22, 22] = 200.0            # ... with an active outer pixel: 5x5 sum 10.1 keV
    frames_ev = run_pipeline(cube * u.eV, "vfaint")
    phas = frames_ev["PHAS"].to_value(u.eV).reshape(-1, 25)
    cols = [fits.Column("FRAME", "J", array=np.asarray(frames_ev["FRAME"])),
            fits.Column("RAWX", "I", array=np.asarray(frames_ev["RAWX"])),
            fits.Column("RAWY", "I", array=np.asarray(frames_ev["RAWY"])),
            fits.Column("ENERGY", "E", unit="eV", array=np.where(phas >= 80, phas, 0).sum(1)),
            fits.Column("PHAS", "25E", unit="eV", array=phas)]
    src = tmp_path / "evt.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="EVENTS")]
                 ).writeto(src)
    out = tmp_path / "out.fits"
    assert _run(src, "-o", out) == 0
    ev = read_events(out)
    assert ev["ENERGY_IN"].to_value(u.eV).tolist() == [10100.0, 10100.0]
    assert ev["ENERGY"].to_value(u.eV).tolist() == [9900.0, 9900.0]
    assert np.asarray(ev["STATUS"]).tolist() == np.asarray(frames_ev["STATUS"]).tolist()
    assert np.asarray(ev["STATUS"]).tolist() == [2, 0]   # bit 1 for the double only


def test_wrong_phas_order_is_refused_naming_the_one_that_fits(tmp_path, capsys):
    """A centre-first list read row-major used to be filtered silently (397 of the 1007
    STATUS values of a real WFI Geant4 run flipped)."""
    src = geant4_event_list(tmp_path / "evt.fits")
    out = tmp_path / "out.fits"
    wrong = [a for a in TARGET if a not in ("--phas-order", "centre-first")]
    assert _run(src, "-o", out, *wrong) == 1
    err = capsys.readouterr().err
    assert "is not the largest of its 3x3 island" in err and "--phas-order centre-first" in err
    assert not out.exists()
    assert _run(src, "-o", out, *TARGET) == 0
