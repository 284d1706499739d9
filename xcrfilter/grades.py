"""Pattern codes, ASCA grades and EPIC-pn patterns of event islands: lookup tables.

The active pixels (at or above the split threshold) of an event's 3x3
window are one of 256 patterns, numbered by :func:`pattern_code` (the
neighbour bits of Chandra ACIS ``fltgrade`` codes, :data:`NEIGHBOUR_BITS`).
Each code maps through a 256-entry table to its ASCA grade
(:func:`asca_grade`, :data:`GRADE_LUT`), its XMM-Newton EPIC-pn ``PATTERN``
(:func:`epic_pattern`, :data:`EPIC_PATTERN_LUT`) and whether it is one of the
13 shapes the very-faint-mode screening accepts (:data:`ACCEPTED_SHAPE_LUT`,
applied by :func:`is_accepted_shape`).  The tables are
built once at import from the rules below; event finding
(:mod:`xcrfilter.events`) and event lists (:mod:`xcrfilter.io.eventlist`)
look codes up in them.
"""
from __future__ import annotations

import numpy as np

__all__ = ["pattern_code", "asca_grade", "epic_pattern", "is_accepted_shape", "GRADE_LUT",
           "ACCEPTED_SHAPE_LUT", "EPIC_PATTERN_LUT", "NEIGHBOUR_BITS", "IDX_3X3", "IDX_OUTER"]

#: indices of the 3x3 window inside the 25-element PHAS vector
IDX_3X3 = np.array([6, 7, 8, 11, 12, 13, 16, 17, 18])
#: indices of the 16-pixel outer ring of the 5x5 window
IDX_OUTER = np.array([i for i in range(25) if i not in set(IDX_3X3.tolist())])

#: Bit value of each 3x3 neighbour in :func:`pattern_code`, keyed by PHAS index.
#: Rows increase with RAWY; "up" is +RAWY (row 0 at the bottom, as ds9 shows
#: FITS images).  Layout (as seen in ds9)::
#:
#:       32  64 128      (RAWY + 1)
#:        8   .  16      (RAWY)
#:        1   2   4      (RAWY - 1)
#:
#: the same numbering as Chandra ACIS "fltgrade" codes.
NEIGHBOUR_BITS = {6: 1, 7: 2, 8: 4, 11: 8, 13: 16, 16: 32, 17: 64, 18: 128}
_BIT_WEIGHTS = np.zeros(25, dtype=np.int32)
for _k, _v in NEIGHBOUR_BITS.items():
    _BIT_WEIGHTS[_k] = _v

_DL, _D, _DR, _L, _R, _UL, _U, _UR = 1, 2, 4, 8, 16, 32, 64, 128
_SIDES = (_D, _L, _R, _U)
_CORNERS = (_DL, _DR, _UL, _UR)
# corners touching each side pixel
_TOUCH = {_D: _DL | _DR, _U: _UL | _UR, _L: _DL | _UL, _R: _DR | _UR}


def _asca_grade_of_code(code):
    sides = [s for s in _SIDES if code & s]
    corners = code & (_DL | _DR | _UL | _UR)
    if not sides:
        return 0 if corners == 0 else 1
    if len(sides) == 1:
        s = sides[0]
        if corners & _TOUCH[s]:
            return 5
        return {_D: 2, _U: 2, _L: 3, _R: 4}[s]
    if len(sides) == 2:
        a, b = sides
        vertical = {_D, _U}
        if (a in vertical) != (b in vertical):
            enclosed = _TOUCH[a] & _TOUCH[b]
            opposite = (_DL | _DR | _UL | _UR) & ~(_TOUCH[a] | _TOUCH[b])
            if corners & ~(enclosed | opposite):
                return 7
            return 6
    return 7


def _accepted_shape_of_code(code):
    # single, non-diagonal double, L-shaped triple, square quad (paper Sec. 3.1)
    sides = [s for s in _SIDES if code & s]
    corners = code & (_DL | _DR | _UL | _UR)
    if not sides:
        return corners == 0
    if len(sides) == 1:
        return corners == 0
    if len(sides) == 2:
        a, b = sides
        vertical = {_D, _U}
        if (a in vertical) == (b in vertical):
            return False
        return corners in (0, _TOUCH[a] & _TOUCH[b])
    return False


