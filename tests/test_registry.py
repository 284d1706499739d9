"""One registry line per filter: STATUS bits, method masks, header cards, CLI help
and the comparison all derive from the filters' own declarations."""
import dataclasses
import re
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

from xcrfilter import registry
from xcrfilter.evaluation import compare, selection
from xcrfilter.events import FINDING_STATUS
from xcrfilter.registry import STATUS_BIT_DOC, STATUS_BITS
from xcrfilter.meta import CARD_COMMENTS, card_comment

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_bit_declared_once():
    declared = [(name, bit) for name in registry.FILTERS
                for name, (bit, _) in registry.filter_module(name).STATUS.items()]
    declared += [(name, bit) for name, (bit, _) in FINDING_STATUS.items()]
    bits = [bit for _, bit in declared]
    assert len(set(bits)) == len(bits)
    assert dict(STATUS_BITS) == dict(declared)
    assert list(STATUS_BITS.values()) == sorted(bits)
    assert dict(STATUS_BITS) == {"GRADE": 0, "OUTER_RING": 1, "ENERGY": 2, "LACOSMIC": 3,
                                 "SAC": 4, "CAM": 5, "MORPH": 6, "EDGE": 8, "OBSCTX": 9,
                                 "UNET": 10}
    # each filter's mask is the OR of its bits, and the masks do not overlap
    masks = [registry.METHOD_BITS[name] for name in registry.FILTERS]
    assert masks == [0b111, 1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 9, 1 << 10]
    assert sum(masks) == np.bitwise_or.reduce(masks)
    assert registry.status_bits()["EDGE"][2] == "find_events"
    with pytest.raises(TypeError, match="read-only|does not support item assignment"):
        STATUS_BITS["NEW"] = 9


def test_compare_knows_every_filter():
    masks = {label: selection.method_mask(label) for label in registry.report_names()}
    assert masks == {"VF": 0b111, "LACOSMIC": 1 << 3, "SAC": 1 << 4, "CAM": 1 << 5,
                     "MORPH": 1 << 6, "OBSCTX": 1 << 9, "UNET": 1 << 10}
    assert selection.method_mask("VF+SAC") == 0b111 | 1 << 4
    events = {"STATUS": np.array([0, 1 << 6, 1 << 0 | 1 << 6, 1 << 4])}
    assert selection.rejected(events, "MORPH").tolist() == [False, True, True, False]
    assert selection.rejected(events, "VF+MORPH").tolist() == [False, True, True, False]
    assert selection.rejected(events, "VF+SAC").tolist() == [False, False, True, True]


def test_compare_table_has_morph(tmp_path):
    from test_compare import toy_observation
    frames, labels = toy_observation()
    rep = compare.compare_filters(frames * u.eV, labels, ["vfaint", "morph"], pixel_frames=0)
    assert rep.methods == ["VF", "MORPH"] and rep.skipped == {}
    assert set(rep.table["METHOD"]) == {"VF", "MORPH", "VF+MORPH"}
    assert set(rep.roc["CURVE"]) == {"MORPH", "VF+MORPH"}
    full = rep.table[(rep.table["METHOD"] == "MORPH") & (rep.table["BAND"] == "0.3-10")][0]
    rej = selection.rejected(rep.events, "MORPH")
    e = rep.events["ENERGY"].to_value(u.keV)
    inband = (e >= 0.3) & (e < 10)
    assert full["TP"] == np.count_nonzero(rej & inband & (rep.truth == 2))
    assert full["FP"] == np.count_nonzero(rej & inband & (rep.truth == 1))


def test_optional_filter_without_model_is_skipped(monkeypatch):
    from test_compare import toy_observation
    frames, labels = toy_observation(n=1)
    spec = registry.filter_spec("cam")
    monkeypatch.setattr(registry.filter_module("cam"), "FILTER",
                        dataclasses.replace(spec, is_available=lambda: False))
    rep = compare.compare_filters(frames * u.eV, labels, ["vfaint", "sac", "cam"],
                                  pixel_frames=0)
    assert rep.methods == ["VF", "SAC"]
    assert rep.skipped == {"cam": "no model installed"}


def test_compare_fails_loudly_naming_the_filter(monkeypatch):
    """Only a missing model is skipped: a model given that does not exist, or a bug in a
    filter, stops the comparison with the filter named."""
    from test_compare import toy_observation
    frames, labels = toy_observation(n=1)
    with pytest.raises(Exception, match="does not exist") as info:
        compare.compare_filters(frames * u.eV, labels, ["vfaint", "sac", "cam"],
                                options={"cam": {"model": "/nonexistent"}}, pixel_frames=0)
    assert "'cam' filter" in " ".join(getattr(info.value, "__notes__", []))

    def broken(cube, events, **kwargs):
        raise KeyError("a bug")
    spec = registry.filter_spec("sac")
    monkeypatch.setattr(registry.filter_module("sac"), "FILTER",
                        dataclasses.replace(spec, step=broken))
    with pytest.raises(KeyError, match="a bug") as info:
        compare.compare_filters(frames * u.eV, labels, ["vfaint", "sac"], pixel_frames=0)
    assert "'sac' filter" in " ".join(info.value.__notes__)


def test_header_cards_and_help_derived():
    from xcrfilter.cli.main import build_parser
    from xcrfilter.io.ogip import status_bit_cards
    meta = {}
    status_bit_cards(meta, registry.status_bits())
    expected = {f"STATUS{bit}": name for name, bit in STATUS_BITS.items()}
    assert {k: v for k, v in meta.items() if k != CARD_COMMENTS} == expected
    assert card_comment(meta, "STATUS6") == STATUS_BIT_DOC["MORPH"]
    text = " ".join(build_parser()._subparsers._group_actions[0].choices["filter"]
                    .description.split())
    for name, bit in STATUS_BITS.items():
        assert f"{bit} {STATUS_BIT_DOC[name]}" in text


def test_docs_bit_table_matches():
    # docs/heasoft.rst lists the bits by hand: it must say what the filters declare
    text = (DOCS / "heasoft.rst").read_text()
    rows = dict((name, int(bit)) for bit, name in re.findall(r"^(\d+)\s+``([A-Z_]+)``", text,
                                                             re.M))
    assert rows == dict(STATUS_BITS)
