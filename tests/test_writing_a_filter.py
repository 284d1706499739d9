"""The example filter of docs/writing_a_filter.rst, alone and as a pipeline plug-in."""
import argparse
import ast
import dataclasses
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

from astropy.io import fits

from xcrfilter import find_events, pipeline, registry, run_pipeline, write_events
from xcrfilter.evaluation.tables import compare_table
from xcrfilter.registry import STATUS_BITS

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


@pytest.fixture
def bright(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import bright_filter
    return bright_filter


@pytest.fixture
def registered(bright):
    """The example filter registered as ``bright`` (one line), unregistered afterwards."""
    registry.register("bright", "bright_filter")
    yield bright
    del registry.FILTERS["bright"]


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
    assert again.meta["BRTLIMIT"] == 8000.0 and again.meta["BRTNREJ"] == 1
    with pytest.raises(TypeError, match="limit"):
        bright.bright_filter(None, ev, limit=8000.0)
    with pytest.raises(ValueError, match=r"\['ENERGY'\]"):
        bright.bright_filter(None, ev[["STATUS"]])


def test_example_filter_in_the_pipeline(registered, tmp_path):
    out = run_pipeline(_frames(), "vfaint,bright", options={"bright": {"limit": 5 * u.keV}},
                       chunk_frames=1)
    assert (np.asarray(out["STATUS"]) & 128 > 0).tolist() == [False, True, True]
    assert out.meta["BRTNREJ"] == 2  # summed over the two chunks (COUNTS)
    assert "bright" in out.meta["FILTERS"]
    # everything else is derived from its STATUS declaration
    assert registry.METHOD_BITS["bright"] == 128
    assert STATUS_BITS["BRIGHT"] == 7 and "bright" in pipeline.available_methods()
    path = tmp_path / "events.fits"
    write_events(out, path)
    assert fits.getheader(path, "EVENTS")["STATUS7"] == "BRIGHT"
    # and the comparison reports it under its name, alone and with VF
    truth = np.array([2, 1, 2])
    table = compare_table(out, truth)
    assert {"VF", "BRIGHT", "VF+BRIGHT"} == set(table["METHOD"])
    full = table[(table["METHOD"] == "BRIGHT") & (table["BAND"] == "0.3-10")][0]
    assert (full["TP"], full["FP"], full["TN"], full["FN"]) == (1, 1, 0, 1)


def test_register_refuses_taken_bits_and_names(bright, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="registered already"):
        registry.register("sac", "bright_filter")
    monkeypatch.setattr(bright, "FILTER", dataclasses.replace(
        bright.FILTER, status={"BRIGHT": (4, "collides with SAC")}))
    with pytest.raises(ValueError, match="bit 4 declared twice"):
        registry.register("bright", "bright_filter")
    assert "bright" not in registry.FILTERS  # a refused filter leaves no trace
    assert STATUS_BITS["SAC"] == 4


def test_example_uses_public_names_only():
    tree = ast.parse((EXAMPLES / "bright_filter.py").read_text())
    imported = [(node.module, alias.name) for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) for alias in node.names]
    assert imported and all(not part.startswith("_") for module, name in imported
                            for part in [*module.split("."), name])


def test_example_options_from_its_declaration(registered):
    spec = registry.filter_spec("bright")
    parser = argparse.ArgumentParser()
    registry.add_cli_options(parser)
    args = parser.parse_args(["--bright-limit", "5keV"])
    assert registry.options_from_args(args, ["bright"]) == {"bright": {"limit": 5 * u.keV}}
    assert spec.label == "BRIGHT" and spec.bits == 128
    with pytest.raises(ValueError, match="'limt'.*'bright'"):
        run_pipeline(_frames(), "bright", options={"bright": {"limt": 5 * u.keV}})
