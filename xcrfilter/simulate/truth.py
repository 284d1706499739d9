"""Truth of the simulated frames: pixel labels, tile classes, sources and event labels.

Every pixel gets the label of the source with the largest deposit in it
(:data:`LABEL_XRAY`, :data:`LABEL_CR`, or :data:`LABEL_NONE` below the label
threshold); tiles are classed EMPTY, XRAY, CR or MIX (:func:`tile_classes`);
every simulated source is one row of the sources table (:class:`SourceList`),
and its point deposits are diffused and integrated over pixels by
:class:`DepositList`; :func:`event_truth` labels found events from the pixel
labels.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.table import QTable

from ..events import event_positions
from . import physics as ph

__all__ = ["LABEL_NONE", "LABEL_XRAY", "LABEL_CR", "TILE_EMPTY", "TILE_XRAY", "TILE_CR",
           "TILE_MIX", "TILE_CLASS_NAMES", "DepositList", "SourceList", "empty_sources",
           "event_truth", "tile_classes", "tile_class_from_flags"]

LABEL_NONE, LABEL_XRAY, LABEL_CR = 0, 1, 2
TILE_EMPTY, TILE_XRAY, TILE_CR, TILE_MIX = 0, 1, 2, 3
TILE_CLASS_NAMES = ("EMPTY", "XRAY", "CR", "MIX")
#: Source-id stride per block (ids are ``block * stride + running index``).
_ID_STRIDE = 10_000_000


_KIND_CODES = ("xray", "primary", "secondary_track", "photon", "electron")
_SPECIES = ("photon", "proton", "alpha", "electron")


def tile_class_from_flags(has_x, has_c):
    """Tile class (uint8) from whether a tile has X-ray and CR pixels."""
    return (has_x.astype(np.uint8) * TILE_XRAY + has_c.astype(np.uint8) * TILE_CR)


class DepositList:
    """Point deposits (frame, x, y, z [um], E [eV], label, source id)."""

    def __init__(self):
        self.parts = []

    def add(self, frame, x, y, z, e, label, sid):
        if np.size(e):
            self.parts.append((np.asarray(frame, np.int64), np.asarray(x, float),
                               np.asarray(y, float), np.asarray(z, float),
                               np.asarray(e, float), np.asarray(sid, np.int64)))

    def rasterize(self, sim, n_frames, label, window=None):
        """Diffuse and integrate over pixels; return unique flat keys and sums."""
        self.src_ids = np.zeros(0, np.int64)
        self.src_e = np.zeros(0)
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros(0)
        f, x, y, z, e, sid = (np.concatenate(c) for c in zip(*self.parts))
        if window is not None:
            y0, y1, x0, x1 = window
            pw = sim.pixel
            m = (x >= (x0 - 1) * pw) & (x < (x1 + 1) * pw) & (y >= (y0 - 1) * pw) & \
                (y < (y1 + 1) * pw)
            f, x, y, z, e, sid = f[m], x[m], y[m], z[m], e[m], sid[m]
            if f.size == 0:
                return np.zeros(0, np.int64), np.zeros(0)
        ny, nx = sim.shape
        p = sim.params
        sig = ph.cloud_sigma(sim.thickness - np.clip(z, 0, sim.thickness), sim.thickness,
                             p.bias_voltage, p.temperature, p.cloud_sigma0)
        h = sim.half
        jx, fx = ph.cloud_fractions(x, sig, sim.pixel, h)
        jy, fy = ph.cloud_fractions(y, sig, sim.pixel, h)
        w = e[:, None, None] * fy[:, :, None] * fx[:, None, :]
        vy = (jy >= 0) & (jy < ny)
        vx = (jx >= 0) & (jx < nx)
        valid = vy[:, :, None] & vx[:, None, :] & (w > 0)
        key = (f[:, None, None] * ny + jy[:, :, None]) * nx + jx[:, None, :]
        kv = key[valid]
        wv = w[valid]
        # deposited energy per source (inside the frame); ids are block-local
        sv = np.broadcast_to(sid[:, None, None], key.shape)[valid]
        self.src_ids = np.arange(int(sid.max()) + 1)
        self.src_e = np.bincount(sv, weights=wv, minlength=self.src_ids.size)
        npix = n_frames * ny * nx
        if kv.size * 16 < npix:  # sparse: sort the few keys
            uk, inv = np.unique(kv, return_inverse=True)
            return uk, np.bincount(inv, weights=wv, minlength=uk.size)
        dense = np.bincount(kv, weights=wv, minlength=npix)
        uk = np.flatnonzero(dense)
        return uk, dense[uk]


class SourceList:
    """Accumulates the per-source truth rows of one block."""

    _cols = ("kind", "label", "species", "frame", "energy", "x", "y", "z", "theta",
             "phi", "hit", "length")

    def __init__(self):
        self.rows = {c: [] for c in self._cols}
        self.parent = []
        self.n = 0

    def add(self, **kw):
        n = np.size(kw["frame"])
        for c in self._cols:
            self.rows[c].append(np.broadcast_to(np.asarray(kw[c]), (n,)).copy())
        ids = np.arange(self.n, self.n + n)
        self.parent.append(np.full(n, -2, np.int64))
        self.n += n
        return ids

    def set_parent(self, ids, parent):
        allp = np.concatenate(self.parent) if len(self.parent) > 1 else self.parent[0]
        allp[ids] = parent
        self.parent = [allp]

    def finish(self, sim, block_index, frame_offset, dep_all):
        cat = {c: (np.concatenate(v) if v else np.zeros(0)) for c, v in self.rows.items()}
        parent = np.concatenate(self.parent) if self.parent else np.zeros(0, np.int64)
        n = self.n
        edep = np.zeros(n)
        for dl in dep_all:
            if getattr(dl, "src_ids", None) is not None and dl.src_ids.size:
                edep[dl.src_ids] += dl.src_e
        base = int(block_index) * _ID_STRIDE
        pix = sim.pixel
        t = QTable()
        t["FRAME"] = (cat["frame"].astype(np.int64) + int(frame_offset))
        t["ID"] = np.arange(n, dtype=np.int64) + base
        t["PARENT"] = np.where(parent >= 0, parent + base, -1).astype(np.int64)
        t["KIND"] = np.array(_KIND_CODES, dtype="U15")[cat["kind"].astype(int)] \
            if n else np.zeros(0, "U15")
        t["LABEL"] = cat["label"].astype(np.uint8)
        t["SPECIES"] = np.array(_SPECIES, dtype="U8")[cat["species"].astype(int)] \
            if n else np.zeros(0, "U8")
        t["ENERGY"] = cat["energy"].astype(np.float64) * u.eV
        t["EDEP"] = edep.astype(np.float32) * u.eV
        # pixel coordinates: pixel centres at integers (RAWX/RAWY convention)
        t["X"] = (cat["x"] / pix - 0.5).astype(np.float32) * u.pix
        t["Y"] = (cat["y"] / pix - 0.5).astype(np.float32) * u.pix
        t["Z"] = cat["z"].astype(np.float32) * u.um
        t["THETA"] = cat["theta"].astype(np.float32) * u.deg
        t["PHI"] = cat["phi"].astype(np.float32) * u.deg
        t["HIT"] = cat["hit"].astype(bool)
        t["LENGTH"] = cat["length"].astype(np.float32) * u.um
        if n:
            order = np.argsort(t["FRAME"], kind="stable")
            t = t[order]
        self.table = t


def empty_sources():
    """The (empty) source table of a chunk without frames."""
    s = SourceList()
    s.finish(type("S", (), {"pixel": 1.0})(), 0, 0, ())
    return s.table


def event_truth(events, labels):
    """Truth class of reconstructed events: the label of their central pixel.

    Parameters
    ----------
    events : `~astropy.table.Table`
        Events with integer columns FRAME, RAWX, RAWY (0-based).
    labels : uint8 ndarray (n_frames, ny, nx)
        Truth label cube of the simulation (0 none, 1 X-ray, 2 CR).

    Returns
    -------
    ndarray of int (n_events,)
        1 X-ray, 2 CR, 0 noise (no source deposit in the central pixel).

    Raises
    ------
    ValueError
        If ``labels`` is not 3-D or an event lies outside it.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.ndim != 3:
        raise ValueError(f"labels must be a (n_frames, ny, nx) cube, got shape {labels.shape}")
    if len(events) == 0:
        return np.zeros(0, int)
    f, y, x = event_positions(events, labels.shape, "the label cube")
    return labels[f, y, x].astype(int)


