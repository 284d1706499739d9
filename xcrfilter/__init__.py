"""xcrfilter: cosmic-ray background filters for X-ray imaging detector frames.

The very-faint-mode (traditional) filter, the CAM-based machine-learning
filter of Poliszczuk et al., a Laplacian (astroscrappy / L.A.Cosmic) baseline
and self-anti-coincidence, on astropy ``CCDData`` frames and FITS event
tables, with a physics frame simulator for training and testing data.
"""
try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - running from a source tree without a build
    try:
        from importlib.metadata import version as _v
        __version__ = _v("xcrfilter")
    except Exception:
        __version__ = "unknown"

from .detector import DetectorModel  # noqa: E402
from .events import STATUS_BITS, find_events  # noqa: E402

__all__ = ["__version__", "DetectorModel", "find_events", "STATUS_BITS"]
