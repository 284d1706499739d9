"""A tiny example filter: flag events at or above an energy limit (STATUS bit 7).

It follows the contract of every xcrfilter filter and declares itself with
public names only (:class:`xcrfilter.contract.Filter`);
``docs/writing_a_filter.rst`` walks through it and the test suite runs it.
"""
import astropy.units as u
from astropy.table import QTable, Table

from xcrfilter.cli.argtypes import parse_energy
from xcrfilter.events import set_status_bit
from xcrfilter.contract import Card, Count, Filter, Param
from xcrfilter.units import as_energy, energy_values

#: STATUS bit set by this filter (a free bit of ``xcrfilter.registry.STATUS_BITS``).
BRIGHT_BIT = 7
#: Its STATUS bits, NAME -> (bit, meaning): the registry, the event-file
#: headers (``STATUS7``), ``xcrfilter filter --help`` and the comparison read them.
STATUS = {"BRIGHT": (BRIGHT_BIT, "bright filter: ENERGY >= limit")}

#: Header keywords holding counts, summed by the pipeline over chunks of frames.
COUNTS = (Count("BRTNREJ", f"events flagged (bit {BRIGHT_BIT})"),)


def bright_filter(frames, events=None, *, limit=8 * u.keV):
    """Flag events with ``ENERGY >= limit``.

    Parameters
    ----------
    frames : frames accepted by `xcrfilter.find_events`, or None
        Searched for events when ``events`` is None.
    events : `~astropy.table.Table`, optional
        Events with ``ENERGY`` [energy] and ``STATUS``.
    limit : `~astropy.units.Quantity` [energy], optional
        Default 8 keV.

    Returns
    -------
    `~astropy.table.QTable`
        A new table: the input columns, ``STATUS`` bit 7 cleared and then
        set where ``ENERGY >= limit``, header cards ``BRTLIMIT`` [eV] and
        ``BRTNREJ``.  The input is never modified.
    """
    limit_ev = as_energy(limit, "limit")
    if events is None:
        from xcrfilter import find_events
        events = find_events(frames)
    if not isinstance(events, Table):
        raise TypeError(f"events must be an astropy Table, got {type(events).__name__}")
    missing = [c for c in ("ENERGY", "STATUS") if c not in events.colnames]
    if missing:
        raise ValueError(f"events lack column(s) {missing} needed by the bright filter")
    out = QTable(events, copy=True)                      # never touch the input
    hit = energy_values(out["ENERGY"]) >= limit_ev       # eV; a plain column holds eV
    set_status_bit(out, BRIGHT_BIT, hit)                 # cleared, then set: a re-run replaces it
    # the declared card of each parameter used (BRTLIMIT), the counts, one HISTORY line
    FILTER.record(out.meta, {"limit": limit_ev * u.eV}, {"BRTNREJ": int(hit.sum())},
                  history=f"bright_filter: {int(hit.sum())} events >= {limit_ev:g} eV")
    return out


# -- the declaration: what the pipeline, the command line and the comparison read --

def pipeline_step(cube, events, *, limit=8 * u.keV):
    """Pipeline step: the events of one chunk of frames, already found."""
    return bright_filter(cube, events, limit=limit)


FILTER = Filter(
    name="bright",
    step=pipeline_step,
    status=STATUS,
    params=(Param("limit", 8 * u.keV, "flag events at or above this energy", "eV",
                  type=parse_energy, metavar="E",      # --bright-limit
                  card=Card("BRTLIMIT", "bright filter energy limit")),),
    counts=COUNTS,
)
