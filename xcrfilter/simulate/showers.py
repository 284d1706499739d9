"""Cosmic-ray showers of the frame simulator: primaries, secondaries and their deposits.

A shower is a galactic-cosmic-ray primary (proton or alpha, energies from
:class:`~xcrfilter.simulate.physics.GCRSampler`) crossing the sensor or
passing beside it, with secondary electron tracks, secondary photons and
low-energy electron blobs placed around its projected axis
(:func:`place_along_axis`); charged tracks are stepped through the silicon
with Landau-Moyal energy loss and delta rays (:func:`track_deposits`).
:func:`add_showers` draws them all for one block of frames, in a fixed order
of random numbers, into the block's truth and deposit lists
(:mod:`xcrfilter.simulate.truth`).
"""
from __future__ import annotations

import numpy as np

from . import physics as ph
from .truth import LABEL_CR

__all__ = ["add_showers", "track_deposits", "place_along_axis"]


def add_showers(sim, rng, n_frames, n_cr, src, dep):
    """Simulate the cosmic-ray showers of ``n_frames`` frames.

    Each shower is a galactic proton or alpha primary (hitting the sensor or
    passing beside it) with its secondary electron tracks, secondary photons
    (fluorescence lines and a continuum) and low-energy electron blobs.

    Parameters
    ----------
    sim : `~xcrfilter.simulate.FrameSimulator`
        Detector geometry, parameters and samplers.
    rng : `numpy.random.Generator`
        The block's generator (drawn from in a fixed order: reproducible).
    n_frames : int
    n_cr : int ndarray (n_frames,)
        Number of showers per frame.
    src : `SourceList`
        Gets one truth row per primary and secondary.
    dep : `DepositList`
        Gets the point deposits of every shower (label ``LABEL_CR``).
    """
    p = sim.params
    ny, nx = sim.shape
    pix, d = sim.pixel, sim.thickness
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
    tn = np.where(alpha, sim.alpha_sampler.sample(rng, S),
                  sim.proton_sampler.sample(rng, S))
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
    sx, sy = place_along_axis(sim, rng, cx[sec_sh], cy[sec_sh], phi[sec_sh],
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
    tid, xs, ys, zs, es = track_deposits(sim, rng, t_x0, t_y0, t_z0, t_ux, t_uy, t_uz,
                                       t_charge, t_mass, t_tkin, t_max)
    dep.add(t_frame[tid], xs, ys, zs, sim.fano_spread(rng, es), LABEL_CR, t_src[tid])

    # secondary photons (fluorescence lines + continuum)
    n_ph = rng.poisson(p.photon_mean, S)
    ph_sh = np.repeat(np.arange(S), n_ph)
    nph = ph_sh.size
    if nph:
        px, py = place_along_axis(sim, rng, cx[ph_sh], cy[ph_sh], phi[ph_sh],
                                        p.photon_scale, nph, ~hit[ph_sh])
        cont = rng.random(nph) < p.photon_continuum_fraction
        li = np.searchsorted(sim.line_cdf, rng.random(nph), side="right")
        li = np.minimum(li, sim.line_energies.size - 1)
        econt = np.exp(rng.uniform(np.log(p.photon_continuum_min * 1e3),
                                   np.log(p.photon_continuum_max * 1e3), nph))
        pe = np.where(cont, econt, sim.line_energies[li])
        front = rng.random(nph) < p.photon_front_fraction
        pz = sim.photon_depth(rng, pe, front)
        ok = np.isfinite(pz)
        pid = src.add(kind=3, label=LABEL_CR, species=0, frame=sh_frame[ph_sh], energy=pe,
                      x=px, y=py, z=pz, theta=0.0, phi=0.0, hit=ok, length=0.0)
        src.set_parent(pid, sh_id[ph_sh])
        dep.add(sh_frame[ph_sh][ok], px[ok], py[ok], pz[ok], sim.fano_spread(rng, pe[ok]),
                LABEL_CR, pid[ok])
    # low-energy electron blobs
    n_el = rng.poisson(p.electron_mean, S)
    el_sh = np.repeat(np.arange(S), n_el)
    nel = el_sh.size
    if nel:
        ex, ey = place_along_axis(sim, rng, cx[el_sh], cy[el_sh], phi[el_sh],
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
                sim.fano_spread(rng, be), LABEL_CR, np.repeat(eid, k))


def track_deposits(sim, rng, x0, y0, z0, ux, uy, uz, charge, mass, tkin_mev, maxlen):
    """Step straight tracks of ``sim``'s sensor; return deposits (track index, x, y, z, E eV).

    Parameters are per track: entry point (um, z0 in {0, d}), unit
    direction, charge number, mass (MeV), kinetic energy (MeV), and the
    maximum path length (um; e.g. the electron range).
    """
    p = sim.params
    d = sim.thickness
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


def place_along_axis(sim, rng, cx, cy, phi, scale_px, n, orphan=None):
    """Positions (um) of ``n`` secondaries around their shower centres.

    Along the projected axis: a two-sided exponential of scale
    ``scale_px`` and a Gaussian of rms ``sec_perp_sigma`` across it; a
    fraction ``sec_iso_fraction`` is placed isotropically instead, at an
    exponential radius of scale ``sec_iso_scale``.  Secondaries of
    orphan showers (``orphan`` True) have every scale multiplied by
    ``orphan_spread``.  With the default parameters no extra random
    numbers are drawn, so the calibrated simulation is unchanged.
    """
    p = sim.params
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
    return cx + dx * sim.pixel, cy + dy * sim.pixel
