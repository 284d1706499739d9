"""Physics building blocks of the frame simulator.

All functions work on plain float arrays in fixed internal units: lengths in
micrometres (um), energies in eV unless a name says otherwise (``_kev``,
``_mev``).  Conventions (used throughout :mod:`xcrfilter.simulate`):

* Coordinates ``x`` (column) and ``y`` (row) are in um on the detector plane,
  pixel ``(iy, ix)`` covers ``[ix p, (ix + 1) p) x [iy p, (iy + 1) p)`` with
  ``p`` the pixel pitch, so pixel centres sit at ``(i + 0.5) p``.
* Depth ``z`` is measured from the **entrance (back) surface** of the
  back-illuminated sensor, ``0 <= z <= d`` with ``d`` the thickness.  The
  signal charge drifts to the readout (front) side at ``z = d``, so the drift
  distance is ``d - z``: soft X-rays, absorbed near the entrance, drift the
  whole thickness and make the widest charge clouds.
"""
from __future__ import annotations

import functools
import os

import numpy as np
from scipy.special import erf

__all__ = [
    "attenuation_length", "absorption_probability", "cloud_sigma",
    "bethe_restricted_kev_um", "landau_xi_kev_um", "electron_range_um",
    "gcr_differential_flux", "GCRSampler", "pixel_stencil", "gaussian_noise",
]

#: Silicon density [g/cm3].
SI_DENSITY = 2.329
#: Electron rest energy [MeV].
ME_MEV = 0.51099895
#: Proton and alpha rest energies [MeV].
MP_MEV = 938.272
MALPHA_MEV = 3727.379
#: Bethe-Bloch constant K = 4 pi N_A r_e^2 m_e c^2 [MeV cm2 / mol].
K_BETHE = 0.307075
#: Si: Z/A and mean excitation energy I [eV] (PDG atomic & nuclear properties).
SI_Z_OVER_A = 14.0 / 28.0855
SI_I_EV = 173.0
#: Sternheimer (1984) density-effect parameters of Si: C, x0, x1, a, m, delta0.
SI_STERNHEIMER = (4.4355, 0.2014, 2.8715, 0.1492, 3.2546, 0.14)
#: Boltzmann constant over the elementary charge [V/K].
K_OVER_Q = 8.617333e-5


# --------------------------------------------------------------------------
# photon attenuation
# --------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _attenuation_table():
    from astropy.table import QTable
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data",
                        "si_attenuation.ecsv")
    t = QTable.read(path, format="ascii.ecsv")
    e_ev = np.asarray(t["energy"].to_value("eV"), dtype=float)
    mu_cm2_g = np.asarray(t["mu_rho"].to_value("cm2/g"), dtype=float)
    length_um = 1e4 / (mu_cm2_g * SI_DENSITY)
    return np.log(e_ev), np.log(length_um)


def attenuation_length(energy_ev):
    """Photon attenuation (1/e) length in silicon.

    Parameters
    ----------
    energy_ev : float or ndarray
        Photon energy in eV (0.15-30 keV tabulated; outside, the end slopes
        are extrapolated as power laws).

    Returns
    -------
    ndarray
        Attenuation length in um, ``1 / (mu/rho * rho)`` with ``rho`` =
        2.329 g/cm3, log-log interpolated in ``xcrfilter/data/si_attenuation.ecsv``
        (NIST XCOM above 1 keV, Henke et al. 1993 below; see the file header).
    """
    le, ll = _attenuation_table()
    x = np.log(np.maximum(np.asarray(energy_ev, dtype=float), 1.0))
    out = np.interp(x, le, ll)
    lo = x < le[0]
    hi = x > le[-1]
    if np.any(lo):
        s = (ll[1] - ll[0]) / (le[1] - le[0])
        out = np.where(lo, ll[0] + s * (x - le[0]), out)
    if np.any(hi):
        s = (ll[-1] - ll[-2]) / (le[-1] - le[-2])
        out = np.where(hi, ll[-1] + s * (x - le[-1]), out)
    return np.exp(out)


def absorption_probability(energy_ev, thickness_um):
    """Fraction of normally incident photons absorbed in ``thickness_um``.

    ``1 - exp(-d / lambda(E))``: the quantum efficiency of a bare,
    fully depleted sensor without entrance window or dead layer.
    """
    return -np.expm1(-np.asarray(thickness_um, float) / attenuation_length(energy_ev))


