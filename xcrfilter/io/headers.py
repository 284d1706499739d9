"""FITS header conventions shared by every writer and reader of the package.

Structural keywords are dropped when a header is copied
(:func:`clean_header`); ``Table.meta`` and FITS headers convert both ways with
the card comments kept (:func:`apply_meta`, :func:`header_to_meta`, comments
in ``meta[CARD_COMMENTS]`` of :mod:`xcrfilter.meta`); long HISTORY and
COMMENT lines are chunked and joined again (:func:`add_text_lines`); every
file written gets ``CREATOR`` and ``DATE`` (:func:`creator_cards`) and is
written atomically (:func:`write_hdul`).
"""
from __future__ import annotations

import datetime
import os

import astropy.units as u
import numpy as np
from astropy.io import fits

from ..meta import CARD_COMMENTS, fits_text, set_card

__all__ = ["clean_header", "meta_to_header", "is_path", "split_value", "add_text_lines",
           "apply_meta", "header_to_meta", "check_output_path", "write_hdul", "creator_cards",
           "input_file_cards"]

# Keywords describing the HDU structure rather than the observation.
_STRUCTURAL = {"SIMPLE", "BITPIX", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT",
               "EXTNAME", "EXTVER", "BSCALE", "BZERO", "BLANK", "CHECKSUM", "DATASUM",
               "ZIMAGE", "ZBITPIX", "ZCMPTYPE", "TFIELDS"}


def clean_header(header):
    """Copy of ``header`` without structural keywords."""
    out = fits.Header()
    if header is None:
        return out
    for card in header.cards:
        key = card.keyword
        if key in _STRUCTURAL or key.startswith("NAXIS") or key.startswith("ZNAXIS") \
                or key.startswith("ZTILE") or key.startswith("ZNAME") or key.startswith("ZVAL"):
            continue
        out.append(card, end=True)
    return out


def meta_to_header(meta):
    """Build a FITS header from an NDData ``meta`` mapping (unrepresentable items skipped)."""
    if isinstance(meta, fits.Header):
        return clean_header(meta)
    header = fits.Header()
    if not meta:
        return header
    comments = dict(meta).get(CARD_COMMENTS) or {}
    for key, value in dict(meta).items():
        if str(key).upper() == CARD_COMMENTS:
            continue
        try:
            if isinstance(value, tuple) and len(value) == 2:
                header[str(key)] = value
            elif isinstance(value, (list, tuple)) and str(key).upper() in ("HISTORY", "COMMENT"):
                for line in value:
                    header.add_history(str(line)) if str(key).upper() == "HISTORY" \
                        else header.add_comment(str(line))
            else:
                header[str(key)] = (value, comments.get(str(key).upper(), ""))
        except (ValueError, TypeError, KeyError):
            continue
    return header


def is_path(obj):
    """True if ``obj`` names a file (`str` or `os.PathLike`)."""
    return isinstance(obj, (str, os.PathLike))


#: Longest HISTORY / COMMENT text on one card.
_CARD_TEXT = 72
#: Marker ending a HISTORY / COMMENT chunk that continues on the next card.
_CONTINUE_MARK = "&"

_COLUMN_KEY_PREFIXES = ("TTYPE", "TFORM", "TUNIT", "TDIM", "TNULL", "TSCAL", "TZERO",
                        "TDISP", "TLMIN", "TLMAX", "TDMIN", "TDMAX", "TCTYP", "TCUNI",
                        "TCRPX", "TCRVL", "TCDLT", "TCROT", "TCRPV")


def _package_version():
    try:
        from .. import __version__
        return str(__version__)
    except Exception:
        return "unknown"


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _is_structural(key):
    key = key.upper()
    if key in _STRUCTURAL or key.startswith("NAXIS") or key in ("HISTORY", "COMMENT", ""):
        return True
    for prefix in _COLUMN_KEY_PREFIXES:
        if key.startswith(prefix) and key[len(prefix):].isdigit():
            return True
    return False


