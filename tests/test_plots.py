"""Figures: labels that can be read, axes that say what they show."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from astropy.table import QTable, Table  # noqa: E402

from xcrfilter.evaluation.plots import plot_frame_verdicts, plot_roc  # noqa: E402


def test_frame_verdict_labels_do_not_overlap():
    """Labels of neighbouring rejected events used to be written on top of each other."""
    frame = np.zeros((64, 64))
    events = QTable({"RAWX": [10, 11, 12, 10, 30, 31], "RAWY": [10, 11, 10, 12, 30, 30],
                     "STATUS": [16, 32, 48, 1, 1, 16]})
    ax = plot_frame_verdicts(frame, events, {"VF": 7, "SAC": 16, "CAM": 32})
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert sorted(t.get_text() for t in ax.texts) == ["CAM", "SAC", "SAC", "SAC+CAM", "VF",
                                                      "VF"]
    assert not [(i, j) for i, a in enumerate(boxes) for j, b in enumerate(boxes)
                if i < j and a.overlaps(b)]


def test_roc_axis_states_its_scale_and_legend_is_readable():
    roc = Table({"CURVE": ["SAC", "SAC"], "FPR": [0.0, 0.05], "RECALL": [0.2, 0.6]})
    ax = plot_roc(roc)
    assert ax.get_xscale() == "symlog"
    assert "linear from 0 to 1 %" in ax.get_xlabel() and "logarithmic above" in ax.get_xlabel()
    assert ax.get_legend().get_texts()[0].get_fontsize() >= 9


def test_spectrum_marks_events_the_method_did_not_score():
    """The CAM panel counted out-of-band events as accepted without saying so."""
    import astropy.units as u

    from xcrfilter.evaluation.plots import plot_spectrum
    events = QTable({"ENERGY": [0.2, 1.0, 5.0, 50.0, 200.0] * u.keV})
    unscored = np.array([True, False, False, True, True])
    ax = plot_spectrum(events, np.array([False, True, False, False, False]),
                       truth=np.array([1, 2, 1, 2, 2]), unscored=unscored)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "not scored, counted as accepted (3)" in texts
    assert "CR accepted (2)" in texts
