"""Small helpers to record FITS header keywords in ``Table.meta``."""
from __future__ import annotations

import datetime

__all__ = ["set_card", "add_history", "card_value"]


def set_card(meta, key, value, comment=""):
    """Record FITS keyword ``key`` in ``meta`` as a ``(value, comment)`` pair.

    Keywords longer than 8 characters are written by astropy as HIERARCH
    cards; keep keys to 8 characters for ds9/fv friendliness.
    """
    key = str(key).upper()
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    meta[key] = (value, comment) if comment else value


def card_value(meta, key, default=None):
    """Value of keyword ``key`` in ``meta`` whether stored plain or as (value, comment)."""
    value = meta.get(str(key).upper(), default)
    if isinstance(value, tuple) and len(value) == 2:
        return value[0]
    return value


def add_history(meta, text):
    """Append a HISTORY line (UTC-stamped) to ``meta``."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    history = list(meta.get("HISTORY", []))
    history.append(f"{stamp} {text}")
    meta["HISTORY"] = history