def _plain(value):
    """FITS-representable scalar from a meta value (numpy scalars, Quantities)."""
    if isinstance(value, u.Quantity):
        return _plain(value.value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def split_value(key, value, comment=""):
    """(value, comment) from a plain value (and its ``comment``) or a (value, comment) tuple."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str):
        value, comment = value
    if isinstance(value, u.Quantity) and value.size == 1:
        unit = value.unit.to_string()
        comment = f"[{unit}] {comment}".strip() if not comment.startswith("[") else comment
    value = _plain(value)
    if not (value is None or isinstance(value, (bool, int, float, str, complex))):
        raise TypeError(f"events.meta[{key!r}] = {value!r} cannot be written as a FITS "
                        f"keyword; use a number, string, bool or (value, comment) tuple.")
    return value, comment


def add_text_lines(header, kind, lines):
    """Add HISTORY/COMMENT ``lines``; long lines are chunked with an ``&`` marker."""
    add = header.add_history if kind == "HISTORY" else header.add_comment
    for line in lines:
        text = fits_text(line)
        while len(text) > _CARD_TEXT:
            add(text[:_CARD_TEXT - 1] + _CONTINUE_MARK)
            text = text[_CARD_TEXT - 1:]
        add(text)


def _join_text_lines(chunks):
    """Inverse of :func:`add_text_lines`."""
    lines, pending = [], ""
    for chunk in chunks:
        chunk = str(chunk).rstrip()
        if len(chunk) == _CARD_TEXT and chunk.endswith(_CONTINUE_MARK):
            pending += chunk[:-1]
            continue
        lines.append(pending + chunk)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def apply_meta(header, meta, *, skip=()):
    """Write every keyword of ``meta`` into ``header`` (HISTORY/COMMENT lists too).

    Comments come from ``meta[CARD_COMMENTS]`` (`xcrfilter.meta`) or from
    ``(value, comment)`` tuples.
    """
    comments = meta.get(CARD_COMMENTS) or {}
    for key, value in meta.items():
        ukey = str(key).upper()
        if ukey == CARD_COMMENTS:
            continue
        if ukey in ("HISTORY", "COMMENT"):
            lines = [value] if isinstance(value, str) else list(value)
            add_text_lines(header, ukey, lines)
            continue
        if ukey in skip or _is_structural(ukey):
            continue
        value, comment = split_value(ukey, value, comments.get(ukey, ""))
        set_card(header, ukey, value, comment)


def header_to_meta(header):
    """``Table.meta``-style dict: plain values, comments in ``meta[CARD_COMMENTS]``
    (`xcrfilter.meta`), HISTORY/COMMENT lists."""
    meta = {}
    for card in header.cards:
        key = card.keyword
        if key in ("HISTORY", "COMMENT"):
            meta.setdefault(key, []).append(str(card.value))
            continue
        if _is_structural(key):
            continue
        set_card(meta, key, card.value, card.comment)
    for key in ("HISTORY", "COMMENT"):
        if key in meta:
            meta[key] = _join_text_lines(meta[key])
    return meta


def check_output_path(path, overwrite, name="path"):
    """``path`` as a str, checked as an output: a regular target, not there unless ``overwrite``.

    Raises
    ------
    TypeError
        ``path`` is not a file path.
    FileExistsError
        The file exists and ``overwrite`` is False.
    """
    if not is_path(path):
        raise TypeError(f"{name} must be a file path (str or pathlib.Path), "
                        f"got {type(path).__name__}.")
    path = os.fspath(path)
    from .outputs import check_regular_target
    check_regular_target(path, name)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{name} {path!r} already exists; pass overwrite=True to "
                              f"replace it.")
    return path


def write_hdul(hdul, path, overwrite, **kwargs):
    """Write ``hdul`` atomically (``path.part``, then renamed; `xcrfilter.io.outputs`)."""
    from .outputs import atomic_write
    with atomic_write(path, overwrite=overwrite) as part:
        hdul.writeto(part, overwrite=True, **kwargs)


def creator_cards(header):
    """Set ``CREATOR`` (the package and its version) and ``DATE`` (now, UTC) in ``header``."""
    set_card(header, "CREATOR", f"xcrfilter {_package_version()}"[:68], "software")
    header["DATE"] = (_utc_now(), "file creation date (UTC)")


def input_file_cards(header, input_files):
    """Record ``input_files`` in ``header``: ``NINFILES`` and ``INFILEnn`` (COMMENT after 99)."""
    files = [os.fspath(f) for f in input_files]
    header["NINFILES"] = (len(files), "number of input frame files")
    for i, fname in enumerate(files, start=1):
        text = fname if len(fname) <= 68 else os.path.basename(fname)[-68:]
        if i <= 99:
            set_card(header, f"INFILE{i:02d}", text, "input frame file")
        else:
            header.add_comment(f"input file {i}: {fname}")
