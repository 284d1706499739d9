"""The filter contract (`xcrfilter.contract.Filter`): every registered filter declares
its parameters, and the pipeline, the command line and the header read that one
declaration."""
import argparse
import warnings

import astropy.units as u
import numpy as np
import pytest

from xcrfilter import contract, registry
from xcrfilter.meta import card_value
from xcrfilter.pipeline import run_pipeline

_PARAMS = [(name, p.name) for name in registry.FILTERS
           for p in registry.filter_spec(name).params]


def _frames(n=2, shape=(48, 48)):
    rng = np.random.default_rng(1)
    frames = rng.normal(0, 25.5, (n,) + shape).astype(np.float32)
    frames[:, 20, 10:40] += 3000.0          # a track
    frames[:, 8, 8] += 1500.0               # X-ray singles
    frames[:, 40, 30] += 2500.0
    return frames * u.eV


def _misspelt(word):
    """``word`` with two neighbouring letters swapped (or its last letter doubled)."""
    for i in range(1, len(word) - 1):
        typo = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        if typo != word:
            return typo
    return word + word[-1]


@pytest.mark.parametrize("name", list(registry.FILTERS))
def test_every_filter_is_declared(name):
    spec = registry.filter_spec(name)
    assert isinstance(spec, contract.Filter) and spec.name == name
    assert set(spec.shared) <= set(contract.SHARED_INPUTS)
    assert spec.bits == registry.method_bits(name) == registry.METHOD_BITS[name]
    # its header keywords start with its prefix (count cards, e.g. MRPNREJ)
    assert all(card.startswith(spec.prefix) for card in spec.count_cards)
    if spec.calibration is not None:
        assert spec.calibration.option in {p.name for p in spec.params}
        # the calibration reads the same declaration from the filter module
        assert tuple(registry.filter_module(name).CALIBRATION) == tuple(spec.calibration)


@pytest.mark.parametrize("name", list(registry.FILTERS))
def test_unknown_option_names_option_and_filter(name):
    with pytest.raises(ValueError, match=f"'bogus_option'.*filter '{name}'"):
        run_pipeline(_frames(), name, options={name: {"bogus_option": 1}})


@pytest.mark.parametrize("name, param", _PARAMS)
def test_every_option_rejected_when_misspelt(name, param):
    typo = _misspelt(param)
    with pytest.raises(ValueError, match=f"'{typo}'.*filter '{name}'"):
        run_pipeline(_frames(), name, options={name: {typo: 0}})


def test_morph_treshold_is_an_error():
    with pytest.raises(ValueError, match="'treshold'.*'morph'"):
        run_pipeline(_frames(), "morph", options={"morph": {"treshold": 0}})
    # a shared input is not an option of its own
    with pytest.raises(ValueError, match="'split_threshold'.*'sac'"):
        run_pipeline(_frames(), "sac", options={"sac": {"split_threshold": 80 * u.eV}})


def test_step_gets_only_its_shared_inputs():
    seen = {}

    def step(cube, events, **kwargs):
        seen.update(kwargs)
        return events

    spec = contract.Filter(name="probe", step=step, status={"PROBE": (9, "probe")},
                           shared=("split_threshold",),
                           params=(contract.Param("level", 1.0, "a level"),))
    shared = dict(event_threshold=1 * u.keV, split_threshold=90 * u.eV, strict=True)
    spec.run(None, "events", shared, {"level": 2.0})
    assert seen == {"split_threshold": 90 * u.eV, "level": 2.0}
    with pytest.raises(ValueError, match="'levle'.*'probe'"):
        spec.run(None, "events", shared, {"levle": 2.0})
    with pytest.raises(ValueError, match="unknown shared input"):
        contract.Filter(name="bad", step=step, status={}, shared=("gain_of_moon",))


