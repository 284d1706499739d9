"""The filter contract: what a filter declares, and how the package reads it.

A filter is one module holding the function users call and one
:class:`Filter` named ``FILTER``: its name, STATUS bits, typed parameters
(:class:`Param`: unit, default, help, command-line option, header card), the
shared inputs of the pipeline it needs (:data:`SHARED_INPUTS`), and
optionally the threshold :mod:`xcrfilter.calibrate` may calibrate
(:class:`Calibration`).  The ``--<filter>-*`` options
(:meth:`Filter.add_cli_options`), the header cards recording the values a
filter used (:meth:`Filter.cards`), the docs table of options and the
check of misspelt options (:meth:`Filter.check_options`) are all made from
it.  A filter records what a run did with :meth:`Filter.record`: the cards
of the parameter values and shared inputs it used, its declared counts
(:class:`Count`) and a HISTORY line, through
`xcrfilter.meta.log_to_metadata`.  Which filters there are is
:mod:`xcrfilter.registry`'s business.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import astropy.units as u

from .cli.argtypes import parse_energy
from .meta import log_to_metadata

__all__ = ["Filter", "Param", "Card", "Count", "Calibration", "SHARED_INPUTS", "SHARED_UNITS",
           "status_mask"]

#: The inputs the pipeline shares with every filter that declares it needs
#: them (:attr:`Filter.shared`): the event-finding thresholds (energies),
#: the detector model and the strict (``>``) threshold convention.
SHARED_INPUTS = ("event_threshold", "split_threshold", "mip_threshold", "detector", "strict")
#: Units of the shared inputs that have one (the cards of :attr:`Filter.shared_cards`).
SHARED_UNITS = {"event_threshold": "eV", "split_threshold": "eV", "mip_threshold": "eV"}


class Card(NamedTuple):
    """The header keyword that records the value a filter used for a parameter.

    Attributes
    ----------
    key : str or tuple of str
        The keyword (8 characters at most), e.g. ``SACRAD``; one keyword per
        element for a parameter with several values (``("CAMELO", "CAMEHI")``
        for an energy band).
    comment : str or tuple of str
        Its comment without the unit, which is prepended in brackets.
    unit : str, optional
        Unit of the recorded value when it is not the parameter's
        (:attr:`Param.unit`), e.g. astroscrappy's ``electron/count``.
    """

    key: str | tuple
    comment: str | tuple
    unit: str | None = None

    def records(self, value, unit):
        """``[(key, value, comment)]`` of ``value`` (a Quantity is given in ``unit``)."""
        unit = unit if self.unit is None else self.unit
        keys = self.key if isinstance(self.key, tuple) else (self.key,)
        comments = self.comment if isinstance(self.comment, tuple) else (self.comment,)
        values = tuple(value) if isinstance(self.key, tuple) else (value,)
        out = []
        for key, val, comment in zip(keys, values, comments):
            if isinstance(val, u.Quantity):
                val = val.to_value(unit) if unit else val.value
            out.append((key, val, f"[{unit}] {comment}" if unit else comment))
        return out


class Count(NamedTuple):
    """A header keyword counting what a filter did in a run, e.g. ``SACNEVT``.

    The pipeline sums it over the chunks of frames of a run; the
    calibration rewrites the count of rejected events
    (:attr:`Calibration.count_card`).

    Attributes
    ----------
    key : str
        The keyword (8 characters at most), starting with the filter's
        :attr:`Filter.prefix`.
    comment : str
        Its comment.
    """

    key: str
    comment: str


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
    card : Card, optional
        The header keyword recording the value a run used
        (:meth:`Filter.cards`).
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
    card: Card | None = None

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
        formatter of the commands (`xcrfilter.cli.argtypes.HelpFormatter`).
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
        of frames (a `~xcrfilter.io.frames.FrameCube` in eV), already found, judged
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
    counts : tuple of Count
        Header keywords holding counts (:class:`Count`), written by
        :meth:`record` and summed by the pipeline over chunks.
    shared_cards : mapping, optional
        Shared input -> :class:`Card` recording the value a run used
        (e.g. ``{"split_threshold": Card("VFSPLTHR", ...)}``), for a filter
        whose result depends on it directly.
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
    pixel_mask : callable, optional
        ``pixel_mask(cube, *, detector=None, **options) -> bool ndarray`` of
        shape (n_frames, ny, nx): the pixels a filter that works on pixels
        marks (``lacosmic``); the comparison checks it pixel by pixel against
        the truth labels.
    """

    name: str
    step: Callable
    status: Mapping
    params: tuple = ()
    shared: tuple = ()
    calibration: Calibration | None = None
    report_name: str | None = None
    card_prefix: str | None = None
    counts: tuple = ()
    shared_cards: Mapping = field(default_factory=dict)
    is_available: Callable | None = None
    model_param: str | None = None
    start_run: Callable | None = None
    finish_run: Callable | None = None
    observe: Callable | None = None
    conclude: Callable | None = None
    extra_options: Callable | None = None
    pixel_mask: Callable | None = None
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
        count_keys = [c.key for c in self.counts]
        if (self.calibration is not None and self.calibration.count_card is not None
                and self.calibration.count_card not in count_keys):
            raise ValueError(f"filter {self.name!r}: calibration count card "
                             f"{self.calibration.count_card!r} is not a declared count.")
        undeclared = set(self.shared_cards) - set(self.shared)
        if undeclared:
            raise ValueError(f"filter {self.name!r}: cards for shared input(s) "
                             f"{sorted(undeclared)} it does not declare in shared.")
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
    def count_cards(self):
        """Keywords of its :attr:`counts` (tuple of str), summed over chunks."""
        return tuple(c.key for c in self.counts)

    @property
    def bits(self):
        """Mask of its STATUS bits (int)."""
        return status_mask(self.status)

    def available(self, options=None):
        """True when the filter can run (with ``options``, e.g. a model directory)."""
        if self.is_available is None:
            return True
        if self.model_param is not None and (options or {}).get(self.model_param) is not None:
            return True
        return bool(self.is_available())

    def param(self, name):
        """The declared :class:`Param` ``name`` (KeyError if there is none)."""
        return self._by_name[name]

    def check_options(self, options):
        """Raise ValueError naming any key of ``options`` that is not a parameter."""
        unknown = [k for k in (options or {}) if k not in self._by_name]
        if unknown:
            known = ", ".join(self._by_name) or "none"
            raise ValueError(f"options: unknown option(s) {', '.join(map(repr, unknown))} of "
                             f"filter {self.name!r} (its options: {known}).")

    def cards(self, values):
        """Header cards recording the parameter values a run used.

        Parameters
        ----------
        values : mapping
            Parameter name -> the value used, for parameters that declare a
            :attr:`Param.card` and shared inputs with a card in
            :attr:`shared_cards`; others are ignored.  A Quantity is
            recorded in the card's unit (energies of shared inputs in eV).

        Returns
        -------
        list of (key, value, comment)
            In the order of the declaration, for `xcrfilter.meta.log_to_metadata`.
        """
        out = []
        for name, card in self.shared_cards.items():
            if name in values:
                out += card.records(values[name], SHARED_UNITS.get(name, ""))
        for p in self.params:
            if p.card is not None and p.name in values:
                out += p.card.records(values[p.name], p.unit)
        return out

    def record(self, meta, used=None, counts=None, cards=(), history=None):
        """Record what a run did in ``meta``: the one way a filter logs its provenance.

        Writes, through `xcrfilter.meta.log_to_metadata`, the cards of the
        values used (:meth:`cards`), the declared :attr:`counts` given, any
        further ``cards`` (model name, checksum, mode) and the HISTORY text.

        Parameters
        ----------
        meta : dict or `~astropy.io.fits.Header`
            ``Table.meta`` of the output table (or a header).
        used : mapping, optional
            Parameter or shared-input name -> value used.
        counts : mapping, optional
            Count keyword -> value, for keywords of :attr:`counts`.
        cards : iterable of (key, value, comment)
            Cards that are neither parameters nor counts.
        history : str or list of str, optional
            What the run did, one HISTORY line each.

        Raises
        ------
        ValueError
            A key of ``counts`` that is not a declared :class:`Count`.
        """
        counts = dict(counts or {})
        unknown = sorted(set(counts) - set(self.count_cards))
        if unknown:
            raise ValueError(f"filter {self.name!r}: undeclared count card(s) {unknown} "
                             f"(declared: {', '.join(self.count_cards) or 'none'}).")
        records = self.cards(used or {})
        records += [(c.key, int(counts[c.key]), c.comment) for c in self.counts
                    if c.key in counts]
        log_to_metadata(meta, records + list(cards), history)

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


def status_mask(status):
    """Bit mask (int) of a STATUS declaration ``{NAME: (bit, meaning)}``."""
    mask = 0
    for bit, _ in status.values():
        mask |= 1 << int(bit)
    return mask