# --------------------------------------------------------------------------
# charge cloud
# --------------------------------------------------------------------------
def cloud_sigma(drift_um, thickness_um, bias_voltage, temperature, sigma0_um=0.0):
    """Rms width of the signal-charge cloud after drifting ``drift_um``.

    Linear (uniform-field) analytical approximation (seed paper Sec. 2,
    its Refs. 22-23; Iniewski et al. 2007): an electron cloud drifting a
    distance ``s`` in a uniform field ``E = V / d`` spends ``t = s / (mu E)``
    and spreads by ``sigma^2 = 2 D t`` with ``D = mu kT / q`` (Einstein), so

    ``sigma = sqrt(2 (kT/q) s d / V)``,

    independent of the mobility.  ``sigma0_um`` (initial cloud radius, added
    in quadrature) accounts for the primary photo-electron range.

    Parameters
    ----------
    drift_um : ndarray
        Drift distance to the readout side, um (``d - z``).
    thickness_um : float
        Sensor thickness ``d``, um.
    bias_voltage : float
        Depletion (bias) voltage across the sensor, V.
    temperature : float
        Sensor temperature, K.
    sigma0_um : float or ndarray
        Initial cloud rms, um.

    Returns
    -------
    ndarray
        Cloud rms in um.  For the WFI defaults (450 um, 120 V, 213 K) the
        full-thickness value is 7.9 um.
    """
    s = np.clip(np.asarray(drift_um, float), 0.0, None)
    var = 2.0 * K_OVER_Q * temperature * s * thickness_um / bias_voltage
    return np.sqrt(var + np.square(sigma0_um))


def pixel_stencil(sigma_max_um, pixel_um):
    """Stencil of pixels per axis that holds >= 6 sigma of any cloud.

    Returns ``0`` when ``6 sigma_max <= pixel / 2``: a cloud then reaches at
    most the nearer neighbour along each axis, and two pixels per axis (the
    centre pixel and the nearer neighbour) hold it exactly to 1e-9.
    Otherwise the half-width ``h`` of a ``2 h + 1`` pixel stencil.
    """
    if 6.0 * sigma_max_um <= 0.5 * pixel_um:
        return 0
    return int(np.ceil(6.0 * sigma_max_um / pixel_um))


def cloud_fractions(pos_um, sigma_um, pixel_um, half):
    """Fractions of Gaussian clouds falling in neighbouring pixels along one axis.

    Parameters
    ----------
    pos_um, sigma_um : ndarray (n,)
        Cloud centres and rms along one axis, um.
    pixel_um : float
        Pixel pitch, um.
    half : int
        Stencil from `pixel_stencil`: ``0`` means the centre pixel
        ``i0 = floor(pos / pixel)`` and its nearer neighbour; ``h > 0`` the
        pixels ``i0 - h ... i0 + h``.

    Returns
    -------
    index : ndarray (n, m) int
        Pixel indices (``m = 2`` or ``2 h + 1``).
    frac : ndarray (n, m) float
        ``Phi(edge_hi) - Phi(edge_lo)``: the Gaussian integrated over the pixel
        edges (erf).
    """
    i0 = np.floor(pos_um / pixel_um).astype(np.int64)
    sig = np.sqrt(2.0) * np.maximum(sigma_um, 1e-3)
    if half == 0:
        rel = pos_um - i0 * pixel_um
        right = rel >= 0.5 * pixel_um
        edge = np.where(right, (i0 + 1) * pixel_um, i0 * pixel_um)
        spill = 0.5 * (1.0 - erf(np.abs(edge - pos_um) / sig))
        index = np.stack([i0, np.where(right, i0 + 1, i0 - 1)], axis=1)
        frac = np.stack([1.0 - spill, spill], axis=1)
        return index, frac
    offs = np.arange(-half, half + 2)
    edges = (i0[:, None] + offs[None, :]) * pixel_um
    cdf = 0.5 * (1.0 + erf((edges - pos_um[:, None]) / sig[:, None]))
    frac = np.diff(cdf, axis=1)
    index = i0[:, None] + offs[None, :-1]
    return index, frac


# --------------------------------------------------------------------------
# charged-particle energy loss in silicon
# --------------------------------------------------------------------------
def _density_effect(betagamma):
    c, x0, x1, a, m, d0 = SI_STERNHEIMER
    x = np.log10(np.maximum(betagamma, 1e-6))
    delta = np.where(x >= x1, 2 * np.log(10) * x - c,
                     np.where(x >= x0, 2 * np.log(10) * x - c + a * np.clip(x1 - x, 0, None) ** m,
                              d0 * 10 ** (2 * (x - x0))))
    return delta


def tmax_mev(betagamma, mass_mev):
    """Maximum energy transfer to a free electron (PDG Eq. 34.4), MeV."""
    bg2 = np.square(betagamma)
    gamma = np.sqrt(1.0 + bg2)
    r = ME_MEV / mass_mev
    return 2 * ME_MEV * bg2 / (1 + 2 * gamma * r + r * r)


