"""The filters of the package, one line each, and what is derived from them.

:data:`FILTERS` maps a filter's name (``--method``) to the module that
implements it.  That module declares everything else about the filter:

* ``STATUS``: its STATUS bits, ``{NAME: (bit, meaning)}``;
* ``REPORT_NAME`` (optional): its name in comparison tables (default the
  name in upper case, e.g. ``SAC``; the very-faint-mode filter is ``VF``);
* ``pipeline_step``, ``add_cli_options``, ``options_from_args`` (its
  parameters, defaults and help), optionally ``is_available``,
  ``COUNT_CARDS``, ``CALIBRATION``, ``start_run`` and ``finish_run``
  (see :ref:`writing_a_filter`).

The STATUS bits of every filter plus those of event finding
(:data:`xcrfilter.events.FINDING_STATUS`, bit 8 ``EDGE``) form
:data:`STATUS_BITS` and :data:`STATUS_BIT_DOC`; the pipeline's, the command
line's, the comparison's and the event-file header's views of the bits
(``STATUSn`` keywords) all read them from here.  Adding a filter is one
module plus one line in :data:`FILTERS` (or one :func:`register` call for a
filter outside the package).

This module imports no filter at load (the filters import
`xcrfilter.events`, which re-exports the views below): the views read the
filter modules when they are first looked at.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping

__all__ = ["FILTERS", "STATUS_BITS", "STATUS_BIT_DOC", "register", "filter_module",
           "status_bits", "method_bits", "report_names", "add_cli_options",
           "options_from_args"]

#: Filter name -> module path: the one line to add for a new filter.
FILTERS = {
    "vfaint": "xcrfilter.filters.vfaint",
    "lacosmic": "xcrfilter.filters.laplacian",
    "sac": "xcrfilter.filters.sac",
    "cam": "xcrfilter.filters.cam",
    "morph": "xcrfilter.filters.morph",
    "obsctx": "xcrfilter.filters.obsctx",
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


def _declared(owner, module, status=None):
    status = getattr(module, "STATUS", None) if status is None else status
    if not isinstance(status, Mapping) or not status:
        raise TypeError(f"{owner} ({module.__name__}) must declare its STATUS bits as "
                        "STATUS = {NAME: (bit, meaning)}.")
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
    from . import events
    declared = [_declared("find_events", events, events.FINDING_STATUS)]
    declared += [_declared(name, filter_module(name)) for name in FILTERS]
    bits, owner_of, taken = {}, {}, {}
    for owner, declaration in zip(["find_events", *FILTERS], declared):
        for name, bit, doc in declaration:
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
    mask = 0
    for _, bit, _ in _declared(name, filter_module(name)):
        mask |= 1 << bit
    return mask


def report_names():
    """Comparison-table name of every filter, e.g. ``{"VF": "vfaint", "SAC": "sac"}``."""
    return {getattr(filter_module(name), "REPORT_NAME", name.upper()): name
            for name in FILTERS}


def register(name, module, *, replace=False):
    """Register the filter ``name`` implemented by ``module`` (a module path).

    The module is imported and checked: it must provide ``pipeline_step`` and
    declare ``STATUS`` bits that no other filter uses.  Afterwards the
    pipeline, ``xcrfilter filter``, the comparison and the event-file
    headers know it.

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
    module
        The imported module.

    Raises
    ------
    ValueError
        ``name`` is taken (and ``replace`` is False), is not lower case, or
        the module's STATUS bits collide with registered ones.
    ImportError, TypeError
        The module does not import or is not a pipeline plug-in.
    """
    if not isinstance(name, str) or not name or name != name.lower() or name == "all":
        raise ValueError(f"filter name must be a lower-case word other than 'all', got {name!r}.")
    if name in FILTERS and not replace:
        raise ValueError(f"filter {name!r} is registered already ({FILTERS[name]}).")
    mod = importlib.import_module(module)
    if not hasattr(mod, "pipeline_step"):
        raise TypeError(f"{module} does not provide a pipeline step (pipeline_step).")
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
    return mod


def add_cli_options(parser):
    """Add an argument group ``<name> filter`` with each filter's own options.

    Filters whose module does not import (a missing optional dependency) are
    left out.  Used by ``xcrfilter filter`` and ``xcrfilter compare``.
    """
    for name in FILTERS:
        try:
            module = filter_module(name)
        except ImportError:
            continue
        if hasattr(module, "add_cli_options"):
            module.add_cli_options(parser.add_argument_group(f"{name} filter"))


def options_from_args(args, names):
    """Per-filter keyword arguments ``{name: {...}}`` of filters ``names`` from ``args``."""
    options = {}
    for name in names:
        module = filter_module(name)
        opts = module.options_from_args(args) if hasattr(module, "options_from_args") else {}
        if opts:
            options[name] = opts
    return options


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
#: bits are 0).  Read-only, derived from the filters' ``STATUS`` declarations.
STATUS_BITS = View(lambda: {k: v[0] for k, v in _derive()[0].items()},
                   "STATUS bit numbers of every registered filter and of event finding.")

#: Meaning of each STATUS bit, NAME -> text (``STATUSn`` header keywords).
STATUS_BIT_DOC = View(lambda: {k: v[1] for k, v in _derive()[0].items()},
                      "Meaning of each STATUS bit (event-file STATUSn keywords).")
