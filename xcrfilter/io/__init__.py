"""Frames in, files out: everything that reads or writes the package's data.

Energy frame cubes from arrays, ``CCDData`` and FITS files
(:mod:`~xcrfilter.io.frames`, their pixel units ``BUNIT``, gain and ADU
offset in :mod:`~xcrfilter.io.bunit`) and streamed a chunk at a time
(:mod:`~xcrfilter.io.stream`); FITS header conventions shared by every
writer (:mod:`~xcrfilter.io.headers`); OGIP event files and their
conventions (:mod:`~xcrfilter.io.eventfile`, :mod:`~xcrfilter.io.ogip`, the
time conventions and GTIs in :mod:`~xcrfilter.io.timing`);
the other inputs, event lists and Geant4 pixel-deposit tables
(:mod:`~xcrfilter.io.eventlist`, :mod:`~xcrfilter.io.geant4`, filtered by
:mod:`~xcrfilter.io.geant4_filter`) and the real CCD frames shipped with
dependencies (:mod:`~xcrfilter.io.realdata`); the
products besides events: pixel masks, class activation maps, image cubes,
PHA spectra with their response files and background levels
(:mod:`~xcrfilter.io.masks`, :mod:`~xcrfilter.io.maskfile`,
:mod:`~xcrfilter.io.products`, :mod:`~xcrfilter.io.cubefile`,
:mod:`~xcrfilter.io.spectra`, :mod:`~xcrfilter.io.spectrum_files`); and
outputs as transactions, checked before the work starts and written
atomically (:mod:`~xcrfilter.io.outputs`).  Nothing here filters events
except the event-list and Geant4 modes, which hand their input to the
pipeline's filters.
"""
