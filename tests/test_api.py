"""The public API: top-level names and the one filter contract."""
import subprocess
import sys

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable

import xcrfilter
from xcrfilter.simulate import SimulationParameters

_FILTERS = {  # name -> (own STATUS bit, own columns)
    "vfaint_filter": (0b111, ()),
    "lacosmic_filter": (1 << 3, ()),
    "sac_filter": (1 << 4, ("SAC_DIST",)),
    "cam_filter": (1 << 5, ("PROB_CR", "CAM_NET")),
    "morph_filter": (1 << 6, ("PROB_MORPH",)),
    "unet_filter": (1 << 10, ("PROB_UNET",)),
}


def test_top_level_names():
    for name in ("find_events", "vfaint_filter", "sac_filter", "cam_filter", "lacosmic_filter",
                 "morph_filter", "run_pipeline", "read_frames", "read_events", "write_events",
                 "simulate_frames"):
        assert name in xcrfilter.__all__ and callable(getattr(xcrfilter, name))
    from xcrfilter.filters.sac import sac_filter
    assert xcrfilter.sac_filter is sac_filter
    with pytest.raises(AttributeError, match="no_such_name"):
        xcrfilter.no_such_name  # noqa: B018


def test_import_is_light():
    """``import xcrfilter`` loads neither keras/jax nor scikit-learn nor astroscrappy."""
    code = ("import sys, xcrfilter; heavy = [m for m in ('keras', 'jax', 'sklearn', "
            "'astroscrappy', 'xcrfilter.pipeline') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


@pytest.fixture(scope="module")
def sim():
    return xcrfilter.simulate_frames(4, seed=3, shape=(128, 128),
                                     params=SimulationParameters(cr_rate=2.0, xray_rate=4.0))


def _available(name):
    from xcrfilter.pipeline import load_method
    return load_method(name.replace("_filter", "")).available()


@pytest.mark.parametrize("name", list(_FILTERS))
def test_filter_contract(name, sim):
    """Every filter returns a new QTable: input columns, its own columns, bits replaced."""
    assert _available(name), f"{name}: the shipped model is missing from the package"
    func = getattr(xcrfilter, name)
    bit, columns = _FILTERS[name]
    frames = sim.frames * u.eV
    frames_before = frames.copy()
    events = xcrfilter.find_events(frames)
    assert len(events) > 20
    events["STATUS"] = np.asarray(events["STATUS"]) | np.int32(bit)  # stale bits of a past run
    events["EXTRA"] = np.arange(len(events))
    before = events.copy()
    out = func(frames, events)
    assert isinstance(out, QTable) and out is not events
    assert out.colnames[:len(events.colnames)] == events.colnames
    assert set(out.colnames) - set(events.colnames) <= set(columns)
    np.testing.assert_array_equal(out["EXTRA"], before["EXTRA"])
    np.testing.assert_array_equal(out["ENERGY"], before["ENERGY"])
    # the input is untouched, frames included
    for col in before.colnames:
        np.testing.assert_array_equal(np.asarray(events[col]), np.asarray(before[col]))
    np.testing.assert_array_equal(frames, frames_before)
    # the stale bits were cleared: some events are not rejected by this filter
    status = np.asarray(out["STATUS"])
    assert ((status & bit) == 0).any()
    # other bits are untouched
    np.testing.assert_array_equal(status & ~bit, np.asarray(before["STATUS"]) & ~bit)
    # without events, the filter finds them itself
    alone = func(frames)
    assert isinstance(alone, QTable) and len(alone) == len(events)
    assert set(columns) <= set(alone.colnames)


def test_no_import_cycle_through_the_command_line():
    """Modules that define options import xcrfilter.cli.argtypes, never xcrfilter.cli.main."""
    code = ("import argparse, sys\n"
            "import xcrfilter.cli.compare, xcrfilter.cli.demo, xcrfilter.filters.sac\n"
            "p = argparse.ArgumentParser()\n"
            "xcrfilter.cli.compare.add_arguments(p)\n"
            "xcrfilter.filters.sac.FILTER.add_cli_options(argparse.ArgumentParser())\n"
            "print('xcrfilter.cli.main' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
