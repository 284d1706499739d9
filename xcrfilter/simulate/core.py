"""Frame assembly: X-rays, cosmic-ray showers, readout noise and truth.

The simulator works in *blocks* of :data:`BLOCK_FRAMES` frames; each block
has its own random generator derived from the seed and the block index
(``numpy.random.SeedSequence(seed).spawn``-style keys), so a simulation is
reproducible from its seed independently of the chunk size used to stream it.
"""
from __future__ import annotations

from collections import namedtuple

import astropy.units as u
import numpy as np
from astropy.table import QTable

from ..detector import DetectorModel
from . import physics as ph
from .params import SimulationParameters
from .spectra import as_spectrum

__all__ = ["FrameSimulator", "SimulatedChunk", "iter_frames", "simulate_frames",
           "event_truth", "tile_classes", "gaussian_noise", "LABEL_NONE", "LABEL_XRAY", "LABEL_CR",
           "TILE_EMPTY", "TILE_XRAY", "TILE_CR", "TILE_MIX", "TILE_CLASS_NAMES"]

LABEL_NONE, LABEL_XRAY, LABEL_CR = 0, 1, 2
TILE_EMPTY, TILE_XRAY, TILE_CR, TILE_MIX = 0, 1, 2, 3
TILE_CLASS_NAMES = ("EMPTY", "XRAY", "CR", "MIX")
#: Frames per random-number block (the unit of reproducibility).
BLOCK_FRAMES = 16
#: Source-id stride per block (ids are ``block * stride + running index``).
_ID_STRIDE = 10_000_000

SimulatedChunk = namedtuple("SimulatedChunk",
                            ["frames", "labels", "sources", "tile_classes", "first_frame"])
SimulatedChunk.__doc__ = """One chunk of simulated frames.

frames : float32 ndarray (n, ny, nx), eV, readout noise included.
labels : uint8 ndarray (n, ny, nx), 0 none, 1 X-ray, 2 CR.
sources : `~astropy.table.QTable`, one row per simulated source (global FRAME).
tile_classes : uint8 ndarray (n, ny // tile, nx // tile), 0 EMPTY 1 XRAY 2 CR 3 MIX.
first_frame : int, global index of ``frames[0]``.
"""

_KIND_CODES = ("xray", "primary", "secondary_track", "photon", "electron")
_SPECIES = ("photon", "proton", "alpha", "electron")