def tile_classes(labels, deposits=None, tile=64, split_threshold=80 * u.eV):
    """Class of each ``tile x tile`` tile of a label cube.

    Parameters
    ----------
    labels : uint8 ndarray (n, ny, nx) or (ny, nx)
    deposits : float ndarray like ``labels``, optional
        Noise-free deposits (eV).  With them a tile is non-empty for a class
        only if one of its pixels of that class exceeds ``split_threshold``;
        without them any labelled pixel counts.
    tile : int
        Tile size (pixels); trailing rows/columns that do not fill a tile are
        ignored.
    split_threshold : `~astropy.units.Quantity`

    Returns
    -------
    uint8 ndarray (n, ny // tile, nx // tile)
        0 EMPTY, 1 XRAY, 2 CR, 3 MIX.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.ndim != 3:
        raise ValueError("labels must be 2-D or 3-D")
    n, ny, nx = labels.shape
    t = int(tile)
    nty, ntx = ny // t, nx // t
    lab = labels[:, :nty * t, :ntx * t]
    if deposits is not None:
        thr = u.Quantity(split_threshold).to_value(u.eV)
        dep = np.asarray(deposits)[:, :nty * t, :ntx * t]
        lab = np.where(dep > thr, lab, 0)
    r = lab.reshape(n, nty, t, ntx, t)
    has_x = (r == LABEL_XRAY).any(axis=(2, 4))
    has_c = (r == LABEL_CR).any(axis=(2, 4))
    return tile_class_from_flags(has_x, has_c)
