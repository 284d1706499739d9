"""The cosmic-ray filters: one module a filter, each with its declaration.

Every filter module holds the function users call, ``*_filter(frames,
events=None, *, ...)``, which returns a new events table with the filter's
STATUS bits cleared and set and its columns and header cards added, and one
:class:`xcrfilter.contract.Filter` named ``FILTER`` that declares its name,
bits, parameters, shared inputs and calibratable threshold:
:mod:`~xcrfilter.filters.vfaint` (the traditional very-faint-mode screening),
:mod:`~xcrfilter.filters.sac` (self-anti-coincidence near particle tracks),
:mod:`~xcrfilter.filters.laplacian` (L.A.Cosmic through astroscrappy),
:mod:`~xcrfilter.filters.cam` (the CAM machine-learning filter),
:mod:`~xcrfilter.filters.morph` (shape and whole-frame context),
:mod:`~xcrfilter.filters.obsctx` (context learnt from the observation itself) and
:mod:`~xcrfilter.filters.unet` (U-Net pixel segmentation: a mask and an event score);
:mod:`~xcrfilter.filters.probability` holds what the probability filters
share, :mod:`~xcrfilter.filters.lacosmic_units` the conversion of frames to
astroscrappy's units.  Filters never call each other: :mod:`xcrfilter.pipeline` composes
them through their declarations, and their models come from
:mod:`xcrfilter.ml`.
"""
