"""Argument types and help layout shared by every ``xcrfilter`` command.

Kept apart from `xcrfilter.cli.main` so that the modules defining command-line
options (the filters, ``compare``, ``simulate``) do not import the command
line itself (no import cycle).
"""
from __future__ import annotations

import argparse

import astropy.units as u

__all__ = ["parse_energy", "parse_gain", "parse_gain_electrons", "positive_int",
           "non_negative_int", "positive_float", "open_fraction", "HelpFormatter",
           "ENERGY_UNIT_HELP"]


def parse_energy(text):
    """Parse ``"260eV"``, ``"0.26 keV"`` or a bare number (eV) into a Quantity.

    Raises
    ------
    argparse.ArgumentTypeError
        If the text is not a number with an optional energy unit.
    """
    s = str(text).strip()
    try:
        q = u.Quantity(s)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an energy; write e.g. 260eV or 0.26keV") from None
    if q.unit == u.dimensionless_unscaled:
        q = q.value * u.eV
    try:
        return q.to(u.eV)
    except u.UnitConversionError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an energy (unit {q.unit}); write e.g. 260eV") from None


#: How every energy option states its unit in ``--help`` (added by `HelpFormatter`).
ENERGY_UNIT_HELP = "energy with unit, e.g. 260eV or 0.26keV; bare numbers are eV"


def _format_default(value):
    """``260 * u.eV`` -> ``"260eV"`` (the syntax the option accepts)."""
    if isinstance(value, u.Quantity):
        if value.isscalar:
            return f"{value.value:g}{value.unit.to_string()}"
        return " ".join(_format_default(v) for v in value)
    if isinstance(value, (tuple, list)):
        return " ".join(_format_default(v) for v in value)
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` layout of every ``xcrfilter`` command.

    * states the default once: ``(default: X)`` is appended only when the
      help text does not already speak of a default, and never for
      required options, flags, or options whose default is None;
    * states the unit of every energy option (``type=parse_energy``) the
      same way (:data:`ENERGY_UNIT_HELP`).
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if action.type is parse_energy:
            # the unit goes before any "(default: ...)" the help text states itself
            head, sep, tail = text.partition(" (default")
            text = f"{head} [{ENERGY_UNIT_HELP}]{sep}{tail}"
        default = action.default
        show = (action.option_strings and not action.required
                and default is not None and default is not argparse.SUPPRESS
                and not isinstance(default, bool)
                and _format_default(default) != ""
                and "default" not in text.lower())
        if show:
            text += " (default: " + _format_default(default).replace("%", "%%") + ")"
        return text


def parse_gain(text):
    """Parse ``"3.65eV/adu"``, ``"1.9electron/adu"`` or a bare number (eV per adu).

    Returns a Quantity in eV/adu, or in electron/adu as given (converted
    with the detector's pair energy where it is used, `xcrfilter.units`).
    """
    s = str(text).strip()
    try:
        q = u.Quantity(s)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a gain; write e.g. 3.65eV/adu") \
            from None
    if q.unit == u.dimensionless_unscaled:
        q = q.value * u.eV / u.adu
    elif q.unit.is_equivalent(u.eV) or q.unit.is_equivalent(u.electron):
        q = q / u.adu
    try:
        q = q.to(u.eV / u.adu) if q.unit.is_equivalent(u.eV / u.adu) \
            else q.to(u.electron / u.adu)
    except u.UnitConversionError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a gain in eV/adu or "
                                         "electron/adu") from None
    if not q.value > 0:
        raise argparse.ArgumentTypeError(f"gain must be positive, got {text!r}")
    return q


def parse_gain_electrons(text):
    """``--gain`` of ``xcrfilter lacosmic``: as :func:`parse_gain`, bare numbers electron/adu.

    L.A.Cosmic (van Dokkum 2001) and astroscrappy state the gain in
    electrons per count; a bare number on the ``lacosmic`` command means the
    same.  ``3.65eV/adu`` is still read as an energy per adu.
    """
    s = str(text).strip()
    try:
        bare = u.Quantity(s).unit == u.dimensionless_unscaled
    except (TypeError, ValueError):
        bare = False
    return parse_gain(f"{s} electron/adu" if bare else s)


def _int_at_least(text, minimum):
    try:
        value = int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
    return value


def positive_int(text):
    """Parse an integer >= 1 (numbers of frames, workers, ...)."""
    return _int_at_least(text, 1)


def non_negative_int(text):
    """Parse an integer >= 0."""
    return _int_at_least(text, 0)


def _float(text):
    try:
        return float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive_float(text):
    """Parse a finite number > 0."""
    value = _float(text)
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def open_fraction(text):
    """Parse a fraction strictly between 0 and 1."""
    value = _float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, got {text!r}")
    return value
