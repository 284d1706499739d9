"""The filter contract, the filters of the package, and what is derived from them.

A filter is one module that declares one :class:`Filter` object,
``FILTER``: its name, STATUS bits, typed parameters (unit, default, help),
the shared inputs of the pipeline it needs, and optionally a threshold that
:mod:`xcrfilter.calibrate` can calibrate.  :data:`FILTERS` maps a filter's
name (``--method``) to the module holding that declaration.

Everything else reads the declaration: the pipeline (which inputs and options
a step gets, which count cards it sums), ``xcrfilter filter --help`` and the
``--<name>-*`` options (:meth:`Filter.add_cli_options`), the comparison
(report names, optional filters), the calibration
(:attr:`Filter.calibration`), the ``STATUSn`` keywords of event files and
the docs tables.  An option a filter does not declare is an error naming the
option and the filter (:meth:`Filter.check_options`).

The STATUS bits of every filter plus those of event finding
(:data:`xcrfilter.events.FINDING_STATUS`, bit 8 ``EDGE``) form
:data:`STATUS_BITS` and :data:`STATUS_BIT_DOC`.  Adding a filter is one
module plus one line in :data:`FILTERS` (or one :func:`register` call for a
filter outside the package).

This module imports no filter at load: the views read the filter modules
when they are first looked at.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .argtypes import parse_energy
from .events import FINDING_STATUS

__all__ = ["Filter", "Param", "Calibration", "SHARED_INPUTS", "FILTERS", "STATUS_BITS",
           "STATUS_BIT_DOC", "METHOD_BITS", "register", "filter_module", "filter_spec",
           "status_bits", "status_mask", "method_bits", "report_names", "add_cli_options",
           "options_from_args", "options_table"]

#: The inputs the pipeline shares with every filter that declares it needs
#: them (:attr:`Filter.shared`): the event-finding thresholds (energies),
#: the detector model and the strict (``>``) threshold convention.
SHARED_INPUTS = ("event_threshold", "split_threshold", "mip_threshold", "detector", "strict")


class Calibration(NamedTuple):
    """How a filter's threshold is calibrated on the observation (`xcrfilter.calibrate`).

    Attributes
    ----------
    column : str
        Score column the filter writes, e.g. ``"SAC_DIST"``.
    option : str
        The filter parameter the calibrated value goes to (e.g. ``threshold``).
    sign : int
        +1: events with ``score >= value`` are rejected (probabilities);
        -1: events with ``score <= value`` are rejected (distances).
    card : str
        Header keyword of the threshold (rewritten with the calibrated value).
    count_card : str or None
        Header keyword counting the rejected events (rewritten).
    prefix : str
        Three letters for the calibration keywords (``<prefix>CALV`` ...).
    uses_shape : bool
        True when the score depends on the event's own pixels, not only on
        its context (then events are pasted into other frames).
    """

    column: str
    option: str
    sign: int
    card: str
    count_card: str | None
    prefix: str
    uses_shape: bool


@dataclass(frozen=True)
class Param:
    """One parameter of a filter: a keyword of its step and, usually, a CLI option.

    Attributes
    ----------
    name : str
        Keyword of the filter's step, e.g. ``radius``.  The command-line
        option is ``--<filter>-<name>`` (underscores as dashes).
    default : object
        The value the filter uses when the option is not given (None: the
        filter decides, e.g. the model's threshold; ``help`` says which).
    help : str
        What it does, for ``--help`` and the docs.
    unit : str
        Unit of the value (``"pixel"``, ``"eV"``, ``"electron"``), or ``""``.
    type : callable, optional
        Converter of the command-line text (default ``str``).
    metavar, choices, nargs
        As for :meth:`argparse.ArgumentParser.add_argument`.
    aliases : tuple of str
        Further option strings, e.g. ``("--threshold",)``.
    flag : str, optional
        The option string when it is not ``--<filter>-<name>`` (e.g.
        ``--cam-output`` for the keyword ``cam_output``).
    cli : bool
        False for keywords with no command-line option (Python only).
    negate : bool
        A boolean that is True by default, switched off by
        ``--<filter>-no-<name>``.
    convert : callable, optional
        Applied to the parsed command-line value (e.g. to eV).
    output : bool
        The value is a file the filter writes (e.g. ``--cam-output``):
        commands that write no such files (``xcrfilter compare``) refuse it.
    """

    name: str
    default: Any = None
    help: str = ""
    unit: str = ""
    type: Callable | None = None
    metavar: Any = None
    choices: tuple | None = None
    nargs: int | None = None
    aliases: tuple = ()
    flag: str | None = None
    cli: bool = True
    negate: bool = False
    convert: Callable | None = None
    output: bool = False

    def option(self, prefix):
        """The command-line option string, e.g. ``--sac-radius``."""
        if self.flag is not None:
            return self.flag
        stem = f"no-{self.name}" if self.negate else self.name
        return f"--{prefix}-{stem.replace('_', '-')}"

    def dest(self, prefix):
        """Attribute of the parsed arguments, e.g. ``sac_radius``."""
        if self.flag is not None:
            return self.flag.lstrip("-").replace("-", "_")
        return f"{prefix}_{self.name}"

    def describe(self):
        """``help`` with the unit and default, as ``--help`` and the docs show them.

        Energy options (``type=parse_energy``) get their unit from the help
        formatter of the commands (`xcrfilter.argtypes.HelpFormatter`).
        """
        text = self.help
        if self.unit and self.type is not parse_energy:
            text += f" [{self.unit}]"
        if self.default is not None and not self.negate:
            default = self.default
            if isinstance(default, tuple):
                default = " ".join(str(d) for d in default)
            text += f" (default: {default})"
        return text


@dataclass(frozen=True)
class Filter:
    """The declaration of a filter: everything the package needs to know about it.

    Attributes
    ----------
    name : str
        Method name (lower case, ``--method``).
    step : callable
        ``step(cube, events, **kwargs) -> QTable``: the events of one chunk
        of frames (a `~xcrfilter.io.FrameCube` in eV), already found, judged
        into a new table.  It gets the :attr:`shared` inputs and the
        declared :attr:`params` given by the user, nothing else.
    status : dict
        Its STATUS bits, ``{NAME: (bit, meaning)}``.
    params : tuple of Param
        Its parameters.
    shared : tuple of str
        The pipeline inputs it needs, a subset of :data:`SHARED_INPUTS`.
    calibration : Calibration, optional
        The threshold :mod:`xcrfilter.calibrate` may set.
    report_name : str, optional
        Its name in comparison tables (default the name in upper case).
    card_prefix : str, optional
        Prefix of its header keywords, e.g. ``SAC`` (``SACRAD``) or ``MRP``
        (``MRPTHR``); default the first three letters of the name in upper
        case.  Keywords written for the filter by others (e.g. the
        calibration's ``<prefix>CALV``) use it too.
    count_cards : tuple of str
        Header keywords holding counts, summed by the pipeline over chunks.
    is_available : callable, optional
        ``is_available() -> bool`` for a filter that needs more than its
        module (a shipped model file); None: always available.
    model_param : str, optional
        The parameter naming such a model; a filter given it is available.
    start_run, finish_run : callable, optional
        ``start_run(options) -> options`` opens what the filter writes over a
        run; ``finish_run(options, ok)`` closes it (or drops it after an error).
    observe, conclude : callable, optional
        A filter that learns from the whole observation (``obsctx``):
        ``observe(cube, events, common, options, first=...)`` returns what it
        learns from one piece of frames (run in every chunk, also on dask
        workers); ``conclude(events, payloads, max_lost=, required=, seed=)``
        judges every event of the run at its end and returns its
        calibration report (or None).
    extra_options : callable, optional
        ``extra_options(args, options) -> dict``: options from parsed command-line
        arguments that are not the filter's own ``--<name>-*`` options
        (e.g. ``--overwrite``).
    """

    name: str
    step: Callable
    status: Mapping
    params: tuple = ()
    shared: tuple = ()
    calibration: Calibration | None = None
    report_name: str | None = None
    card_prefix: str | None = None
    count_cards: tuple = ()
    is_available: Callable | None = None
    model_param: str | None = None
    start_run: Callable | None = None
    finish_run: Callable | None = None
    observe: Callable | None = None
    conclude: Callable | None = None
    extra_options: Callable | None = None
    _by_name: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        bad = [s for s in self.shared if s not in SHARED_INPUTS]
        if bad:
            raise ValueError(f"filter {self.name!r}: unknown shared input(s) {bad}; "
                             f"choose from {', '.join(SHARED_INPUTS)}.")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"filter {self.name!r}: a parameter is declared twice.")
        clash = set(names) & set(SHARED_INPUTS)
        if clash:
            raise ValueError(f"filter {self.name!r}: parameter(s) {sorted(clash)} are "
                             "shared inputs; declare them in shared.")
        if self.calibration is not None and self.calibration.option not in names:
            raise ValueError(f"filter {self.name!r}: calibrated option "
                             f"{self.calibration.option!r} is not a parameter.")
        object.__setattr__(self, "_by_name", {p.name: p for p in self.params})

    @property
    def label(self):
        """Name in comparison tables, e.g. ``VF`` or ``SAC``."""
        return self.report_name or self.name.upper()

    @property
    def prefix(self):
        """Prefix of its header keywords (:attr:`card_prefix`, default e.g. ``SAC``)."""
        return self.card_prefix or self.name[:3].upper()

    @property
    def bits(self):
        """Mask of its STATUS bits (int)."""
        return status_mask(self.status)

    @property
    def CALIBRATION(self):  # noqa: N802 - the name xcrfilter.calibrate reads
        """:attr:`calibration` under the name `xcrfilter.calibrate` reads."""
        return self.calibration

    @property
    def STATUS(self):  # noqa: N802 - the name xcrfilter.calibrate reads
        """:attr:`status` under the name `xcrfilter.calibrate` reads."""
        return self.status

    def available(self, options=None):
        """True when the filter can run (with ``options``, e.g. a model directory)."""
        if self.is_available is None:
            return True
        if self.model_param is not None and (options or {}).get(self.model_param) is not None:
            return True
        return bool(self.is_available())

    def check_options(self, options):
        """Raise ValueError naming any key of ``options`` that is not a parameter."""
        unknown = [k for k in (options or {}) if k not in self._by_name]
        if unknown:
            known = ", ".join(self._by_name) or "none"
            raise ValueError(f"options: unknown option(s) {', '.join(map(repr, unknown))} of "
                             f"filter {self.name!r} (its options: {known}).")

    def output_options(self, options):
        """The :attr:`Param.output` parameters set in ``options`` (files it would write)."""
        return [p.name for p in self.params
                if p.output and (options or {}).get(p.name) is not None]

    def run(self, cube, events, shared, options=None):
        """Run the step on one chunk: ``shared`` inputs it declares plus ``options``."""
        self.check_options(options)
        kwargs = {k: shared[k] for k in self.shared if k in shared}
        kwargs.update(options or {})
        return self.step(cube, events, **kwargs)

    def pipeline_step(self, cube, events, **kwargs):
        """:meth:`run` with shared inputs and options in one set of keywords.

        Shared inputs the filter does not declare are dropped; any other
        unknown keyword is an error (:meth:`check_options`).
        """
        shared = {k: kwargs.pop(k) for k in list(kwargs) if k in SHARED_INPUTS}
        return self.run(cube, events, shared, kwargs)

    def add_cli_options(self, group):
        """Add ``--<name>-*`` options of its parameters to an argparse group."""
        for p in self.params:
            if not p.cli:
                continue
            dest = p.dest(self.name)
            if p.negate:
                group.add_argument(p.option(self.name), *p.aliases, dest=dest,
                                   action="store_false", default=None, help=p.describe())
                continue
            kw = dict(dest=dest, default=None, help=p.describe())
            for key in ("type", "metavar", "choices", "nargs"):
                if getattr(p, key) is not None:
                    kw[key] = getattr(p, key)
            group.add_argument(p.option(self.name), *p.aliases, **kw)
        return group

    def options_from_args(self, args):
        """Keyword arguments of the step from parsed command-line arguments.

        Only options given on the command line are returned: the filter's
        own defaults apply to the others.
        """
        opts = {}
        for p in self.params:
            value = getattr(args, p.dest(self.name), None) if p.cli else None
            if value is not None:
                opts[p.name] = p.convert(value) if p.convert is not None else value
        if self.extra_options is not None:
            opts.update(self.extra_options(args, opts))
        return opts


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
                        "xcrfilter.registry.Filter(...).")
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


def status_mask(status):
    """Bit mask (int) of a STATUS declaration ``{NAME: (bit, meaning)}``."""
    mask = 0
    for bit, _ in status.values():
        mask |= 1 << int(bit)
    return mask


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
    """Rows ``(filter, option, keyword, unit, default, help)`` of every filter parameter.

    The docs table of filter options is made from it.
    """
    rows = []
    for name in FILTERS:
        spec = filter_spec(name)
        for p in spec.params:
            rows.append((name, p.option(name) if p.cli else "", p.name, p.unit,
                         "" if p.default is None else str(p.default), p.help))
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
