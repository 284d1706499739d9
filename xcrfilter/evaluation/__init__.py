"""How good a filter is: numbers and figures against simulator truth.

The quality metrics of the seed paper (Sec. 3.4) with their confidence
intervals (:mod:`~xcrfilter.evaluation.metrics`), the events and rejections
they are computed on (:mod:`~xcrfilter.evaluation.selection`) and ROC curves
(:mod:`~xcrfilter.evaluation.roc`); the
tables of those metrics for every filter and energy band
(:mod:`~xcrfilter.evaluation.tables`) and the pixel-wise comparison of a
pixel mask with the truth (:mod:`~xcrfilter.evaluation.pixels`); the
comparison of every filter on the same events, streamed chunk by chunk into
one report (:mod:`~xcrfilter.evaluation.compare`); and the figures: ROC
curves, spectra and frames with verdicts (:mod:`~xcrfilter.evaluation.plots`)
and the report's PNG files (:mod:`~xcrfilter.evaluation.compare_plots`).
Numbers and pictures live in separate modules; matplotlib is imported only
by the figure modules.  The command that writes a report is
:mod:`xcrfilter.cli.compare`.
"""
