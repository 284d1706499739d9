"""Geant4 pixel-deposit tables as input: streamed frame groups, chip geometry, truth labels.

Teams that simulate the particle background with Geant4 write sparse tables of
pixel deposits rather than images: one row per pixel with signal, columns
``FRAME`` (frame index), pixel coordinates (``RAWX``/``RAWY`` or
``ACTX``/``ACTY``, the second one the image row), ``ENERGY`` and, optionally, a
chip id (``CCDID``, ``CHIPID`` or ``DETID``) and truth columns (``PRIMTYPE``,
``PARTYPE``, ``PRIMID``, ...).  Several chips may share one coordinate system;
:class:`ChipGeometry` says where each chip lies.

This module reads such a table a group of frames at a time (the table is
memory-mapped; only one group of dense chip frames exists at once, never a
dense copy of the whole observation) and maps the truth columns to the
training labels of :mod:`xcrfilter.simulate` (0 none, 1 X-ray, 2 cosmic ray)
so that ``xcrfilter train --frames`` takes these files directly;
:mod:`xcrfilter.io.geant4_filter` finds and filters their events with the
same pipeline as image frames.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from .frames import FrameCube

__all__ = ["ChipGeometry", "WFI_GEANT4", "XRAY_PRIMARY_CODES", "is_pixel_table",
           "PixelTable", "iter_frame_groups", "frame_groups", "iter_training_chunks",
           "truth_labels"]

#: Coordinate column pairs recognised, in order of preference.
COORD_COLUMNS = (("RAWX", "RAWY"), ("ACTX", "ACTY"), ("DETX", "DETY"))
#: Chip id columns recognised.
CHIP_COLUMNS = ("CCDID", "CHIPID", "CCD_ID", "DETID")
#: Codes of the primary-particle column (``PRIMTYPE``) that mean an X-ray
#: photon (a Geant4 ``gamma`` primary, code 4 in the particle bit codes of
#: the Athena WFI background team: 1 proton, 2 e-, 4 gamma, 8 e+, 16 pi-,
#: 32 pi+, 64 neutron, 128 alpha).  Every other deposit is a cosmic ray.
XRAY_PRIMARY_CODES = (4,)


@dataclass(frozen=True)
class ChipGeometry:
    """Where each chip lies in the table's pixel coordinates.

    Parameters
    ----------
    origins : tuple of (int, int)
        ``(x0, y0)`` of chip ``ids[i]``: table coordinate of the chip's pixel
        (RAWX, RAWY) = (0, 0).
    shape : (int, int), optional
        (rows, columns) of every chip.  Default (512, 512).
    ids : tuple of int, optional
        Chip ids (values of the chip column).  Default 0 .. n - 1.
    """

    origins: tuple
    shape: tuple = (512, 512)
    ids: tuple = None

    def __post_init__(self):
        origins = tuple((int(x), int(y)) for x, y in self.origins)
        ids = tuple(range(len(origins))) if self.ids is None else tuple(int(i) for i in self.ids)
        if not origins or len(ids) != len(origins):
            raise ValueError(f"chip geometry: {len(origins)} origins for {len(ids)} chip ids.")
        ny, nx = (int(v) for v in self.shape)
        if ny < 5 or nx < 5:
            raise ValueError(f"chip geometry: chips of {ny} x {nx} pixels; at least 5 x 5.")
        object.__setattr__(self, "origins", origins)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "shape", (ny, nx))

    @classmethod
    def parse(cls, spec):
        """Geometry from a spec string, a file holding one, or a preset name.

        ``"wfi-geant4"`` is :data:`WFI_GEANT4`.  Otherwise ``"NYxNX:x0,y0;x0,y0;..."``
        (chip ids 0, 1, ... in that order) or ``"NYxNX:id=x0,y0;..."``, e.g.
        ``"512x512:632,52;632,610;59,610;59,52"``.  A path to a text file
        with that string is read.

        Raises
        ------
        ValueError
            If the spec cannot be parsed.
        """
        text = str(spec).strip()
        if text.lower() in ("wfi-geant4", "wfi_geant4"):
            return WFI_GEANT4
        if os.path.isfile(text):
            with open(text) as fh:
                text = " ".join(line.split("#")[0] for line in fh).strip()
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*:(.*)", text)
        if not m:
            raise ValueError(f"chip geometry {spec!r}: expected 'wfi-geant4' or "
                             f"'ROWSxCOLS:x0,y0;x0,y0;...' (e.g. "
                             f"'512x512:632,52;632,610;59,610;59,52').")
        origins, ids = [], []
        for i, item in enumerate(p for p in m.group(3).split(";") if p.strip()):
            cid, _, xy = item.rpartition("=")
            try:
                x0, y0 = (int(v) for v in xy.split(","))
                ids.append(int(cid) if cid.strip() else i)
            except ValueError:
                raise ValueError(f"chip geometry {spec!r}: bad chip entry {item!r}; "
                                 f"expected 'x0,y0' or 'id=x0,y0'.") from None
            origins.append((x0, y0))
        return cls(tuple(origins), (int(m.group(1)), int(m.group(2))), tuple(ids))

    @classmethod
    def from_header(cls, header):
        """Geometry from keywords ``CHIPROWS``, ``CHIPCOLS``, ``CHIPXn``/``CHIPYn`` (n = id).

        Returns None when the keywords are absent.
        """
        if header is None:
            return None
        ids = sorted(int(k[5:]) for k in header if re.fullmatch(r"CHIPX\d+", str(k)))
        if not ids:
            return None
        origins = tuple((header[f"CHIPX{i}"], header[f"CHIPY{i}"]) for i in ids)
        shape = (header.get("CHIPROWS", 512), header.get("CHIPCOLS", 512))
        return cls(origins, shape, tuple(ids))

    def cards(self):
        """The keywords :meth:`from_header` reads, as ``meta`` cards."""
        out = {"CHIPROWS": (self.shape[0], "rows of one chip"),
               "CHIPCOLS": (self.shape[1], "columns of one chip")}
        for cid, (x0, y0) in zip(self.ids, self.origins):
            out[f"CHIPX{cid}"] = (x0, f"x of RAWX=0 of chip {cid} (input coords)")
            out[f"CHIPY{cid}"] = (y0, f"y of RAWY=0 of chip {cid} (input coords)")
        return out

    def locate(self, x, y):
        """Index (into ``ids``) of the chip holding each pixel, -1 outside every chip."""
        x, y = np.asarray(x, np.int64), np.asarray(y, np.int64)
        out = np.full(x.shape, -1, dtype=np.int64)
        ny, nx = self.shape
        for i, (x0, y0) in enumerate(self.origins):
            inside = (x >= x0) & (x < x0 + nx) & (y >= y0) & (y < y0 + ny)
            out[inside & (out < 0)] = i
        return out


#: The Athena WFI focal plane as the WFI background team's Geant4 files use it:
#: four 512 x 512 DEPFET chips, ``DETID`` 0-3, origins in ``ACTX``/``ACTY``.
WFI_GEANT4 = ChipGeometry(((632, 52), (632, 610), (59, 610), (59, 52)), (512, 512))


def _table_hdu(hdul):
    for hdu in hdul[1:]:
        if isinstance(hdu, fits.BinTableHDU):
            return hdu
    return None


def is_pixel_table(path):
    """True when the first binary table of ``path`` is a pixel-deposit table.

    That is: columns ``FRAME``, ``ENERGY`` and a coordinate pair of
    :data:`COORD_COLUMNS`, and no ``PHAS`` (which would make it an event list).
    """
    try:
        with fits.open(os.fspath(path), mode="readonly", memmap=True) as hdul:
            hdu = _table_hdu(hdul)
            if hdu is None:
                return False
            names = {n.upper() for n in hdu.columns.names}
    except (OSError, ValueError):
        return False
    return ("FRAME" in names and "ENERGY" in names and "PHAS" not in names
            and any(a in names and b in names for a, b in COORD_COLUMNS))


def truth_labels(columns, rows):
    """Training label (0 none, 1 X-ray, 2 cosmic ray) of deposit rows.

    A deposit whose primary (``PRIMTYPE``) is in :data:`XRAY_PRIMARY_CODES`
    is an X-ray (1), every other deposit a cosmic ray (2): the labels of the
    simulator's ``TRUTH`` extension (:mod:`xcrfilter.simulate`).  Without a
    ``PRIMTYPE`` column every deposit is a cosmic ray.
    """
    if "PRIMTYPE" in columns:
        prim = np.asarray(columns["PRIMTYPE"][rows])
        return np.where(np.isin(prim, XRAY_PRIMARY_CODES), 1, 2).astype(np.uint8)
    return np.full(len(rows), 2, dtype=np.uint8)


class PixelTable:
    """Memory-mapped columns of a pixel-deposit table, sorted by frame.

    Opened with the arguments of :func:`iter_frame_groups`; :meth:`close`
    closes the file.  ``frame``, ``x``, ``y`` and ``chip`` (index into
    ``geometry.ids``, -1 outside every chip) hold every deposit, ``order``
    the deposits sorted by frame, ``frame_ids`` the frames with a deposit;
    ``xcol``, ``ycol`` and ``chipcol`` name the input's columns, ``names``
    maps upper-case column names to them, and ``header`` is the primary
    header updated with the table's.
    """

    def __init__(self, path, geometry=None, energy_unit=None):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"pixel table {self.path!r} does not exist.")
        self.hdul = fits.open(self.path, mode="readonly", memmap=True)
        hdu = _table_hdu(self.hdul)
        if hdu is None:
            raise ValueError(f"{self.path}: no binary table of pixel deposits.")
        self.header = self.hdul[0].header.copy()
        self.header.extend(hdu.header, update=True)
        self.data = hdu.data
        names = {n.upper(): n for n in hdu.columns.names}
        self.names = names
        pair = next(((a, b) for a, b in COORD_COLUMNS if a in names and b in names), None)
        if "FRAME" not in names or "ENERGY" not in names or pair is None:
            raise ValueError(f"{self.path}: a pixel-deposit table needs FRAME, ENERGY and "
                             f"RAWX/RAWY or ACTX/ACTY columns; found {sorted(names)}.")
        self.xcol, self.ycol = pair
        self.chipcol = next((c for c in CHIP_COLUMNS if c in names), None)
        unit_text = hdu.columns[names["ENERGY"]].unit
        self.unit_note = None
        if unit_text:
            self.unit = u.Unit(unit_text, parse_strict="raise")
        elif energy_unit is not None:
            self.unit = u.Unit(energy_unit)
            self.unit_note = f"ENERGY has no TUNIT: read in {self.unit} (given)"
        else:
            self.unit = u.keV
            self.unit_note = ("ENERGY has no TUNIT: read in keV, the convention of Geant4 "
                              "background pixel tables")
            warnings.warn(f"{self.path}: {self.unit_note}; give --phas-unit (energy_unit=) "
                          "to override.",
                          AstropyUserWarning, stacklevel=3)
        self.ev = float((1 * self.unit).to_value(u.eV))
        self.frame = np.asarray(self.data[names["FRAME"]], dtype=np.int64)
        self.x = np.asarray(self.data[names[self.xcol]], dtype=np.int64)
        self.y = np.asarray(self.data[names[self.ycol]], dtype=np.int64)
        self.geometry = self._geometry(geometry)
        self.chip = self.geometry.locate(self.x, self.y)
        if self.chipcol is not None:
            ids = np.asarray(self.data[names[self.chipcol]], dtype=np.int64)
            expect = np.asarray(self.geometry.ids)[np.clip(self.chip, 0, None)]
            bad = (self.chip >= 0) & (ids != expect)
            if bad.any():
                raise ValueError(f"{self.path}: {int(bad.sum())} deposits lie on a chip other "
                                 f"than their {self.chipcol}; check the chip geometry.")
        outside = int((self.chip < 0).sum())
        self.n_outside = outside
        self.order = np.argsort(self.frame, kind="stable")
        self.frame_ids = np.unique(self.frame)

    def _geometry(self, geometry):
        if geometry is not None:
            return geometry if isinstance(geometry, ChipGeometry) else ChipGeometry.parse(geometry)
        geo = ChipGeometry.from_header(self.header)
        if geo is not None:
            return geo
        if self.chipcol is not None and self.xcol == "ACTX" and len(self.x):
            ids = np.asarray(self.data[self.names[self.chipcol]], dtype=np.int64)
            loc = WFI_GEANT4.locate(self.x, self.y)
            if (loc >= 0).all() and (loc == ids).all():
                # every deposit lies on the chip its id names in the WFI layout
                return WFI_GEANT4
        if self.xcol == "RAWX" and len(self.x):
            return ChipGeometry(((0, 0),), (max(5, int(self.y.max()) + 1),
                                            max(5, int(self.x.max()) + 1)))
        raise ValueError(f"{self.path}: the chip geometry is unknown; give it (e.g. "
                         f"'wfi-geant4' or '512x512:632,52;632,610') or add CHIPXn/CHIPYn, "
                         f"CHIPROWS/CHIPCOLS keywords.")

    def n_frames(self):
        """Frames of the observation: ``NFRAMES``, or one past the last ``FRAME``."""
        nkw = self.header.get("NFRAMES")
        top = int(self.frame.max()) + 1 if len(self.frame) else 0
        return max(int(nkw) if nkw is not None else 0, top)

    def close(self):
        """Close the file."""
        self.hdul.close()


def iter_frame_groups(path, *, geometry=None, group_frames=16, energy_unit=None):
    """Dense chip frames of a pixel-deposit table, a group of frames at a time.

    Parameters
    ----------
    path : str or path-like
        FITS file whose first binary table holds the deposits.
    geometry : `ChipGeometry` or str, optional
        Chip layout; default the ``CHIPXn``/``CHIPYn`` keywords, else
        :data:`WFI_GEANT4` when every deposit lies on the chip its id names
        in that layout, else (``RAWX``/``RAWY`` tables) one chip covering the
        coordinates.
    group_frames : int, optional
        Frames per group (default 16): the memory bound is
        ``group_frames x chips x rows x columns x 5`` bytes.
    energy_unit : `~astropy.units.Unit` or str, optional
        Unit of ``ENERGY`` when it has no ``TUNIT`` (default keV, with a warning).

    Yields
    ------
    chip_id : int
    frame_ids : ndarray of int64, shape (n,)
        Input ``FRAME`` of each frame of the cube (frames with no deposit on
        any chip are skipped: they hold no event).
    cube : `~xcrfilter.io.frames.FrameCube`
        (n, rows, columns) float32 energies in eV (deposits on one pixel summed).
    rows : ndarray of int64, shape (n, rows, columns)
        Input table row of the largest deposit on each pixel, -1 where none.
    """
    table = PixelTable(path, geometry, energy_unit)
    try:
        yield from frame_groups(table, int(group_frames))
    finally:
        table.close()


def frame_groups(table, group_frames):
    """What :func:`iter_frame_groups` yields, from an open :class:`PixelTable`."""
    if group_frames < 1:
        raise ValueError(f"group_frames must be >= 1, got {group_frames}.")
    geo = table.geometry
    ny, nx = geo.shape
    sorted_frames = table.frame[table.order]
    energy_col = table.data[table.names["ENERGY"]]
    for g in range(0, len(table.frame_ids), group_frames):
        ids = table.frame_ids[g:g + group_frames]
        lo = np.searchsorted(sorted_frames, ids[0], side="left")
        hi = np.searchsorted(sorted_frames, ids[-1], side="right")
        rows = table.order[lo:hi]
        chip = table.chip[rows]
        local = np.searchsorted(ids, table.frame[rows])
        energy = np.asarray(energy_col[rows], dtype=np.float64) * table.ev
        for ci, cid in enumerate(geo.ids):
            sel = chip == ci
            data = np.zeros((len(ids), ny, nx), dtype=np.float32)
            best = np.full((len(ids), ny, nx), -1, dtype=np.int64)
            if sel.any():
                x0, y0 = geo.origins[ci]
                f, yy, xx = local[sel], table.y[rows[sel]] - y0, table.x[rows[sel]] - x0
                np.add.at(data, (f, yy, xx), energy[sel].astype(np.float32))
                # largest deposit of each pixel names its truth row
                by_energy = np.argsort(energy[sel], kind="stable")
                best[f[by_energy], yy[by_energy], xx[by_energy]] = rows[sel][by_energy]
            header = fits.Header()
            header["BUNIT"] = "eV"
            yield cid, ids, FrameCube(data, np.zeros(data.shape, bool), header,
                                      [table.path], False), best


def iter_training_chunks(path, *, geometry=None, group_frames=16, energy_unit=None):
    """``(frames_ev, labels)`` chunks for ``xcrfilter train --frames``.

    Yields
    ------
    frames_ev : ndarray of float32, shape (n, rows, columns)
        Energies [eV] of the chip frames of one group (:func:`iter_frame_groups`).
    labels : ndarray of uint8, same shape
        0 none, 1 X-ray, 2 cosmic ray (:func:`truth_labels`).
    """
    table = PixelTable(path, geometry, energy_unit)
    try:
        columns = {n: table.data[table.names[n]] for n in ("PRIMTYPE",) if n in table.names}
        columns = {k: np.asarray(v) for k, v in columns.items()}
        for _, _, cube, best in frame_groups(table, int(group_frames)):
            labels = np.zeros(best.shape, dtype=np.uint8)
            hit = best >= 0
            labels[hit] = truth_labels(columns, best[hit])
            yield cube.data, labels
    finally:
        table.close()
