"""FITS header keywords: recorded in ``Table.meta`` or written to a header, one way.

:func:`set_card` is the one place a keyword is set, in a table's ``meta``
(a dict) or in a `~astropy.io.fits.Header`; :func:`card_value` and
:func:`card_comment` read it back; :func:`add_history` appends a
time-stamped HISTORY line; :func:`log_to_metadata` records what a filter did,
the one way every filter does.

In a ``meta`` dict the value is stored plain, as astropy stores the
keywords of a table it reads (``meta["EVTTHR"] * u.eV`` works), and the
keyword's comment goes to the mapping ``meta[CARD_COMMENTS]``, which the
event-file writer (`xcrfilter.io.eventfile.write_events`) turns back into card
comments.
"""
from __future__ import annotations

import datetime
import warnings

__all__ = ["set_card", "add_history", "log_to_metadata", "card_value", "card_comment",
           "fits_text", "CARD_COMMENTS"]

#: Key of ``Table.meta`` holding the comments of its header keywords,
#: ``{KEYWORD: comment}``.
CARD_COMMENTS = "CARD_COMMENTS"


def fits_text(text):
    """``text`` as printable ASCII for a FITS card (non-ASCII escaped, e.g. ``\\xe4``).

    FITS headers hold ASCII only; file names such as ``ähm_frames.fits`` are
    written with Python's backslash escapes (``\\xe4hm_frames.fits``).
    """
    text = str(text)
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if c.isascii() and c.isprintable() else
                   c.encode("unicode_escape").decode("ascii") for c in text)


def set_card(meta, key, value, comment=""):
    """Set FITS keyword ``key`` in ``meta``: a ``Table.meta`` dict or a FITS header.

    In a dict the value is stored plain and the comment in
    ``meta[CARD_COMMENTS]`` (a new mapping each time: tables that share a
    copied ``meta`` never share comments).  In a `~astropy.io.fits.Header` the card is
    made to fit 80 characters: the comment is shortened (long string values
    still use astropy's CONTINUE convention) and non-ASCII text is escaped
    (:func:`fits_text`).  Keywords longer than 8 characters are written by
    astropy as HIERARCH cards; keep keys to 8 characters for ds9/fv
    friendliness.
    """
    key = str(key).upper()
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(meta, dict):
        meta[key] = value
        comments = dict(meta.get(CARD_COMMENTS) or {})
        if comment:
            comments[key] = str(comment)
        else:
            comments.pop(key, None)
        if comments or CARD_COMMENTS in meta:
            meta[CARD_COMMENTS] = comments
        return
    from astropy.io import fits
    if isinstance(value, str):
        value = fits_text(value)
    if comment:
        comment = fits_text(comment)
    if comment and not (isinstance(value, str) and len(value) > 68):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = len(fits.Card(key, value).image.rstrip())
        room = 80 - base - 3
        comment = comment[:room] if room >= 4 else ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        meta[key] = (value, comment)


def card_value(meta, key, default=None):
    """Value of keyword ``key`` in ``meta`` whether stored plain or as (value, comment)."""
    value = meta.get(str(key).upper(), default)
    if isinstance(value, tuple) and len(value) == 2:
        return value[0]
    return value


def card_comment(meta, key, default=""):
    """Comment of keyword ``key`` in ``meta`` (a dict as :func:`set_card` fills it, or a header)."""
    key = str(key).upper()
    if not isinstance(meta, dict):
        return meta.comments[key] if key in meta else default
    value = meta.get(key)
    if isinstance(value, tuple) and len(value) == 2:
        return value[1]
    return (meta.get(CARD_COMMENTS) or {}).get(key, default)


def add_history(meta, text):
    """Append a HISTORY line (UTC-stamped) to ``meta`` (a dict or a FITS header)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if not isinstance(meta, dict):
        meta.add_history(f"{stamp} {text}")
        return
    history = list(meta.get("HISTORY", []))
    history.append(f"{stamp} {text}")
    meta["HISTORY"] = history


def log_to_metadata(meta, cards=(), history=None):
    """Record a filter's provenance in ``meta``: its header cards and one HISTORY line.

    The one place the filters record what they did, in the spirit of
    ccdproc's ``log_to_metadata``: the parameter values a run used, as the
    filter's declaration names their cards
    (`xcrfilter.contract.Filter.cards`), the counts and model cards of the
    run, then a time-stamped HISTORY line (:func:`add_history`).

    Parameters
    ----------
    meta : dict or `~astropy.io.fits.Header`
        ``Table.meta`` of the filter's output table (or a header).
    cards : iterable of (key, value, comment)
        Keywords set with :func:`set_card`, in order.
    history : str or list of str, optional
        The HISTORY text: what the step did with which values (one line
        each).
    """
    for key, value, comment in cards:
        set_card(meta, key, value, comment)
    for text in [history] if isinstance(history, str) else history or ():
        add_history(meta, text)
