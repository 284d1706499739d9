"""Frame assembly: X-rays and cosmic-ray showers in, frames with readout noise and truth out.

:class:`FrameSimulator` draws the cosmic-ray showers of a block of frames
(:mod:`xcrfilter.simulate.showers`) and its X-rays, diffuses and integrates
the deposits over pixels, adds readout noise
(:func:`xcrfilter.simulate.physics.gaussian_noise`) and labels every pixel,
tile and source (:mod:`xcrfilter.simulate.truth`); :func:`iter_frames` and
:func:`simulate_frames` stream or return whole simulations.

The simulator works in *blocks* of :data:`BLOCK_FRAMES` frames; each block
has its own random generator derived from the seed and the block index
(``numpy.random.SeedSequence(seed).spawn``-style keys), so a simulation is
reproducible from its seed independently of the chunk size used to stream it.
"""
from __future__ import annotations

from collections import namedtuple

import astropy.units as u
import numpy as np

from ..detector import DetectorModel
from . import physics as ph
from .params import SimulationParameters
from .showers import add_showers
from .spectra import as_spectrum
from .truth import (LABEL_CR, LABEL_XRAY, TILE_CR, TILE_XRAY, DepositList, SourceList,
                    empty_sources)

__all__ = ["FrameSimulator", "SimulatedChunk", "iter_frames", "simulate_frames",
           "BLOCK_FRAMES"]

#: Frames per random-number block (the unit of reproducibility).
BLOCK_FRAMES = 16
SimulatedChunk = namedtuple("SimulatedChunk",
                            ["frames", "labels", "sources", "tile_classes", "first_frame"])
SimulatedChunk.__doc__ = """One chunk of simulated frames.

frames : float32 ndarray (n, ny, nx), eV, readout noise included.
labels : uint8 ndarray (n, ny, nx), 0 none, 1 X-ray, 2 CR.
sources : `~astropy.table.QTable`, one row per simulated source (global FRAME).
tile_classes : uint8 ndarray (n, ny // tile, nx // tile), 0 EMPTY 1 XRAY 2 CR 3 MIX.
first_frame : int, global index of ``frames[0]``.
"""