@pytest.mark.parametrize("name", list(registry.FILTERS))
def test_cli_options_generated_from_the_declaration(name):
    spec = registry.filter_spec(name)
    parser = argparse.ArgumentParser()
    spec.add_cli_options(parser.add_argument_group(name))
    options = {s for a in parser._actions for s in a.option_strings}
    for p in spec.params:
        assert (p.option(name) in options) == p.cli
    # nothing given: the filter's own defaults apply
    assert spec.options_from_args(parser.parse_args([])) == {}
    from xcrfilter.cli.main import build_parser
    help_text = build_parser()._subparsers._group_actions[0].choices["filter"].format_help()
    for p in spec.params:
        if p.cli:
            assert p.option(name) in help_text
    rows = [r for r in registry.options_table() if r[0] == name]
    assert [r[2] for r in rows] == [p.name for p in spec.params]


def test_model_split_threshold_warned_and_recorded():
    """CAM and morph models compute their context features with the split threshold
    they were trained with: another one is warned about (both values) and recorded."""
    frames = _frames()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = run_pipeline(frames, "morph")
    assert card_value(same.meta, "MRPSPLIT") == 80.0 and "MRPSPLRQ" not in same.meta
    with pytest.warns(UserWarning, match=r"morph.*80 eV.*100 eV"):
        other = run_pipeline(frames, "morph", split_threshold=100 * u.eV)
    assert card_value(other.meta, "MRPSPLIT") == 80.0
    assert card_value(other.meta, "MRPSPLRQ") == 100.0


def test_output_options_declared():
    """Files a filter writes are declared (Param.output): one process writes them, and
    compare, which writes no filter outputs, refuses them."""
    spec = registry.filter_spec("cam")
    assert spec.output_options({"cam_output": "maps.fits", "threshold": 0.5}) == ["cam_output"]
    with pytest.raises(ValueError, match="cam_output.*dask client"):
        run_pipeline(_frames(), "cam", options={"cam": {"cam_output": "x.fits"}},
                     client=object())
    from xcrfilter.cli import compare as compare_cli
    parser = argparse.ArgumentParser()
    compare_cli.add_arguments(parser)
    args = parser.parse_args(["obs.fits", "-o", "rep", "--cam-output", "maps.fits"])
    with pytest.raises(ValueError, match="--cam-output: xcrfilter compare writes no cam"):
        compare_cli.run(args)


def test_meta_holds_plain_values(tmp_path):
    """Event-table keywords are plain values, as astropy reads tables; their comments
    are kept aside and written back as card comments."""
    from astropy.io import fits

    from xcrfilter.io.eventfile import read_events, write_events
    from xcrfilter.meta import CARD_COMMENTS, card_comment
    events = run_pipeline(_frames(), "vfaint,sac")
    assert events.meta["EVTTHR"] * u.eV == 260 * u.eV
    assert events.meta["SACRAD"] == 22.0
    assert card_comment(events.meta, "SACRAD") == "[pixel] SAC rejection radius"
    path = tmp_path / "ev.fits"
    write_events(events, path)
    header = fits.getheader(path, "EVENTS")
    assert header["SACRAD"] == 22.0
    assert header.comments["SACRAD"] == "[pixel] SAC rejection radius"
    assert CARD_COMMENTS not in header
    back = read_events(path)
    assert back.meta["SACRAD"] == 22.0
    assert card_comment(back.meta, "SACRAD") == "[pixel] SAC rejection radius"


def test_observation_keywords_plain(tmp_path):
    from astropy.io import fits

    from xcrfilter.meta import card_comment
    header = fits.Header()
    header["TELESCOP"] = ("ATHENA", "mission")
    header["BUNIT"] = "eV"
    path = tmp_path / "frames.fits"
    fits.PrimaryHDU(_frames().value, header=header).writeto(path)
    events = run_pipeline(str(path), "vfaint")
    assert events.meta["TELESCOP"] == "ATHENA"
    assert card_comment(events.meta, "TELESCOP") == "mission"


