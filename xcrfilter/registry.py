"""The filters of the package, and what is derived from their declarations.

:data:`FILTERS` maps a filter's name (``--method``) to the module holding its
declaration, a :class:`xcrfilter.contract.Filter` named ``FILTER``.  Adding a
filter is one module plus one line in :data:`FILTERS` (or one
:func:`register` call for a filter outside the package).

Everything else reads the declarations through this module: the pipeline
(which inputs and options a step gets, which count cards it sums),
``xcrfilter filter --help`` and the ``--<name>-*`` options
(:func:`add_cli_options`, :func:`options_from_args`), the comparison (report
names, optional filters), the calibration, the ``STATUSn`` keywords of event
files and the docs table of options (:func:`options_table`).  The STATUS
bits of every filter plus those of event finding
(:data:`xcrfilter.events.FINDING_STATUS`, bit 8 ``EDGE``) form
:data:`STATUS_BITS` and :data:`STATUS_BIT_DOC`.

This module imports no filter at load: the views read the filter modules
when they are first looked at.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping

from .contract import Filter
from .events import FINDING_STATUS

__all__ = ["FILTERS", "STATUS_BITS", "STATUS_BIT_DOC", "METHOD_BITS", "register",
           "filter_module", "filter_spec", "status_bits", "method_bits", "report_names",
           "add_cli_options", "options_from_args", "options_table"]

#: Filter name -> module path: the one line to add for a new filter.  The
#: module declares the filter as ``FILTER = Filter(...)``.
FILTERS = {
    "vfaint": "xcrfilter.filters.vfaint",
    "lacosmic": "xcrfilter.filters.laplacian",
    "sac": "xcrfilter.filters.sac",
    "cam": "xcrfilter.filters.cam",
    "morph": "xcrfilter.filters.morph",
    "obsctx": "xcrfilter.filters.obsctx",
    "unet": "xcrfilter.filters.unet",
}

_FIRST_BIT, _LAST_BIT = 0, 30


def filter_module(name):
    """The module of the registered filter ``name`` (imported on first use).

    Raises
    ------
    ValueError
        ``name`` is not registered.
    ImportError
        The module cannot be imported.
    """
    if name not in FILTERS:
        raise ValueError(f"unknown filter method {name!r}; choose from "
                         f"{', '.join(FILTERS)} or 'all'.")
    return importlib.import_module(FILTERS[name])


def _spec_of(module, name):
    spec = getattr(module, "FILTER", None)
    if not isinstance(spec, Filter):
        raise TypeError(f"{module.__name__} must declare its filter as FILTER = "
                        "xcrfilter.contract.Filter(...).")
    if spec.name != name:
        raise ValueError(f"{module.__name__} declares filter {spec.name!r}, registered as "
                         f"{name!r}.")
    return spec


def filter_spec(name):
    """The :class:`Filter` declaration of the registered filter ``name``.

    Raises
    ------
    ValueError
        ``name`` is not registered.
    ImportError
        Its module cannot be imported.
    TypeError
        Its module declares no :class:`Filter`.
    """
    return _spec_of(filter_module(name), name)


def _declared(owner, status):
    if not isinstance(status, Mapping) or not status:
        raise TypeError(f"{owner} must declare its STATUS bits as "
                        "{NAME: (bit, meaning)}.")
    for key, value in status.items():
        bit, doc = value
        if not isinstance(bit, int) or not _FIRST_BIT <= bit <= _LAST_BIT:
            raise ValueError(f"{owner}: STATUS bit {key} must be an int in "
                             f"{_FIRST_BIT}-{_LAST_BIT}, got {bit!r}.")
        yield str(key), int(bit), str(doc)


def _derive():
    """``(bits, owners)``: NAME -> (bit, meaning) sorted by bit, NAME -> owner.

    Computed on every call (a few dictionary look-ups): a filter registered
    or changed later is seen at once.
    """
    declared = [("find_events", FINDING_STATUS)]
    declared += [(name, filter_spec(name).status) for name in FILTERS]
    bits, owner_of, taken = {}, {}, {}
    for owner, status in declared:
        for name, bit, doc in _declared(owner, status):
            if name in bits:
                raise ValueError(f"STATUS bit name {name} declared by {owner_of[name]} "
                                 f"and {owner}.")
            if bit in taken:
                raise ValueError(f"STATUS bit {bit} declared twice: {taken[bit]} "
                                 f"({owner_of[taken[bit]]}) and {name} ({owner}).")
            bits[name], owner_of[name], taken[bit] = (bit, doc), owner, name
    return dict(sorted(bits.items(), key=lambda kv: kv[1][0])), owner_of


def status_bits():
    """Every STATUS bit: ``{NAME: (bit, meaning, owner)}`` in bit order.

    ``owner`` is the filter name, or ``find_events`` for the bits of event
    finding.

    Raises
    ------
    ValueError
        Two declarations share a bit number or a name.
    """
    bits, owners = _derive()
    return {name: (bit, doc, owners[name]) for name, (bit, doc) in bits.items()}


def method_bits(name):
    """Bit mask of every STATUS bit of filter ``name`` (int)."""
    return filter_spec(name).bits


def report_names():
    """Comparison-table name of every filter, e.g. ``{"VF": "vfaint", "SAC": "sac"}``."""
    return {filter_spec(name).label: name for name in FILTERS}


def register(name, module, *, replace=False):
    """Register the filter ``name`` declared in ``module`` (a module path).

    The module is imported and checked: it must declare ``FILTER``, a
    :class:`Filter` named ``name`` whose STATUS bits no other filter uses.
    Afterwards the pipeline, ``xcrfilter filter``, the comparison and the
    event-file headers know it.

    Parameters
    ----------
    name : str
        The method name (lower case, as given to ``--method``).
    module : str
        Importable module path, e.g. ``"bright_filter"``.
    replace : bool, optional
        Replace a filter registered under the same name.  Default False.

    Returns
    -------
    Filter
        The declaration.

    Raises
    ------
    ValueError
        ``name`` is taken (and ``replace`` is False), is not lower case, or
        the STATUS bits collide with registered ones.
    ImportError, TypeError
        The module does not import or declares no :class:`Filter`.
    """
    if not isinstance(name, str) or not name or name != name.lower() or name == "all":
        raise ValueError(f"filter name must be a lower-case word other than 'all', got {name!r}.")
    if name in FILTERS and not replace:
        raise ValueError(f"filter {name!r} is registered already ({FILTERS[name]}).")
    spec = _spec_of(importlib.import_module(module), name)
    old = FILTERS.get(name)
    FILTERS[name] = module
    try:
        _derive()
    except Exception:
        if old is None:
            del FILTERS[name]
        else:
            FILTERS[name] = old
        raise
    return spec


def add_cli_options(parser):
    """Add an argument group ``<name> filter`` with each filter's own options.

    Filters whose module does not import (a missing optional dependency) are
    left out.  Used by ``xcrfilter filter`` and ``xcrfilter compare``.
    """
    for name in FILTERS:
        try:
            spec = filter_spec(name)
        except ImportError:
            continue
        if any(p.cli for p in spec.params):
            spec.add_cli_options(parser.add_argument_group(f"{name} filter"))


def options_from_args(args, names):
    """Per-filter keyword arguments ``{name: {...}}`` of filters ``names`` from ``args``."""
    options = {}
    for name in names:
        opts = filter_spec(name).options_from_args(args)
        if opts:
            options[name] = opts
    return options


def options_table():
    """Rows ``(filter, option, keyword, unit, default, help, cards)`` of every filter parameter.

    ``cards`` names the header keyword(s) recording the value a run used
    (:attr:`xcrfilter.contract.Param.card`), ``""`` if none.  The docs table
    of filter options is made from it.
    """
    rows = []
    for name in FILTERS:
        spec = filter_spec(name)
        for p in spec.params:
            cards = "" if p.card is None else (
                " ".join(p.card.key) if isinstance(p.card.key, tuple) else p.card.key)
            rows.append((name, p.option(name) if p.cli else "", p.name, p.unit,
                         "" if p.default is None else str(p.default), p.help, cards))
    return rows


class View(Mapping):
    """Read-only mapping computed from the registry when looked at."""

    def __init__(self, compute, doc):
        self._compute = compute
        self.__doc__ = doc

    def __getitem__(self, key):
        return self._compute()[key]

    def __iter__(self):
        return iter(self._compute())

    def __len__(self):
        return len(self._compute())

    def __repr__(self):
        return repr(dict(self._compute()))


#: STATUS bit numbers, NAME -> bit (an event is accepted by a method when its
#: bits are 0).  Read-only, derived from the filters' declarations.
STATUS_BITS = View(lambda: {k: v[0] for k, v in _derive()[0].items()},
                   "STATUS bit numbers of every registered filter and of event finding.")

#: Meaning of each STATUS bit, NAME -> text (``STATUSn`` header keywords).
STATUS_BIT_DOC = View(lambda: {k: v[1] for k, v in _derive()[0].items()},
                      "Meaning of each STATUS bit (event-file STATUSn keywords).")

#: STATUS bit mask of each filter, by filter name (``vfaint``: bits 0-2).
#: The comparison's names (``VF``, ``SAC``) map to these through
#: :func:`report_names`.
METHOD_BITS = View(lambda: {name: method_bits(name) for name in FILTERS},
                   "STATUS bit mask of each registered filter, by name.")
