"""The example filter of docs/writing_a_filter.rst, alone and as a pipeline plug-in."""
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

from xcrfilter import events as events_module
from xcrfilter import find_events, pipeline, run_pipeline

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


@pytest.fixture
def bright(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import bright_filter
    return bright_filter


def _frames():
    frames = np.zeros((2, 32, 32), np.float32)
    frames[0, 8, 8] = 1500.0     # 1.5 keV
    frames[0, 20, 20] = 6000.0   # 6 keV
    frames[1, 10, 10] = 9000.0   # 9 keV
    return frames * u.eV


def test_example_filter_contract(bright):
    ev = find_events(_frames())
    out = bright.bright_filter(_frames(), ev, limit=5 * u.keV)
    assert ((out["STATUS"] & 128) > 0).tolist() == [False, True, True]
    assert ev["STATUS"].tolist() == [0, 0, 0]  # input untouched
    again = bright.bright_filter(None, out, limit=8 * u.keV)  # a re-run replaces the bit
    assert ((again["STATUS"] & 128) > 0).tolist() == [False, False, True]
    assert again.meta["BRTLIMIT"][0] == 8000.0 and again.meta["BRTNREJ"][0] == 1
    with pytest.raises(TypeError, match="limit"):
        bright.bright_filter(None, ev, limit=8000.0)
    with pytest.raises(ValueError, match=r"\['ENERGY'\]"):
        bright.bright_filter(None, ev[["STATUS"]])


def test_example_filter_in_the_pipeline(bright, monkeypatch):
    monkeypatch.setitem(pipeline.METHODS, "bright", "bright_filter")
    monkeypatch.setitem(pipeline.METHOD_BITS, "bright", 1 << bright.BRIGHT_BIT)
    monkeypatch.setitem(events_module.STATUS_BITS, "BRIGHT", bright.BRIGHT_BIT)
    monkeypatch.setitem(events_module.STATUS_BIT_DOC, "BRIGHT", "bright filter: ENERGY >= limit")
    out = run_pipeline(_frames(), "vfaint,bright", options={"bright": {"limit": 5 * u.keV}},
                       chunk_frames=1)
    assert (np.asarray(out["STATUS"]) & 128 > 0).tolist() == [False, True, True]
    assert out.meta["BRTNREJ"][0] == 2  # summed over the two chunks (COUNT_CARDS)
    assert "bright" in out.meta["FILTERS"][0]