#: Filters with at least one parameter or shared input that declares its header card.
CARD_FILTERS = [n for n in registry.FILTERS
                if any(p.card is not None for p in registry.filter_spec(n).params)
                or registry.filter_spec(n).shared_cards]


def test_every_filter_declares_cards():
    assert set(CARD_FILTERS) == set(registry.FILTERS)


@pytest.mark.parametrize("name", CARD_FILTERS)
def test_declared_cards_are_written(name):
    """The header card of every parameter and shared input that declares one is written by
    a run, with the comment the declaration gives it (the unit in brackets), and every
    declared count of a per-chunk filter is written as an integer."""
    from xcrfilter.meta import card_comment
    spec = registry.filter_spec(name)
    assert spec.available(), f"the shipped model of {name!r} is missing from xcrfilter/data"
    declared = [(p.card, p.unit) for p in spec.params if p.card is not None]
    declared += [(card, contract.SHARED_UNITS.get(k, ""))
                 for k, card in spec.shared_cards.items()]
    events = run_pipeline(_frames(), name)
    for card, unit in declared:
        value = events.meta.get(card.key if isinstance(card.key, str) else card.key[0])
        for key, _, comment in card.records(
                [value] * len(card.key) if isinstance(card.key, tuple) else value, unit):
            assert key in events.meta, (name, key)
            assert card_comment(events.meta, key) == comment, (name, key)
    if spec.observe is None:     # obsctx writes its counts when it concludes, if it learns
        for count in spec.counts:
            assert isinstance(events.meta[count.key], int), (name, count.key)
            assert card_comment(events.meta, count.key) == count.comment


def test_vfaint_records_the_shared_thresholds():
    events = run_pipeline(_frames(), "vfaint", split_threshold=100 * u.eV, strict=True)
    assert events.meta["VFSPLTHR"] == 100.0 and events.meta["VFSTRICT"] is True
    assert events.meta["VFEVTTHR"] == 260.0 and events.meta["VFMIPTHR"] == 10000.0


def _toy(**kw):
    return contract.Filter(name="toy", step=lambda cube, events: events, status={},
                           **kw)


def test_record_writes_declared_cards_counts_and_history():
    spec = _toy(params=(contract.Param("limit", 1.0, unit="keV",
                                       card=contract.Card("TOYLIM", "toy limit")),),
                counts=(contract.Count("TOYNREJ", "events rejected"),
                        contract.Count("TOYNSCO", "events scored")))
    meta = {}
    spec.record(meta, {"limit": 2 * u.keV, "unknown": 3}, {"TOYNSCO": 7, "TOYNREJ": 2},
                [("TOYMODE", "x", "mode")], "toy: 2 of 7")
    from xcrfilter.meta import card_comment
    assert [k for k in meta if k.startswith("TOY")] == ["TOYLIM", "TOYNREJ", "TOYNSCO",
                                                        "TOYMODE"]
    assert meta["TOYLIM"] == 2.0 and card_comment(meta, "TOYLIM") == "[keV] toy limit"
    assert meta["TOYNREJ"] == 2 and card_comment(meta, "TOYNSCO") == "events scored"
    assert meta["HISTORY"][-1].endswith("toy: 2 of 7")


def test_record_refuses_an_undeclared_count():
    spec = _toy(counts=(contract.Count("TOYNREJ", "events rejected"),))
    with pytest.raises(ValueError, match="undeclared count card.*TOYNRJE"):
        spec.record({}, counts={"TOYNRJE": 1})


def test_declaration_checks_counts_and_shared_cards():
    cal = contract.Calibration("SCORE", "threshold", +1, card="TOYTHR", count_card="TOYNREJ",
                               prefix="TOY", uses_shape=False)
    with pytest.raises(ValueError, match="count card 'TOYNREJ' is not a declared count"):
        _toy(params=(contract.Param("threshold", 0.5),), calibration=cal)
    with pytest.raises(ValueError, match="shared input.*split_threshold"):
        _toy(shared_cards={"split_threshold": contract.Card("TOYSPL", "split")})