#: ASCA grade (0-7) of each of the 256 3x3 patterns (index = :func:`pattern_code`).
GRADE_LUT = np.array([_asca_grade_of_code(c) for c in range(256)], dtype=np.int16)
#: True for the 13 patterns the very-faint-mode filter accepts.
ACCEPTED_SHAPE_LUT = np.array([_accepted_shape_of_code(c) for c in range(256)], dtype=bool)


def _epic_pattern_of_code(code):
    # XMM-Newton EPIC-pn patterns (XMM-Newton Users Handbook, "pn patterns"):
    # 0 single, 1-4 doubles, 5-8 L-shaped triples, 9-12 square quads, 13 any
    # other; doubles, triples and quads numbered up, right, down, left (the
    # split pixel, or the corner of the L / quad, turning clockwise from +RAWY).
    if not _accepted_shape_of_code(code):
        return 13
    sides = code & (_D | _L | _R | _U)
    doubles = {_U: 1, _R: 2, _D: 3, _L: 4}
    triples = {_U | _L: 5, _U | _R: 6, _D | _R: 7, _D | _L: 8}
    if sides == 0:
        return 0
    if sides in doubles:
        return doubles[sides]
    base = triples[sides]
    return base if code == sides else base + 4


#: EPIC-pn PATTERN (0-13) of each of the 256 3x3 patterns (index = :func:`pattern_code`).
EPIC_PATTERN_LUT = np.array([_epic_pattern_of_code(c) for c in range(256)], dtype=np.int16)


def pattern_code(active):
    """Code (0-255) of the active-pixel pattern around the centre of 3x3/5x5 windows.

    Parameters
    ----------
    active : bool ndarray, shape (n, 25) or (n, 5, 5) or (n, 3, 3)
        Active (>= split threshold) flags of 5x5 islands (row-major, centre
        at index 12) or of 3x3 windows.

    Returns
    -------
    ndarray of int32, shape (n,)
        Sum of :data:`NEIGHBOUR_BITS` of the active neighbours.
    """
    active = np.asarray(active, dtype=bool)
    n = active.shape[0]
    if active.shape[1:] in ((3, 3), (9,)):
        full = np.zeros((n, 25), dtype=bool)
        full[:, IDX_3X3] = active.reshape(n, 9)
        active = full
    active = active.reshape(n, 25)
    return active.astype(np.int32) @ _BIT_WEIGHTS


def asca_grade(code):
    """ASCA grade (0-7) of pattern codes from :func:`pattern_code`.

    The mapping follows the ASCA scheme (as tabulated for Chandra ACIS
    ``fltgrade`` codes): 0 single; 1 single with corner pixels only;
    2 vertical split, 3 left split, 4 right split (corners not touching the
    split pixel are ignored); 5 single-sided split with a corner touching
    the split pixel; 6 L-shaped or square split (the corner enclosed by the
    two split pixels and the opposite corner are ignored); 7 everything else.
    """
    return GRADE_LUT[np.asarray(code, dtype=np.int64)]


def epic_pattern(code):
    """XMM-Newton EPIC-pn ``PATTERN`` (0-13) of pattern codes from :func:`pattern_code`.

    0 single; 1-4 doubles with the split pixel at +RAWY, +RAWX, -RAWY,
    -RAWX; 5-8 L-shaped triples (corner pixel at +RAWY-RAWX, +RAWY+RAWX,
    -RAWY+RAWX, -RAWY-RAWX); 9-12 the square quads in the same order; 13
    every other shape (XMM-Newton Users Handbook, EPIC-pn event patterns;
    the numbering of the Athena WFI background team's event files).
    Patterns 0-12 are exactly the shapes
    :func:`is_accepted_shape` accepts.
    Unlike those files, the outer 5x5 ring never changes the pattern here
    (that is STATUS bit ``OUTER_RING``).
    """
    return EPIC_PATTERN_LUT[np.asarray(code, dtype=np.int64)]


def is_accepted_shape(code):
    """True where the 3x3 pattern is a single, a non-diagonal double, an
    L-shaped triple or a square quad (seed paper Sec. 3.1; no other active
    pixel in the 3x3 window).

    ``code`` is a pattern code of :func:`pattern_code`
    (:data:`ACCEPTED_SHAPE_LUT`): the shape rule of the
    very-faint-mode screening (:mod:`xcrfilter.filters.vfaint`).
    """
    return ACCEPTED_SHAPE_LUT[np.asarray(code, dtype=np.int64)]
