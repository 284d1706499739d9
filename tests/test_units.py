"""One meaning of GAIN (eV/adu), one energy band, one validation of energies."""
import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

from xcrfilter.filters.laplacian import lacosmic_mask
from xcrfilter.io.frames import as_energy_cube
from xcrfilter.units import DEFAULT_BAND, as_band, as_energy, as_gain, header_gain


def test_default_band_is_defined_once():
    from xcrfilter.evaluation import metrics, tables
    from xcrfilter.filters import cam
    from xcrfilter.ml import training
    assert DEFAULT_BAND.to_value(u.keV).tolist() == [0.3, 10.0]
    assert metrics.DEFAULT_BAND is DEFAULT_BAND and cam.DEFAULT_BAND is DEFAULT_BAND
    assert tables.FULL_BAND == (0.3, 10.0) and training.DEFAULT_BAND_EV == (300.0, 10000.0)


def test_as_gain_one_meaning():
    assert as_gain(3.65 * u.eV / u.adu) == 3.65 * u.eV / u.adu
    assert as_gain(0.01 * u.keV / u.adu).to_value(u.eV / u.adu) == pytest.approx(10.0)
    assert as_gain(5 * u.eV).unit == u.eV / u.adu  # a bare energy is per adu
    # electron/adu is converted with the pair energy (3.65 eV/electron by default)
    assert as_gain(2 * u.electron / u.adu).to_value(u.eV / u.adu) == pytest.approx(7.3)
    assert as_gain(2 * u.electron / u.adu, pair_energy=3.0 * u.eV / u.electron).value == 6.0
    with pytest.raises(TypeError, match="Quantity"):
        as_gain(3.65)  # a bare number is ambiguous
    with pytest.raises(ValueError, match="positive"):
        as_gain(-1 * u.eV / u.adu)
    with pytest.raises(u.UnitConversionError, match="eV/adu or electron/adu"):
        as_gain(1 * u.m / u.adu)


def test_header_gain_reads_a_unit_in_the_comment():
    h = fits.Header()
    assert header_gain(h) is None
    h["GAIN"] = 7.3
    assert header_gain(h).to_value(u.eV / u.adu) == pytest.approx(7.3)
    h["GAIN"] = (2.0, "[electron/adu] gain")
    assert header_gain(h).to_value(u.eV / u.adu) == pytest.approx(7.3)
    h["GAIN"] = (2.0, "[m] gain")
    with pytest.raises(ValueError, match="GAIN"):
        header_gain(h)
    h["GAIN"] = "fast"
    with pytest.raises(ValueError, match="GAIN keyword must be a number"):
        header_gain(h)


@pytest.mark.parametrize("gain, comment", [(7.3, "gain"), (2.0, "[electron/adu] gain")])
def test_gain_means_the_same_to_filter_and_lacosmic(tmp_path, gain, comment):
    """An adu frame with GAIN: 1000 adu are 7300 eV to the reader, 2 e-/adu to astroscrappy."""
    data = np.zeros((16, 16), np.float32)
    data[8, 8] = 1000.0
    hdu = fits.PrimaryHDU(data)
    hdu.header["BUNIT"] = "adu"
    hdu.header["GAIN"] = (gain, comment)
    path = tmp_path / "adu.fits"
    hdu.writeto(path)
    assert as_energy_cube(str(path)).data[0, 8, 8] == pytest.approx(7300.0, rel=1e-6)
    assert lacosmic_mask(str(path)).header["LACGAIN"] == pytest.approx(2.0)
    # the gain argument has the same meaning
    q = data * u.adu
    assert as_energy_cube(q, gain=7.3 * u.eV / u.adu).data[0, 8, 8] == pytest.approx(7300.0)
    assert as_energy_cube(q, gain=2 * u.electron / u.adu).data[0, 8, 8] == pytest.approx(7300.0)
    assert lacosmic_mask(q, gain=7.3 * u.eV / u.adu).header["LACGAIN"] == pytest.approx(2.0)
    with pytest.raises(TypeError, match="Quantity"):
        lacosmic_mask(q, gain=2.0)


def test_lacosmic_command_gain_option(tmp_path, capsys):
    from xcrfilter.cli.main import main
    data = np.zeros((16, 16), np.float32)
    hdu = fits.PrimaryHDU(data)
    hdu.header["BUNIT"] = "adu"
    hdu.writeto(tmp_path / "a.fits")
    # a bare number is electron/adu on the lacosmic command (L.A.Cosmic's convention)
    for text in ("2", "7.3eV/adu", "2electron/adu"):
        out = tmp_path / f"m{text.replace('/', '_')}.fits"
        assert main(["lacosmic", str(tmp_path / "a.fits"), "-o", str(out),
                     "--gain", text]) == 0
        assert fits.getheader(out)["LACGAIN"] == pytest.approx(2.0)


def test_as_energy_and_as_band():
    assert as_energy(0.26 * u.keV, "event_threshold") == pytest.approx(260.0)
    with pytest.raises(TypeError, match="event_threshold"):
        as_energy(260.0, "event_threshold")
    with pytest.raises(ValueError, match="track_energy"):
        as_energy(-1 * u.eV, "track_energy")
    with pytest.raises(u.UnitConversionError, match="split"):
        as_energy(1 * u.s, "split")
    assert as_band((0.5, 2) * u.keV) == (500.0, 2000.0)
    for bad in ((2, 0.5) * u.keV, (0.5,) * u.keV, (0.5, np.inf) * u.keV, (-1, 2) * u.keV):
        with pytest.raises(ValueError, match="band"):
            as_band(bad)
