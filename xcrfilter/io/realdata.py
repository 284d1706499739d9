"""Real CCD frames shipped inside installed dependencies (no download).

Two optical CCD images are distributed with the test data of packages this
package already depends on; they are used to show and test the Laplacian
baseline (:func:`xcrfilter.filters.laplacian.lacosmic_mask`) on real
cosmic rays.  They are *not* X-ray frames: their pixels count optical
photo-electrons, so they stay in their own units (electron or adu) and never
go through the eV pipeline.

``gmos``
    ``astroscrappy/tests/data/gmos.fits``: a 200 x 150 cut-out of a Gemini
    South GMOS-S exposure (S20190808S0048, 90 s) reduced with DRAGONS.  The
    ``SCI`` extension is already in electrons (DRAGONS ``ADUTOELE`` step; its
    ``VAR`` extension equals ``SCI + 18.0 e^2``, i.e. Poisson in electrons
    plus a 4.24 e- read noise), so it is read with unit ``electron``,
    gain 1 and read noise 4.24 e-.  (astroscrappy's own test passes
    ``gain=1.933``, the GMOS amplifier gain, which double-counts the gain on
    these electron data.)
``saao``
    ``ccdproc/tests/data/a8280271.fits``: a raw 536 x 520 frame of the SAAO
    1.0 m STE3 CCD (150 s).  Raw ADU with ``GAIN = 1.9 e-/ADU`` and
    ``RDNOISE = 5.0 e-`` in the header.  The overscan ``BIASSEC [4:13,1:520]``
    is subtracted (median per row) and the frame trimmed to
    ``TRIMSEC [17:528,1:520]`` (512 x 520) with ccdproc, so that the counts
    handed to astroscrappy are photo-electrons / gain, as its noise model
    requires.
"""
from __future__ import annotations

import importlib.resources

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

__all__ = ["REAL_FRAMES", "real_frame_path", "load_real_frame"]

#: Description of the shipped frames: package, resource path, extension,
#: unit after preparation, gain [electron/unit], read noise [electron].
REAL_FRAMES = {
    "gmos": dict(package="astroscrappy", resource="tests/data/gmos.fits", hdu="SCI",
                 unit=u.electron, gain=1.0, readnoise=4.24,
                 title="Gemini-South GMOS-S, S20190808S0048 cut-out (DRAGONS, electrons)"),
    "saao": dict(package="ccdproc", resource="tests/data/a8280271.fits", hdu=0,
                 unit=u.adu, gain=1.9, readnoise=5.0,
                 title="SAAO 1.0 m STE3 CCD, a8280271 (raw ADU, overscan-subtracted)"),
}


def real_frame_path(name):
    """Path of the shipped real frame ``name`` ('gmos' or 'saao').

    Raises
    ------
    KeyError
        Unknown name.
    FileNotFoundError
        The package is installed without its test data.
    """
    if name not in REAL_FRAMES:
        raise KeyError(f"unknown real frame {name!r}; choose from {sorted(REAL_FRAMES)}.")
    info = REAL_FRAMES[name]
    try:
        path = importlib.resources.files(info["package"]).joinpath(info["resource"])
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(f"{info['package']} is not installed.") from exc
    if not path.is_file():
        raise FileNotFoundError(f"{info['package']}/{info['resource']} is not in this "
                                "installation (test data not shipped).")
    return str(path)


def load_real_frame(name):
    """Read and prepare the shipped real frame ``name`` as a `~astropy.nddata.CCDData`.

    Returns
    -------
    `~astropy.nddata.CCDData`
        2-D float32 data with unit ``electron`` (gmos) or ``adu`` (saao); the
        header carries ``GAIN`` [electron/unit] and ``RDNOISE`` [electron].
    """
    import ccdproc

    info = REAL_FRAMES[name]
    path = real_frame_path(name)
    with fits.open(path) as hdul:
        hdu = hdul[info["hdu"]]
        header = hdul[0].header.copy() if info["hdu"] != 0 else hdu.header.copy()
        data = np.array(hdu.data, dtype=np.float32)
    for key in ("BSCALE", "BZERO"):
        header.remove(key, ignore_missing=True)
    ccd = CCDData(data, unit=info["unit"], meta=header)
    if name == "saao":
        ccd = ccdproc.subtract_overscan(ccd, fits_section=header["BIASSEC"].replace(" ", ""),
                                        overscan_axis=1, median=True)
        ccd = ccdproc.trim_image(ccd, fits_section=header["TRIMSEC"].replace(" ", ""))
        ccd.data = ccd.data.astype(np.float32)
    ccd.meta["GAIN"] = (info["gain"], "[electron/%s] gain" % info["unit"])
    ccd.meta["RDNOISE"] = (info["readnoise"], "[electron] read noise rms")
    ccd.meta["BUNIT"] = info["unit"].to_string()
    ccd.meta["XCRFRAME"] = (name, "xcrfilter.io.realdata frame name")
    return ccd