def _tile_class_from_flags(has_x, has_c):
    return (has_x.astype(np.uint8) * TILE_XRAY + has_c.astype(np.uint8) * TILE_CR)


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
        self._proton_sampler = ph.GCRSampler(p.primary_min_energy, p.primary_max_energy,
                                             p.modulation_potential, 1.0)
        self._alpha_sampler = ph.GCRSampler(p.primary_min_energy, p.primary_max_energy,
                                            p.modulation_potential, 0.5)
        lines = p.fluorescence_lines
        self._line_e = np.array([e for _, e, _ in lines])
        w = np.array([wt for *_, wt in lines])
        self._line_cdf = np.cumsum(w) / w.sum()

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
    def _fano(self, rng, e):
        """Fano fluctuation of deposits ``e`` (eV): Gaussian, sigma^2 = F E w."""
        if e.size == 0:
            return e
        sig = np.sqrt(self.fano * np.maximum(e, 0) * self.w)
        return np.maximum(e + sig * rng.standard_normal(e.size), 0.0)

    def _tracks(self, rng, x0, y0, z0, ux, uy, uz, charge, mass, tkin_mev, maxlen):
        """Step straight tracks; return deposits (track index, x, y, z, E eV).

        Parameters are per track: entry point (um, z0 in {0, d}), unit
        direction, charge number, mass (MeV), kinetic energy (MeV), and the
        maximum path length (um; e.g. the electron range).
        """
        p = self.params
        d = self.thickness
        n_tr = x0.size
        if n_tr == 0:
            z = np.zeros(0)
            return np.zeros(0, np.int64), z, z, z, z
        auz = np.maximum(np.abs(uz), 1e-6)
        length = np.minimum(d / auz, maxlen)
        nstep = np.maximum(1, np.ceil(length / p.step_length).astype(np.int64))
        ds = length / nstep
        gamma = 1.0 + tkin_mev / mass
        bg = np.sqrt(np.maximum(gamma * gamma - 1.0, 1e-12))
        tcut = p.delta_min_energy * 1e-3
        tmax = ph.tmax_mev(bg, mass)
        is_e = mass < 1.0
        tmax = np.where(is_e, 0.5 * tkin_mev, tmax)
        soft = p.soft_loss_scale * ph.bethe_restricted_kev_um(bg, charge, mass, tcut)
        xi = ph.landau_xi_kev_um(bg, charge)
        # soft part: Moyal per step, mean soft*ds, scale xi*ds (keV)
        tid = np.repeat(np.arange(n_tr), nstep)
        first = np.concatenate([[0], np.cumsum(nstep)[:-1]])
        k = np.arange(tid.size) - np.repeat(first, nstep)
        s = (k + 0.5) * ds[tid]
        scale = (xi * ds)[tid]
        loc = (soft * ds)[tid] - (np.euler_gamma + np.log(2.0)) * scale
        zz = rng.standard_normal(tid.size)
        moyal = -np.log(np.maximum(zz * zz, 1e-300))
        e_soft = np.maximum(loc + scale * moyal, 0.0) * 1e3
        xs = x0[tid] + s * ux[tid]
        ys = y0[tid] + s * uy[tid]
        zs = z0[tid] + s * uz[tid]
        # hard collisions: delta rays with dN/dT ~ 1/T^2 (Bethe, free electrons)
        tcut_k = tcut * 1e3
        tmax_k = tmax * 1e3
        has = tmax_k > tcut_k
        rate = np.where(has, xi * (1.0 / tcut_k - 1.0 / np.maximum(tmax_k, tcut_k)), 0.0)
        nd = rng.poisson(rate * length)
        did = np.repeat(np.arange(n_tr), nd)
        if did.size:
            inv = 1.0 / tcut_k - rng.random(did.size) * (1.0 / tcut_k - 1.0 / tmax_k[did])
            tdel = 1.0 / inv  # keV
            sd = rng.random(did.size) * length[did]
            px = x0[did] + sd * ux[did]
            py = y0[did] + sd * uy[did]
            pz = z0[did] + sd * uz[did]
            tm = tmax_k[did]
            ME_KEV = ph.ME_MEV * 1e3
            me = ME_KEV
            cosa = np.sqrt(np.clip(tdel * (tm + 2 * me) / (tm * (tdel + 2 * ME_KEV)), 0, 1))
            sina = np.sqrt(1 - cosa * cosa)
            az = rng.uniform(0, 2 * np.pi, did.size)
            # orthonormal basis perpendicular to the track direction
            vx, vy, vz = ux[did], uy[did], uz[did]
            ax = np.where(np.abs(vz) < 0.9, 0.0, 1.0)  # helper axis a = (ax, 0, az)
            az_ = 1.0 - ax
            e1x, e1y, e1z = -az_ * vy, az_ * vx - ax * vz, ax * vy  # a x v
            nrm = np.sqrt(e1x ** 2 + e1y ** 2 + e1z ** 2)
            e1x, e1y, e1z = e1x / nrm, e1y / nrm, e1z / nrm
            e2x = vy * e1z - vz * e1y
            e2y = vz * e1x - vx * e1z
            e2z = vx * e1y - vy * e1x
            c, sn = np.cos(az), np.sin(az)
            dx = cosa * vx + sina * (c * e1x + sn * e2x)
            dy = cosa * vy + sina * (c * e1y + sn * e2y)
            dz = cosa * vz + sina * (c * e1z + sn * e2z)
            rng_um = ph.electron_range_um(tdel)
            with np.errstate(divide="ignore", invalid="ignore"):
                exit_len = np.where(dz > 1e-9, (d - pz) / dz,
                                    np.where(dz < -1e-9, pz / -dz, np.inf))
            ell = np.minimum(rng_um, np.maximum(exit_len, 0.0))
            edel = tdel * 1e3 * np.where(rng_um > 0, ell / np.maximum(rng_um, 1e-12), 1.0)
            # continuous deposit along the delta-ray path, one point per step
            nsub = np.clip(np.ceil(ell / p.step_length), 1, 2000).astype(np.int64)
            rep = np.repeat(np.arange(did.size), nsub)
            first_d = np.concatenate([[0], np.cumsum(nsub)[:-1]])
            kk = np.arange(rep.size) - np.repeat(first_d, nsub)
            fr = (kk + 0.5) / nsub[rep]
            dxs = px[rep] + fr * ell[rep] * dx[rep]
            dys = py[rep] + fr * ell[rep] * dy[rep]
            dzs = pz[rep] + fr * ell[rep] * dz[rep]
            des = (edel / nsub)[rep]
            dtid = did[rep]
            tid = np.concatenate([tid, dtid])
            xs = np.concatenate([xs, dxs])
            ys = np.concatenate([ys, dys])
            zs = np.concatenate([zs, dzs])
            e_soft = np.concatenate([e_soft, des])
        return tid, xs, ys, zs, e_soft

    def _place_along_axis(self, rng, cx, cy, phi, scale_px, n, orphan=None):
        """Positions (um) of ``n`` secondaries around their shower centres.

        Along the projected axis: a two-sided exponential of scale
        ``scale_px`` and a Gaussian of rms ``sec_perp_sigma`` across it; a
        fraction ``sec_iso_fraction`` is placed isotropically instead, at an
        exponential radius of scale ``sec_iso_scale``.  Secondaries of
        orphan showers (``orphan`` True) have every scale multiplied by
        ``orphan_spread``.  With the default parameters no extra random
        numbers are drawn, so the calibrated simulation is unchanged.
        """
        p = self.params
        t = rng.exponential(scale_px, n) * np.where(rng.random(n) < 0.5, -1.0, 1.0)
        sp = rng.normal(0.0, p.sec_perp_sigma, n)
        c, s = np.cos(phi), np.sin(phi)
        dx = t * c - sp * s
        dy = t * s + sp * c
        if p.sec_iso_fraction > 0 and n:
            iso = rng.random(n) < p.sec_iso_fraction
            r = rng.exponential(p.sec_iso_scale, n)
            a = rng.uniform(0, 2 * np.pi, n)
            dx = np.where(iso, r * np.cos(a), dx)
            dy = np.where(iso, r * np.sin(a), dy)
        if orphan is not None and p.orphan_spread != 1.0:
            f = np.where(orphan, p.orphan_spread, 1.0)
            dx, dy = dx * f, dy * f
        return cx + dx * self.pixel, cy + dy * self.pixel

    def _photon_depth(self, rng, energy, front):
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
        pix, d = self.pixel, self.thickness
        if n_cr is None:
            n_cr = rng.poisson(p.cr_rate, n_frames)
        if n_xray is None:
            n_xray = rng.poisson(p.xray_rate, n_frames)
        n_cr = np.asarray(n_cr, np.int64)
        n_xray = np.asarray(n_xray, np.int64)
        src = _SourceList()
        dep = _DepositList()

        # ---------------- cosmic-ray showers -------------------------
        S = int(n_cr.sum())
        sh_frame = np.repeat(np.arange(n_frames), n_cr)
        cx = rng.uniform(0, nx * pix, S)
        cy = rng.uniform(0, ny * pix, S)
        phi = rng.uniform(0, 2 * np.pi, S)
        if p.incidence_power == 1.0:
            cost = np.sqrt(rng.random(S))  # cos-weighted isotropic flux through a plane
        else:  # dN/dOmega ~ cos(theta)**n  ->  cos(theta) = U**(1 / (n + 1))
            cost = rng.random(S) ** (1.0 / (p.incidence_power + 1.0))
        sint = np.sqrt(1 - cost ** 2)
        hit = rng.random(S) >= p.cr_miss_fraction
        alpha = rng.random(S) < p.alpha_fraction
        tn = np.where(alpha, self._alpha_sampler.sample(rng, S),
                      self._proton_sampler.sample(rng, S))
        nucleons = np.where(alpha, 4.0, 1.0)
        mass = np.where(alpha, ph.MALPHA_MEV, ph.MP_MEV)
        charge = np.where(alpha, 2.0, 1.0)
        tkin = tn * nucleons
        # primary's entry surface: back (z=0) or front with equal probability
        from_front = rng.random(S) < 0.5
        sh_id = src.add(kind=1, label=LABEL_CR, species=np.where(alpha, 2, 1),
                        frame=sh_frame, energy=tkin * 1e6, x=cx, y=cy,
                        z=np.where(from_front, d, 0.0), theta=np.degrees(np.arccos(cost)),
                        phi=np.degrees(phi), hit=hit,
                        length=np.where(hit, d / np.maximum(cost, 1e-6), 0.0))
        src.set_parent(sh_id, sh_id)
        # secondary electron tracks
        n_sec = rng.poisson(p.sec_track_mean, S) + (~hit).astype(np.int64)
        if p.orphan_extra_mean > 0:
            n_sec += rng.poisson(p.orphan_extra_mean, S) * (~hit)
        sec_sh = np.repeat(np.arange(S), n_sec)
        ns = sec_sh.size
        sx, sy = self._place_along_axis(rng, cx[sec_sh], cy[sec_sh], phi[sec_sh],
                                        p.sec_track_scale, ns, ~hit[sec_sh])
        s_cost = np.sqrt(rng.random(ns))
        s_phi = rng.uniform(0, 2 * np.pi, ns)
        s_front = rng.random(ns) < 0.5
        s_t = np.exp(rng.uniform(np.log(p.sec_electron_min), np.log(p.sec_electron_max), ns))
        s_range = ph.electron_range_um(s_t * 1e3)
        s_id = src.add(kind=2, label=LABEL_CR, species=3, frame=sh_frame[sec_sh],
                       energy=s_t * 1e6, x=sx, y=sy, z=np.where(s_front, d, 0.0),
                       theta=np.degrees(np.arccos(s_cost)), phi=np.degrees(s_phi), hit=True,
                       length=np.minimum(d / np.maximum(s_cost, 1e-6), s_range))
        src.set_parent(s_id, sh_id[sec_sh])
        # all tracks together
        hp = np.nonzero(hit)[0]
        t_src = np.concatenate([sh_id[hp], s_id])
        t_frame = np.concatenate([sh_frame[hp], sh_frame[sec_sh]])
        t_x0 = np.concatenate([cx[hp], sx])
        t_y0 = np.concatenate([cy[hp], sy])
        t_sint = np.concatenate([sint[hp], np.sqrt(1 - s_cost ** 2)])
        t_cost = np.concatenate([cost[hp], s_cost])
        t_phi = np.concatenate([phi[hp], s_phi])
        t_front = np.concatenate([from_front[hp], s_front])
        t_ux = t_sint * np.cos(t_phi)
        t_uy = t_sint * np.sin(t_phi)
        t_uz = np.where(t_front, -t_cost, t_cost)
        t_z0 = np.where(t_front, d, 0.0)
        t_charge = np.concatenate([charge[hp], np.ones(ns)])
        t_mass = np.concatenate([mass[hp], np.full(ns, ph.ME_MEV)])
        t_tkin = np.concatenate([tkin[hp], s_t])
        t_max = np.concatenate([np.full(hp.size, np.inf), s_range])
        tid, xs, ys, zs, es = self._tracks(rng, t_x0, t_y0, t_z0, t_ux, t_uy, t_uz,
                                           t_charge, t_mass, t_tkin, t_max)
        dep.add(t_frame[tid], xs, ys, zs, self._fano(rng, es), LABEL_CR, t_src[tid])

        # secondary photons (fluorescence lines + continuum)
        n_ph = rng.poisson(p.photon_mean, S)
        ph_sh = np.repeat(np.arange(S), n_ph)
        nph = ph_sh.size
        if nph:
            px, py = self._place_along_axis(rng, cx[ph_sh], cy[ph_sh], phi[ph_sh],
                                            p.photon_scale, nph, ~hit[ph_sh])
            cont = rng.random(nph) < p.photon_continuum_fraction
            li = np.searchsorted(self._line_cdf, rng.random(nph), side="right")
            li = np.minimum(li, self._line_e.size - 1)
            econt = np.exp(rng.uniform(np.log(p.photon_continuum_min * 1e3),
                                       np.log(p.photon_continuum_max * 1e3), nph))
            pe = np.where(cont, econt, self._line_e[li])
            front = rng.random(nph) < p.photon_front_fraction
            pz = self._photon_depth(rng, pe, front)
            ok = np.isfinite(pz)
            pid = src.add(kind=3, label=LABEL_CR, species=0, frame=sh_frame[ph_sh], energy=pe,
                          x=px, y=py, z=pz, theta=0.0, phi=0.0, hit=ok, length=0.0)
            src.set_parent(pid, sh_id[ph_sh])
            dep.add(sh_frame[ph_sh][ok], px[ok], py[ok], pz[ok], self._fano(rng, pe[ok]),
                    LABEL_CR, pid[ok])
        # low-energy electron blobs
        n_el = rng.poisson(p.electron_mean, S)
        el_sh = np.repeat(np.arange(S), n_el)
        nel = el_sh.size
        if nel:
            ex, ey = self._place_along_axis(rng, cx[el_sh], cy[el_sh], phi[el_sh],
                                            p.electron_scale, nel, ~hit[el_sh])
            ee = np.exp(rng.uniform(np.log(p.electron_min_energy * 1e3),
                                    np.log(p.electron_max_energy * 1e3), nel))
            front = rng.random(nel) < 0.5
            ez = np.where(front, d - 0.5, 0.5)
            eid = src.add(kind=4, label=LABEL_CR, species=3, frame=sh_frame[el_sh], energy=ee,
                          x=ex, y=ey, z=ez, theta=0.0, phi=0.0, hit=True, length=0.0)
            src.set_parent(eid, sh_id[el_sh])
            k = int(p.electron_blob_parts)
            wts = rng.dirichlet(np.ones(k), nel)
            bx = (ex[:, None] + rng.normal(0, p.electron_blob_sigma, (nel, k))).ravel()
            by = (ey[:, None] + rng.normal(0, p.electron_blob_sigma, (nel, k))).ravel()
            be = (ee[:, None] * wts).ravel()
            dep.add(np.repeat(sh_frame[el_sh], k), bx, by, np.repeat(ez, k),
                    self._fano(rng, be), LABEL_CR, np.repeat(eid, k))

        cr_keys, cr_e = dep.rasterize(self, n_frames, LABEL_CR, deposit_window)

        # ---------------- X-rays -------------------------------------
        X = int(n_xray.sum())
        x_frame = np.repeat(np.arange(n_frames), n_xray)
        if xray_window is None:
            wy0, wy1, wx0, wx1 = 0, ny, 0, nx
        else:
            wy0, wy1, wx0, wx1 = (int(v) for v in xray_window)
        xe = self.spectrum.sample(rng, X)
        xz = self._photon_depth(rng, xe, np.zeros(X, bool))
        absorbed = np.isfinite(xz)
        xx = rng.uniform(wx0 * pix, wx1 * pix, X)
        xy = rng.uniform(wy0 * pix, wy1 * pix, X)
        if p.no_pileup and X:
            xx, xy = self._redraw(rng, xx, xy, x_frame, absorbed, cr_keys, cr_e,
                                  (wy0, wy1, wx0, wx1))
        xid = src.add(kind=0, label=LABEL_XRAY, species=0, frame=x_frame, energy=xe,
                      x=xx, y=xy, z=xz, theta=0.0, phi=0.0, hit=absorbed, length=0.0)
        src.set_parent(xid, np.full(X, -1))
        dep2 = _DepositList()
        dep2.add(x_frame[absorbed], xx[absorbed], xy[absorbed], xz[absorbed],
                 self._fano(rng, xe[absorbed]), LABEL_XRAY, xid[absorbed])
        x_keys, x_e = dep2.rasterize(self, n_frames, LABEL_XRAY, deposit_window)

        # ---------------- assemble -----------------------------------
        keys = np.concatenate([cr_keys, x_keys])
        vals = np.concatenate([cr_e, x_e])
        lab = np.concatenate([np.full(cr_keys.size, LABEL_CR, np.uint8),
                              np.full(x_keys.size, LABEL_XRAY, np.uint8)])
        if noise and self.noise_ev > 0:
            frames = gaussian_noise(rng, (n_frames, ny, nx), self.noise_ev,
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


_NOISE_BITS = 16


def _noise_table():
    """Conditional means of the 2^16 equiprobable bins of the standard normal."""
    from scipy.special import ndtri
    nb = 1 << _NOISE_BITS
    edges = ndtri(np.arange(nb + 1) / nb)
    pdf = np.exp(-0.5 * np.square(edges)) / np.sqrt(2 * np.pi)
    pdf[[0, -1]] = 0.0
    return ((pdf[:-1] - pdf[1:]) * nb), float(edges[1])


_NOISE_TABLE = None


def gaussian_noise(rng, shape, sigma, exact=False):
    """Gaussian readout noise, float32, rms ``sigma``.

    With ``exact=False`` (fast, default) a uniform 16-bit integer (a quarter
    of a 64-bit word of the bit generator) picks one of
    65,536 equiprobable bins of the normal distribution and the pixel gets the
    bin's conditional mean; the two outermost bins (``|x| > 4.33 sigma``,
    probability 3e-5) are sampled exactly from the normal tail.  The
    variance is exact to 3e-4 and every threshold crossing probability to
    better than 1e-3 relative; it is 2-3 times faster than
    `numpy.random.Generator.standard_normal`.  ``exact=True`` uses the
    latter.
    """
    if exact:
        out = rng.standard_normal(shape, dtype=np.float32)
        out *= np.float32(sigma)
        return out
    global _NOISE_TABLE
    if _NOISE_TABLE is None:
        _NOISE_TABLE = _noise_table()
    table, z1 = _NOISE_TABLE
    tab = (table * sigma).astype(np.float32)
    n = int(np.prod(shape))
    # uniform 16-bit integers straight from the bit generator's 64-bit words
    flat_k = rng.bit_generator.random_raw((n + 3) // 4).view(np.uint16)[:n]
    out = tab[flat_k].reshape(shape)
    tail = np.flatnonzero((flat_k + np.uint16(1)) <= np.uint16(1))  # k = 0 or 65535
    if tail.size:
        from scipy.special import ndtri
        # exact sample of |x| > -z1 by inverse CDF of the tail
        q = rng.random(tail.size) * (0.5 ** _NOISE_BITS)
        val = -ndtri(np.maximum(q, 1e-300))
        sign = np.where(flat_k[tail] == 0, -1.0, 1.0)
        out.reshape(-1)[tail] = (sign * val * sigma).astype(np.float32)
    return out


class _DepositList:
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


class _SourceList:
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


def _empty_sources():
    s = _SourceList()
    s.finish(type("S", (), {"pixel": 1.0})(), 0, 0, ())
    return s.table


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
                              _empty_sources(), np.zeros((0, ny // t, nx // t), np.uint8), 0)
    return parts[0]


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
    f = np.asarray(events["FRAME"], np.int64)
    x = np.asarray(events["RAWX"], np.int64)
    y = np.asarray(events["RAWY"], np.int64)
    n, ny, nx = labels.shape
    if f.min() < 0 or f.max() >= n or y.min() < 0 or y.max() >= ny or x.min() < 0 \
            or x.max() >= nx:
        raise ValueError("events lie outside the label cube (FRAME/RAWY/RAWX out of range)")
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
    return _tile_class_from_flags(has_x, has_c)
