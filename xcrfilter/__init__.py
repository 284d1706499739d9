"""xcrfilter: cosmic-ray background filters for X-ray imaging detector frames.

The very-faint-mode (traditional) filter, the CAM-based machine-learning
filter of Poliszczuk et al., a Laplacian (astroscrappy / L.A.Cosmic) baseline
and self-anti-coincidence, on astropy ``CCDData`` frames and FITS event
tables, with a physics frame simulator for training and testing data.
"""
import importlib.metadata

try:
    # the version setuptools-scm gave the installed distribution
    __version__ = importlib.metadata.version("xcrfilter")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - never installed
    __version__ = "unknown"

from .detector import DetectorModel  # noqa: E402
from .events import find_events  # noqa: E402
from .registry import STATUS_BITS  # noqa: E402

#: Public names imported on first use (module ``__getattr__``), so that
#: ``import xcrfilter`` stays fast: name -> module defining it.
_LAZY = {
    "vfaint_filter": "xcrfilter.filters.vfaint",
    "lacosmic_filter": "xcrfilter.filters.laplacian",
    "lacosmic_mask": "xcrfilter.filters.laplacian",
    "sac_filter": "xcrfilter.filters.sac",
    "track_mask": "xcrfilter.filters.sac",
    "cam_filter": "xcrfilter.filters.cam",
    "morph_filter": "xcrfilter.filters.morph",
    "unet_filter": "xcrfilter.filters.unet",
    "unet_mask": "xcrfilter.filters.unet",
    "run_pipeline": "xcrfilter.pipeline",
    "read_frames": "xcrfilter.io.frames",
    "read_events": "xcrfilter.io.eventfile",
    "write_events": "xcrfilter.io.eventfile",
    "simulate_frames": "xcrfilter.simulate",
}

__all__ = ["__version__", "DetectorModel", "find_events", "STATUS_BITS", *_LAZY]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xcrfilter' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
