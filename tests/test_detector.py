"""Detector model: units, preset values and validation."""
import astropy.units as u
import numpy as np
import pytest

from xcrfilter.detector import DetectorModel


def test_wfi_preset_values_and_noise_in_ev():
    wfi = DetectorModel.wfi()
    assert wfi.pixel_size == 130 * u.um and wfi.thickness == 450 * u.um
    assert wfi.readout_noise == 7 * u.electron and wfi.fano_factor == 0.118
    assert wfi.shape == (512, 512) and wfi.frame_time == 5 * u.ms
    # 7 e- x 3.65 eV = 25.55 eV; the 80 eV split threshold is ~3.1 sigma
    assert wfi.readout_noise_energy.to_value(u.eV) == pytest.approx(25.55)
    # Fano width at Mn K-alpha: sqrt(0.118 * 5895 * 3.65) = 50.39 eV rms
    assert wfi.fano_sigma(5.895 * u.keV).to_value(u.eV) == pytest.approx(50.39, abs=0.01)
    fwhm = wfi.energy_resolution(5.895 * u.keV).to_value(u.eV)
    assert fwhm == pytest.approx(2.3548 * np.hypot(50.39, 25.55), rel=1e-3)


def test_units_are_converted_and_pair_energy_accepts_ev():
    det = DetectorModel(pixel_size=0.024 * u.mm, pair_energy=3.71 * u.eV,
                        gain=4.0 * u.eV, readout_noise=3 * u.electron)
    assert det.pixel_size.to_value(u.um) == pytest.approx(24.0)
    assert det.pair_energy.unit == u.eV / u.electron
    assert det.gain == 4.0 * u.eV / u.adu
    cards = dict((k, v) for k, v, _ in det.to_header_cards())
    assert cards["PAIRENER"] == 3.71 and cards["GAIN"] == 4.0
    assert cards["PIXSIZE"] == pytest.approx(24.0)


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(pixel_size=130), TypeError, "pixel_size"),
    (dict(thickness=450 * u.s), u.UnitConversionError, "thickness"),
    (dict(gain=-1 * u.eV / u.adu), ValueError, "gain"),
    (dict(fano_factor=1.5), ValueError, "fano_factor"),
    (dict(readout_noise=-1 * u.electron), ValueError, "readout_noise"),
    (dict(shape=(4, 512)), ValueError, "shape"),
])
def test_bad_parameters(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        DetectorModel(**kwargs)


def test_replace_revalidates():
    wfi = DetectorModel.wfi()
    assert wfi.replace(readout_noise=3 * u.electron).readout_noise == 3 * u.electron
    with pytest.raises(ValueError, match="fano_factor"):
        wfi.replace(fano_factor=0.0)
