"""``--help`` of every ``xcrfilter`` sub-command: help text on every option,
one default each, and every energy option parsed and described the same way."""
import argparse
import re

import astropy.units as u
import pytest

from xcrfilter.cli.argtypes import ENERGY_UNIT_HELP, HelpFormatter, parse_energy
from xcrfilter.cli.main import build_parser, main


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _options(parser):
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


SUBCOMMANDS = sorted(_subparsers())
ENERGY_DEST = re.compile(r"energy|band|^(event|split|mip)_threshold$")


def test_every_subcommand_is_listed():
    # the commands a user is told about in the README and the docs
    assert {"filter", "simulate", "train", "compare", "lacosmic", "demo"} <= set(SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help_text_and_one_default(name):
    parser = _subparsers()[name]
    assert parser.description, f"{name} has no description"
    assert parser.formatter_class is HelpFormatter
    formatter = HelpFormatter(prog=parser.prog)
    for action in _options(parser):
        label = f"{name} {'/'.join(action.option_strings) or action.dest}"
        assert action.help and action.help.strip(), f"{label} has no help text"
        text = formatter._expand_help(action)
        assert text.lower().count("default") <= 1, f"{label}: {text!r}"
        if action.required:
            assert "default" not in text.lower(), f"{label}: {text!r}"
        if action.default is None:
            assert "(default: None)" not in text, f"{label}: {text!r}"
        assert "(default: )" not in text, f"{label}: {text!r}"
    # the whole page renders (a stray '%' in a help text breaks it)
    assert parser.format_help().startswith("usage: xcrfilter " + name)


#: one spelling per idea on every command: (the spelling, spellings that are gone)
VOCABULARY = {"method": ({"-m", "--method"}, {"--methods"}),
              "quiet": ({"-q", "--quiet"}, {"--no-progress"}),
              "chunk_frames": ({"--chunk-frames"}, {"--chunk-size"}),
              "lacosmic_readnoise": ({"--lacosmic-readnoise"}, {"--readnoise"}),
              "lacosmic_satlevel": ({"--lacosmic-satlevel"}, {"--satlevel"})}


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_one_vocabulary(name):
    parser = _subparsers()[name]
    spellings = {s for a in _options(parser) for s in a.option_strings}
    for dest, (spelling, gone) in VOCABULARY.items():
        assert not (gone & spellings), f"{name}: {sorted(gone & spellings)}"
        for action in _options(parser):
            if action.dest == dest:
                assert set(action.option_strings) == spelling, (name, action.option_strings)
    if name != "train":  # train resumes into its model directory (--restart)
        assert "--overwrite" in spellings, f"{name} has no --overwrite"


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_energy_options_take_units(name):
    parser = _subparsers()[name]
    formatter = HelpFormatter(prog=parser.prog)
    for action in _options(parser):
        if not ENERGY_DEST.search(action.dest):
            continue
        label = f"{name} {'/'.join(action.option_strings)}"
        assert action.type is parse_energy, f"{label} does not parse units"
        assert ENERGY_UNIT_HELP in formatter._expand_help(action), label


def test_defaults_printed_as_typed():
    parser = _subparsers()["filter"]
    formatter = HelpFormatter(prog=parser.prog)
    texts = {a.dest: formatter._expand_help(a) for a in _options(parser)}
    assert texts["event_threshold"].endswith("(default: 260eV)")
    assert texts["mip_threshold"].endswith("(default: 10keV)")
    assert texts["chunk_frames"].endswith("(default: 200)")
    # a required option and a flag state no default
    assert "default" not in texts["output"] and "default" not in texts["overwrite"]


def test_energy_options_parse_units_and_bare_ev():
    parser = build_parser()
    args = parser.parse_args(["filter", "f.fits", "-o", "e.fits", "--sac-track-energy", "12keV",
                              "--cam-band", "500", "8keV", "--event-threshold", "0.3keV"])
    assert args.sac_track_energy == 12 * u.keV
    assert u.allclose(u.Quantity(args.cam_band), [0.5, 8] * u.keV)
    assert args.event_threshold == 300 * u.eV
    args = parser.parse_args(["simulate", "--frames", "2", "-o", "s.fits",
                              "--xray-energy", "5900"])
    assert args.xray_energy == 5.9 * u.keV


def test_energy_option_rejects_other_units(capsys):
    with pytest.raises(SystemExit):
        main(["filter", "f.fits", "-o", "e.fits", "--sac-track-energy", "12m"])
    assert "is not an energy" in capsys.readouterr().err