class FrameSimulator:
    """Physics simulator of X-ray detector frames with truth.

    Parameters
    ----------
    detector : `~xcrfilter.detector.DetectorModel`, optional
        Pixel size, thickness, readout noise, Fano factor, pair energy and
        frame shape.  Default `DetectorModel.wfi` (seed paper Sec. 2).
    params : `SimulationParameters`, optional
        Rates and physics parameters (defaults: the calibrated set).
    spectrum : None, Quantity, callable or spectrum object
        X-ray energy spectrum, see `xcrfilter.simulate.as_spectrum`
        (default log-uniform 0.2-10 keV).
    shape : tuple of int, optional
        Frame shape (rows, columns); default ``detector.shape``.

    Notes
    -----
    Geometry and physics (see :mod:`xcrfilter.simulate.physics` for the
    conventions and sources): back-illuminated sensor, X-rays enter at depth
    0 and are absorbed at an exponential depth with the Si attenuation
    length (photons beyond the thickness are lost); the charge drifts
    ``thickness - depth`` to the readout side and spreads as a Gaussian whose
    rms follows the uniform-field diffusion law; the Gaussian is integrated
    over the pixel edges (separable erf); the charge fluctuates with the
    Fano factor; cosmic-ray tracks are stepped through the full thickness with
    Moyal-distributed soft losses plus explicit delta rays, each step diffused
    the same way; readout noise is Gaussian, ``readout_noise * pair_energy``.
    """

    def __init__(self, detector=None, params=None, spectrum=None, shape=None):
        self.detector = DetectorModel.wfi() if detector is None else detector
        if not isinstance(self.detector, DetectorModel):
            raise TypeError("detector must be a xcrfilter.detector.DetectorModel")
        self.params = SimulationParameters() if params is None else params
        if not isinstance(self.params, SimulationParameters):
            raise TypeError("params must be a SimulationParameters")
        self.spectrum = as_spectrum(spectrum)
        self.shape = tuple(int(s) for s in (self.detector.shape if shape is None else shape))
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ValueError(f"shape must be (rows, columns), got {shape!r}")
        d = self.detector
        self.pixel = float(d.pixel_size.to_value(u.um))
        self.thickness = float(d.thickness.to_value(u.um))
        self.w = float(d.pair_energy.to_value(u.eV / u.electron))
        self.fano = float(d.fano_factor)
        self.noise_ev = float(d.readout_noise_energy.to_value(u.eV))
        p = self.params
        self.sigma_max = float(ph.cloud_sigma(self.thickness, self.thickness,
                                              p.bias_voltage, p.temperature,
                                              p.cloud_sigma0))
        self.half = ph.pixel_stencil(self.sigma_max, self.pixel)
        self.proton_sampler = ph.GCRSampler(p.primary_min_energy, p.primary_max_energy,
                                             p.modulation_potential, 1.0)
        self.alpha_sampler = ph.GCRSampler(p.primary_min_energy, p.primary_max_energy,
                                            p.modulation_potential, 0.5)
        lines = p.fluorescence_lines
        self.line_energies = np.array([e for _, e, _ in lines])
        w = np.array([wt for *_, wt in lines])
        self.line_cdf = np.cumsum(w) / w.sum()

    # ------------------------------------------------------------------
    # random numbers
    # ------------------------------------------------------------------
    @staticmethod
    def block_rng(seed, block):
        """Generator of block ``block`` for ``seed`` (reproducible)."""
        ss = np.random.SeedSequence(seed, spawn_key=(int(block),))
        return np.random.Generator(np.random.PCG64(ss))

    # ------------------------------------------------------------------
    # deposits
    # ------------------------------------------------------------------
    def fano_spread(self, rng, e):
        """Fano fluctuation of deposits ``e`` (eV): Gaussian, sigma^2 = F E w."""
        if e.size == 0:
            return e
        sig = np.sqrt(self.fano * np.maximum(e, 0) * self.w)
        return np.maximum(e + sig * rng.standard_normal(e.size), 0.0)

    def photon_depth(self, rng, energy, front):
        """Absorption depth from the entrance surface (um); NaN if transmitted."""
        lam = ph.attenuation_length(energy)
        z = rng.exponential(1.0, energy.size) * lam
        z = np.where(z <= self.thickness, z, np.nan)
        return np.where(front, self.thickness - z, z)

    # ------------------------------------------------------------------
    def simulate_block(self, rng, n_frames, *, n_xray=None, n_cr=None,
                       xray_window=None, deposit_window=None, noise=True, block_index=0,
                       frame_offset=0):
        """Simulate ``n_frames`` frames with one generator.

        Parameters
        ----------
        rng : `numpy.random.Generator`
        n_frames : int
        n_xray, n_cr : int ndarray (n_frames,), optional
            Number of X-rays / CR showers per frame; default Poisson with the
            parameter rates.
        xray_window : tuple (y0, y1, x0, x1), optional
            Pixel window in which X-rays are placed (default the whole frame).
        deposit_window : tuple (y0, y1, x0, x1), optional
            Only pixels of this window are needed: deposits farther than one
            pixel outside it are skipped (faster; the frame outside the
            window and the ``EDEP`` column are then incomplete).
        noise : bool
            Add readout noise.
        block_index : int
            Used for globally unique source ids.
        frame_offset : int
            Global index of the first frame (FRAME column of the sources).

        Returns
        -------
        frames, labels, sources, tile_classes
            See `SimulatedChunk`.
        """
        p = self.params
        ny, nx = self.shape
        pix = self.pixel
        if n_cr is None:
            n_cr = rng.poisson(p.cr_rate, n_frames)
        if n_xray is None:
            n_xray = rng.poisson(p.xray_rate, n_frames)
        n_cr = np.asarray(n_cr, np.int64)
        n_xray = np.asarray(n_xray, np.int64)
        src = SourceList()
        dep = DepositList()

        add_showers(self, rng, n_frames, n_cr, src, dep)

        cr_keys, cr_e = dep.rasterize(self, n_frames, LABEL_CR, deposit_window)

        # ---------------- X-rays -------------------------------------
        X = int(n_xray.sum())
        x_frame = np.repeat(np.arange(n_frames), n_xray)
        if xray_window is None:
            wy0, wy1, wx0, wx1 = 0, ny, 0, nx
        else:
            wy0, wy1, wx0, wx1 = (int(v) for v in xray_window)
        xe = self.spectrum.sample(rng, X)
        xz = self.photon_depth(rng, xe, np.zeros(X, bool))
        absorbed = np.isfinite(xz)
        xx = rng.uniform(wx0 * pix, wx1 * pix, X)
        xy = rng.uniform(wy0 * pix, wy1 * pix, X)
        if p.no_pileup and X:
            xx, xy = self._redraw(rng, xx, xy, x_frame, absorbed, cr_keys, cr_e,
                                  (wy0, wy1, wx0, wx1))
        xid = src.add(kind=0, label=LABEL_XRAY, species=0, frame=x_frame, energy=xe,
                      x=xx, y=xy, z=xz, theta=0.0, phi=0.0, hit=absorbed, length=0.0)
        src.set_parent(xid, np.full(X, -1))
        dep2 = DepositList()
        dep2.add(x_frame[absorbed], xx[absorbed], xy[absorbed], xz[absorbed],
                 self.fano_spread(rng, xe[absorbed]), LABEL_XRAY, xid[absorbed])
        x_keys, x_e = dep2.rasterize(self, n_frames, LABEL_XRAY, deposit_window)

        # ---------------- assemble -----------------------------------
        keys = np.concatenate([cr_keys, x_keys])
        vals = np.concatenate([cr_e, x_e])
        lab = np.concatenate([np.full(cr_keys.size, LABEL_CR, np.uint8),
                              np.full(x_keys.size, LABEL_XRAY, np.uint8)])
        if noise and self.noise_ev > 0:
            frames = ph.gaussian_noise(rng, (n_frames, ny, nx), self.noise_ev,
                                    exact=p.exact_noise)
        else:
            frames = np.zeros((n_frames, ny, nx), np.float32)
        flat = frames.reshape(-1)
        np.add.at(flat, keys, vals.astype(np.float32))
        labels = np.zeros(n_frames * ny * nx, np.uint8)
        # label = source with the largest deposit (ties: X-ray), above threshold
        order = np.lexsort((lab == LABEL_XRAY, vals, keys))
        k_sorted = keys[order]
        last = np.ones(k_sorted.size, bool)
        last[:-1] = k_sorted[1:] != k_sorted[:-1]
        win_k = k_sorted[last]
        win_v = vals[order][last]
        win_l = lab[order][last]
        keep = win_v >= p.label_threshold
        labels[win_k[keep]] = win_l[keep]
        labels = labels.reshape(n_frames, ny, nx)
        tiles = self._tile_classes(n_frames, keys, vals, lab)
        src.finish(self, block_index, frame_offset, dep_all=(dep, dep2))
        return frames, labels, src.table, tiles

    def _tile_classes(self, n_frames, keys, vals, lab):
        t = int(self.params.tile)
        ny, nx = self.shape
        nty, ntx = ny // t, nx // t
        out = np.zeros((n_frames, nty, ntx), np.uint8)
        if nty == 0 or ntx == 0:
            return out
        sel = vals > self.params.split_threshold
        k = keys[sel]
        f = k // (ny * nx)
        r = k % (ny * nx)
        iy, ix = r // nx, r % nx
        ok = (iy < nty * t) & (ix < ntx * t)
        tid = (f * nty + iy // t) * ntx + ix // t
        for lbl, bit in ((LABEL_XRAY, TILE_XRAY), (LABEL_CR, TILE_CR)):
            m = ok & (lab[sel] == lbl)
            flag = np.zeros(n_frames * nty * ntx, bool)
            flag[tid[m]] = True
            out.reshape(-1)[flag] |= np.uint8(bit)
        return out

    def _redraw(self, rng, xx, xy, x_frame, absorbed, cr_keys, cr_e, window):
        """Re-draw X-ray positions that would pile up (seed paper Sec. 2)."""
        p = self.params
        ny, nx = self.shape
        pix = self.pixel
        h = max(1, self.half)
        wy0, wy1, wx0, wx1 = window
        crk = np.unique(cr_keys[cr_e >= p.label_threshold])
        offs = np.arange(-h, h + 1)
        for _ in range(int(p.max_redraw)):
            ix = np.floor(xx / pix).astype(np.int64)
            iy = np.floor(xy / pix).astype(np.int64)
            bad = np.zeros(xx.size, bool)
            if crk.size:
                jy = np.clip(iy[:, None, None] + offs[None, :, None], 0, ny - 1)
                jx = np.clip(ix[:, None, None] + offs[None, None, :], 0, nx - 1)
                kk = (x_frame[:, None, None] * ny + jy) * nx + jx
                pos = np.searchsorted(crk, kk)
                hitcr = crk[np.minimum(pos, crk.size - 1)] == kk
                bad |= hitcr.reshape(xx.size, -1).any(axis=1)
            # X-ray / X-ray overlap of footprints (absorbed photons only)
            order = np.lexsort((ix, x_frame))
            fo, xo, yo, ao = x_frame[order], ix[order], iy[order], absorbed[order]
            for lag in range(1, 8):
                if lag >= xx.size:
                    break
                same = (fo[lag:] == fo[:-lag]) & ao[lag:] & ao[:-lag]
                near = same & (np.abs(xo[lag:] - xo[:-lag]) <= 2 * h) & \
                    (np.abs(yo[lag:] - yo[:-lag]) <= 2 * h)
                bad[order[lag:][near]] = True
            bad &= absorbed
            if not bad.any():
                break
            nb = int(bad.sum())
            xx = xx.copy()
            xy = xy.copy()
            xx[bad] = rng.uniform(wx0 * pix, wx1 * pix, nb)
            xy[bad] = rng.uniform(wy0 * pix, wy1 * pix, nb)
        return xx, xy


def iter_frames(n_frames, *, seed=None, detector=None, params=None, spectrum=None,
                shape=None, chunk_size=64, noise=True, simulator=None, physics=None):
    """Stream simulated frames in chunks (constant memory).

    Parameters
    ----------
    n_frames : int
        Total number of frames.
    seed : int or None
        Seed of the simulation; equal seeds give identical frames and truth
        whatever ``chunk_size`` is, and the first ``k`` frames do not depend
        on ``n_frames``.  ``None`` draws fresh entropy.
    detector, params, spectrum, shape
        See `FrameSimulator`.
    chunk_size : int
        Frames per yielded chunk (memory: about ``5 * chunk_size * ny * nx``
        bytes).
    noise : bool
        Add readout noise.
    simulator : `FrameSimulator`, optional
        Use this simulator instead of building one.
    physics : `~xcrfilter.simulate.RandomPhysicsSimulator`, optional
        Randomised physics: every block of `BLOCK_FRAMES` frames is
        simulated with parameters, readout noise and X-ray spectrum drawn
        anew (``params``, ``spectrum`` and the detector noise are then
        ignored).

    Yields
    ------
    `SimulatedChunk`
        ``frames`` (float32 eV), ``labels`` (uint8), ``sources`` (QTable with
        the global FRAME index), ``tile_classes`` and ``first_frame``.
    """
    n_frames = int(n_frames)
    chunk_size = int(chunk_size)
    if n_frames < 0 or chunk_size < 1:
        raise ValueError("n_frames must be >= 0 and chunk_size >= 1")
    sim = simulator or FrameSimulator(detector, params, spectrum, shape)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2 ** 63))
    ny, nx = sim.shape
    start = 0
    buf = None  # leftover of the last block: (frames, labels, sources, tiles, first)
    block = 0
    while start < n_frames:
        n = min(chunk_size, n_frames - start)
        frames = np.empty((n, ny, nx), np.float32)
        labels = np.empty((n, ny, nx), np.uint8)
        tiles_parts, src_parts = [], []
        filled = 0
        while filled < n:
            if buf is None:
                # always whole blocks: the first k frames of a run do not depend
                # on n_frames (surplus frames of the last block are dropped)
                b0 = block * BLOCK_FRAMES
                nb = BLOCK_FRAMES
                bsim = sim if physics is None else \
                    physics.block_simulator(seed, block, sim.shape)
                fr, lb, st, tc = bsim.simulate_block(sim.block_rng(seed, block), nb,
                                                     noise=noise, block_index=block,
                                                     frame_offset=b0)
                buf = [fr, lb, st, tc, b0]
                block += 1
            fr, lb, st, tc, b0 = buf
            take = min(n - filled, fr.shape[0])
            frames[filled:filled + take] = fr[:take]
            labels[filled:filled + take] = lb[:take]
            tiles_parts.append(tc[:take])
            g0 = start + filled
            m = (st["FRAME"] >= g0) & (st["FRAME"] < g0 + take)
            src_parts.append(st[m])
            if take == fr.shape[0]:
                buf = None
            else:
                buf = [fr[take:], lb[take:], st, tc[take:], b0 + take]
            filled += take
        from astropy.table import vstack
        sources = vstack(src_parts) if len(src_parts) > 1 else src_parts[0]
        yield SimulatedChunk(frames, labels, sources, np.concatenate(tiles_parts), start)
        start += n


def simulate_frames(n_frames, *, seed=None, detector=None, params=None, spectrum=None,
                    shape=None, noise=True, physics=None):
    """Simulate ``n_frames`` frames in memory (convenience for small ``n``).

    Returns
    -------
    `SimulatedChunk`
        All frames at once (``first_frame`` = 0).

    See Also
    --------
    iter_frames : streaming version with identical output for the same seed.
    """
    parts = list(iter_frames(n_frames, seed=seed, detector=detector, params=params,
                             spectrum=spectrum, shape=shape, noise=noise,
                             chunk_size=max(1, int(n_frames)), physics=physics))
    if not parts:
        sim = FrameSimulator(detector, params, spectrum, shape)
        ny, nx = sim.shape
        t = int(sim.params.tile)
        return SimulatedChunk(np.zeros((0, ny, nx), np.float32), np.zeros((0, ny, nx), np.uint8),
                              empty_sources(), np.zeros((0, ny // t, nx // t), np.uint8), 0)
    return parts[0]