def bethe_restricted_kev_um(betagamma, charge=1, mass_mev=MP_MEV, tcut_mev=None):
    """Mean (restricted) energy loss in Si, keV/um (Bethe-Bloch, PDG Eq. 34.12).

    Parameters
    ----------
    betagamma : ndarray
        ``beta gamma`` of the projectile.
    charge : int or ndarray
        Projectile charge number ``z``.
    mass_mev : float or ndarray
        Projectile mass, MeV.
    tcut_mev : float or None
        Restrict to energy transfers below ``tcut_mev`` (the soft part; the
        harder collisions are simulated as explicit delta rays).  ``None``:
        unrestricted mean.

    Returns
    -------
    ndarray
        ``<dE/dx>`` in keV/um, with the Sternheimer density correction.
        The unrestricted minimum for protons is 0.388 keV/um
        (1.66 MeV cm2/g).
    """
    bg = np.asarray(betagamma, float)
    bg2 = bg * bg
    beta2 = bg2 / (1 + bg2)
    tmax = tmax_mev(bg, mass_mev)
    tup = tmax if tcut_mev is None else np.minimum(tcut_mev, tmax)
    i_mev = SI_I_EV * 1e-6
    log_term = 0.5 * np.log(2 * ME_MEV * bg2 * tup / i_mev ** 2)
    val = log_term - 0.5 * beta2 * (1 + tup / tmax) - 0.5 * _density_effect(bg)
    pref = K_BETHE * np.square(charge) * SI_Z_OVER_A / beta2  # MeV cm2/g
    dedx = pref * val * SI_DENSITY  # MeV/cm
    return np.maximum(dedx, 0.0) * 0.1  # keV/um (1 MeV/cm = 0.1 keV/um)


def landau_xi_kev_um(betagamma, charge=1):
    """Landau width parameter per um, ``xi = (K/2) (Z/A) rho z^2 / beta^2``, keV/um."""
    bg2 = np.square(np.asarray(betagamma, float))
    beta2 = bg2 / (1 + bg2)
    return 0.5 * K_BETHE * SI_Z_OVER_A * SI_DENSITY * np.square(charge) / beta2 * 0.1


def electron_range_um(energy_kev):
    """Kanaya & Okayama (1972) electron range in Si, um.

    ``R = 0.0276 A E^1.67 / (Z^0.889 rho)`` with E in keV, i.e.
    ``R = 0.0318 E^1.67`` um: 1.5 um at 10 keV, 70 um at 100 keV.
    """
    e = np.maximum(np.asarray(energy_kev, float), 0.0)
    return 0.0276 * 28.0855 * e ** 1.67 / (14 ** 0.889 * SI_DENSITY)


# --------------------------------------------------------------------------
# galactic cosmic-ray spectrum
# --------------------------------------------------------------------------
def gcr_differential_flux(t_mev_per_nucleon, phi_mv=400.0, z_over_a=1.0,
                          mass_mev_per_nucleon=MP_MEV):
    """Force-field modulated GCR spectrum (shape only, arbitrary normalisation).

    Interstellar spectrum of Burger, Potgieter & Heber (2000) as parametrised
    by Usoskin et al. (2005, JGR 110, A12108),
    ``J_LIS(T) = 1.9e4 P^-2.78 / (1 + 0.4866 P^-2.51)`` with ``P`` the rigidity
    in GV, modulated with the Gleeson & Axford (1968) force-field
    approximation,
    ``J(T) = J_LIS(T + Phi) T (T + 2 m) / ((T + Phi)(T + Phi + 2 m))``,
    ``Phi = (Z/A) phi``.  A modulation potential of about 400 MV reproduces
    the solar-minimum proton spectrum of CREME96 (Tylka et al. 1997) to
    within the accuracy needed here (peak near 300-500 MeV, ``E^-2.7`` above
    10 GeV).

    Parameters
    ----------
    t_mev_per_nucleon : ndarray
        Kinetic energy per nucleon, MeV.
    phi_mv : float
        Modulation potential, MV.
    z_over_a : float
        Charge-to-mass-number ratio (1 for protons, 0.5 for alphas).
    mass_mev_per_nucleon : float
        Rest energy per nucleon, MeV.
    """
    t = np.asarray(t_mev_per_nucleon, float) * 1e-3  # GeV/n
    m = mass_mev_per_nucleon * 1e-3
    big_phi = z_over_a * phi_mv * 1e-3
    tl = t + big_phi
    p = np.sqrt(tl * (tl + 2 * m)) / z_over_a  # rigidity, GV
    j_lis = 1.9e4 * p ** -2.78 / (1 + 0.4866 * p ** -2.51)
    return j_lis * t * (t + 2 * m) / (tl * (tl + 2 * m))


class GCRSampler:
    """Inverse-CDF sampler of primary kinetic energy per nucleon.

    Parameters
    ----------
    e_min_mev, e_max_mev : float
        Energy range per nucleon, MeV.
    phi_mv : float
        Force-field modulation potential, MV (solar minimum ~400 MV).
    z_over_a : float
        1 for protons, 0.5 for alphas.
    """

    def __init__(self, e_min_mev=10.0, e_max_mev=1e5, phi_mv=400.0, z_over_a=1.0):
        grid = np.geomspace(e_min_mev, e_max_mev, 2000)
        f = gcr_differential_flux(grid, phi_mv, z_over_a) * grid  # per ln E
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(np.log(grid)))])
        self._cdf = cdf / cdf[-1]
        self._logg = np.log(grid)

    def sample(self, rng, n):
        """Draw ``n`` kinetic energies per nucleon, MeV."""
        return np.exp(np.interp(rng.random(n), self._cdf, self._logg))


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
