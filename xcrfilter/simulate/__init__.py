"""Physics simulator of X-ray imaging-detector frames with cosmic-ray background.

X-ray photons, galactic cosmic-ray primaries and their secondaries are
deposited in a back-illuminated silicon sensor described by
`xcrfilter.detector.DetectorModel`, diffused, integrated over pixels, and
read out with Gaussian noise; the truth (per-pixel label, per-source table,
per-tile class) comes with every frame.  See ``docs/simulation.rst``.
"""
from .core import BLOCK_FRAMES, FrameSimulator, SimulatedChunk, iter_frames, simulate_frames
from .dataset import (build_tile_dataset, build_validation_set, load_tile_dataset,
                      simulate_tiles)
from .fitsio import read_truth, write_simulation
from .params import DEFAULT_FLUORESCENCE_LINES, SimulationParameters
from .physics import absorption_probability, attenuation_length, cloud_sigma
from .truth import (LABEL_CR, LABEL_NONE, LABEL_XRAY, TILE_CLASS_NAMES, TILE_CR, TILE_EMPTY,
                    TILE_MIX, TILE_XRAY, event_truth, tile_classes)
from .spectra import (CallableSpectrum, LineSpectrum, LogUniformSpectrum, PowerLawSpectrum,
                      as_spectrum)
from .variants import PRESETS, PhysicsRanges, RandomPhysicsSimulator, preset, preset_names

__all__ = [
    "FrameSimulator", "SimulationParameters", "SimulatedChunk", "iter_frames",
    "simulate_frames", "event_truth", "tile_classes", "LogUniformSpectrum",
    "LineSpectrum", "CallableSpectrum", "as_spectrum", "attenuation_length",
    "absorption_probability", "cloud_sigma", "DEFAULT_FLUORESCENCE_LINES",
    "LABEL_NONE", "LABEL_XRAY", "LABEL_CR", "TILE_EMPTY", "TILE_XRAY", "TILE_CR",
    "TILE_MIX", "TILE_CLASS_NAMES", "BLOCK_FRAMES", "write_simulation", "read_truth",
    "build_tile_dataset", "build_validation_set", "load_tile_dataset", "simulate_tiles",
    "PowerLawSpectrum", "PhysicsRanges", "RandomPhysicsSimulator", "PRESETS", "preset",
    "preset_names",
]
