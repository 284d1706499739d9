"""Training and validation sets for the frame classifier (seed paper Sec. 2).

`build_tile_dataset` makes ``tile x tile`` (64 x 64) sub-frames of the four
classes EMPTY, XRAY, CR, MIX in equal numbers whose contents follow the
statistics of tiles cut from full 512 x 512 frames simulated at the paper's
rates.  Cutting real frames and keeping the rare MIX tiles (~2 % of the
non-empty ones) would need hundreds of thousands of frames, so each tile is
simulated as the central tile of a *canvas* of ``(tile + 2 margin)^2`` pixels
(default 320 x 320, margin 128 pixels) with:

* cosmic-ray showers centred anywhere on the canvas at the frame rate scaled
  by the canvas area (``cr_rate * 320^2 / 512^2``), so that showers centred
  outside the tile reach into it exactly as they do in a cut frame;
* X-rays inside the tile and its 1-pixel border (whose charge can spill
  into the tile) at ``xray_rate * 66^2 / 512^2``;
* conditioning on the class by rejection: for a class that needs X-rays
  (CR showers) the count is drawn from the zero-truncated Poisson law and the
  canvas is kept only if the tile really holds an X-ray (CR) pixel above the
  split threshold; for a class without them the count is Poisson and canvases
  whose tile holds one are rejected.

Rejection from the conditional law is exact: the accepted tiles have the
distribution of cut-frame tiles of that class, multiplicities included (no
512 x 512 frame boundary, which affects only tiles at the frame edge).
"""
from __future__ import annotations

import json
import os

import numpy as np

from ..ml.scaling import log_energy
from .core import FrameSimulator
from .truth import TILE_CLASS_NAMES, TILE_CR, TILE_MIX, TILE_XRAY

__all__ = ["build_tile_dataset", "simulate_tiles", "load_tile_dataset",
           "build_validation_set"]


def _truncated_poisson(rng, lam, n):
    """Poisson(lam) conditioned on >= 1 (inverse CDF of the positive part)."""
    if lam <= 0:
        raise ValueError("rate must be positive for a class that needs the source")
    k = np.arange(1, 60)
    pk = np.exp(-lam + k * np.log(lam) - np.cumsum(np.log(k)))
    cdf = np.cumsum(pk) / pk.sum()
    return k[np.minimum(np.searchsorted(cdf, rng.random(n)), k.size - 1)]


def simulate_tiles(n_per_class, *, seed=None, detector=None, params=None, spectrum=None,
                   tile=64, frame_shape=(512, 512), margin=128, batch=64, progress=False):
    """Simulate class-balanced tiles (see the module docstring for the method).

    Parameters
    ----------
    n_per_class : int or sequence of 4 int
        Tiles wanted per class (EMPTY, XRAY, CR, MIX).
    seed : int, optional
        Random seed.
    detector, params, spectrum
        See `FrameSimulator`; ``params.xray_rate`` and ``params.cr_rate`` are
        per ``frame_shape`` frame (paper: 1 and 1 per 512 x 512).
    tile : int
        Tile size in pixels (64).
    frame_shape : tuple of int
        Frame the rates refer to.
    margin : int
        Canvas margin around the tile (pixels), a multiple of ``tile``.
    batch : int
        Canvases simulated per vectorised call.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    tiles : float32 ndarray (N, tile, tile), eV
    labels : uint8 ndarray (N, tile, tile)
    classes : uint8 ndarray (N,)
    n_xray : int16 ndarray (N,)
        Number of absorbed X-rays centred in each tile.
    """
    if np.ndim(n_per_class) == 0:
        want = np.full(4, int(n_per_class))
    else:
        want = np.asarray(n_per_class, int)
        if want.shape != (4,):
            raise ValueError("n_per_class must be an int or 4 ints (EMPTY, XRAY, CR, MIX)")
    if np.any(want < 0):
        raise ValueError("n_per_class must be >= 0")
    tile = int(tile)
    margin = int(margin)
    if margin % tile:
        raise ValueError("margin must be a multiple of tile")
    canvas = tile + 2 * margin
    from ..detector import DetectorModel
    det = DetectorModel.wfi() if detector is None else detector
    det = det.replace(shape=(canvas, canvas))
    sim = FrameSimulator(det, params, spectrum)
    sim.params = sim.params.replace(tile=tile)
    p = sim.params
    area = float(frame_shape[0] * frame_shape[1])
    lam_cr = p.cr_rate * canvas * canvas / area
    # X-rays inside the tile and a 1-pixel border (a cloud centred there can
    # spill into the tile, as it does in a cut frame)
    lam_x = p.xray_rate * (tile + 2) ** 2 / area
    ss = np.random.SeedSequence(seed)
    rng = np.random.Generator(np.random.PCG64(ss))
    out_t, out_l, out_c, out_n = [], [], [], []
    got = np.zeros(4, int)
    ct = margin // tile
    sl = slice(margin, margin + tile)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=int(want.sum()), unit="tile", desc="tiles")
    block = 0
    try:
        while np.any(got < want):
            for cls in np.nonzero(got < want)[0]:
                need_x = cls in (TILE_XRAY, TILE_MIX)
                need_c = cls in (TILE_CR, TILE_MIX)
                n_cr = _truncated_poisson(rng, lam_cr, batch) if need_c \
                    else rng.poisson(lam_cr, batch)
                n_x = _truncated_poisson(rng, lam_x, batch) if need_x \
                    else rng.poisson(lam_x, batch)
                fr, lb, st, tc = sim.simulate_block(
                    rng, batch, n_xray=n_x, n_cr=n_cr, noise=False, block_index=block,
                    xray_window=(margin - 1, margin + tile + 1, margin - 1, margin + tile + 1),
                    deposit_window=(margin, margin + tile, margin, margin + tile))
                block += 1
                ok = np.nonzero(tc[:, ct, ct] == cls)[0][: want[cls] - got[cls]]
                if ok.size == 0:
                    continue
                tiles = fr[ok][:, sl, sl]
                tiles += rng.standard_normal(tiles.shape, dtype=np.float32) * \
                    np.float32(sim.noise_ev)
                out_t.append(tiles)
                out_l.append(lb[ok][:, sl, sl])
                out_c.append(np.full(ok.size, cls, np.uint8))
                xr = st[(st["KIND"] == "xray") & st["HIT"]]
                xin = (xr["X"].value >= margin - 0.5) & (xr["X"].value < margin + tile - 0.5) & \
                    (xr["Y"].value >= margin - 0.5) & (xr["Y"].value < margin + tile - 0.5)
                nx_all = np.bincount(np.asarray(xr["FRAME"][xin]), minlength=batch)
                out_n.append(nx_all[ok].astype(np.int16))
                got[cls] += ok.size
                if bar is not None:
                    bar.update(ok.size)
    finally:
        if bar is not None:
            bar.close()
    if not out_t:
        z = np.zeros((0, tile, tile))
        return (z.astype(np.float32), z.astype(np.uint8), np.zeros(0, np.uint8),
                np.zeros(0, np.int16))
    tiles = np.concatenate(out_t)
    labels = np.concatenate(out_l)
    classes = np.concatenate(out_c)
    n_xray = np.concatenate(out_n)
    perm = rng.permutation(classes.size)
    return tiles[perm], labels[perm], classes[perm], n_xray[perm]


def build_tile_dataset(n_per_class, path, *, tile=64, frame_shape=(512, 512), seed=None,
                       detector=None, params=None, spectrum=None, margin=128,
                       overwrite=False, progress=False):
    """Write a class-balanced tile training set to a compressed ``.npz`` file.

    Parameters
    ----------
    n_per_class : int or sequence of 4 int
        Tiles per class (EMPTY, XRAY, CR, MIX); the paper used 50,000.
    path : str or path-like
        Output ``.npz`` file.
    tile, frame_shape, seed, detector, params, spectrum, margin
        See `simulate_tiles`.
    overwrite : bool
        Replace an existing file.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        ``path``, ``n``, ``counts`` per class, ``mean`` and ``std`` of
        `xcrfilter.ml.scaling.log_energy` over all tile pixels.

    Notes
    -----
    File contents: ``tiles`` float32 (N, tile, tile) eV with readout noise,
    ``labels`` uint8 (N, tile, tile) (0 none, 1 X-ray, 2 CR), ``classes``
    uint8 (N,) (0 EMPTY, 1 XRAY, 2 CR, 3 MIX; a tile is non-empty for a class
    when it holds a pixel of that class whose noise-free deposit exceeds the
    split threshold, 80 eV), ``n_xray`` int16 (N,), ``scaling_mean`` and
    ``scaling_std`` (float64 scalars), ``class_names``, and ``meta`` (JSON
    string with the parameters and seed).
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists (use overwrite=True)")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2 ** 63))
    tiles, labels, classes, n_xray = simulate_tiles(
        n_per_class, seed=seed, detector=detector, params=params, spectrum=spectrum,
        tile=tile, frame_shape=frame_shape, margin=margin, progress=progress)
    x = log_energy(tiles)
    mean = float(x.mean(dtype=np.float64))
    std = float(x.std(dtype=np.float64))
    from .params import SimulationParameters
    from dataclasses import asdict
    pr = params if params is not None else SimulationParameters()
    meta = {"seed": int(seed), "tile": int(tile), "frame_shape": list(frame_shape),
            "margin": int(margin), "params": asdict(pr),
            "scaling": "log1p(max(E,0)/1eV), then (x-mean)/std",
            "method": "canvas rejection sampling, xcrfilter.simulate.dataset"}
    np.savez_compressed(path, tiles=tiles, labels=labels, classes=classes, n_xray=n_xray,
                        scaling_mean=np.float64(mean), scaling_std=np.float64(std),
                        class_names=np.array(TILE_CLASS_NAMES),
                        meta=np.array(json.dumps(meta, default=str)))
    if not path.endswith(".npz") and os.path.exists(path + ".npz"):
        os.replace(path + ".npz", path)
    return {"path": path, "n": int(classes.size),
            "counts": np.bincount(classes, minlength=4).tolist(), "mean": mean, "std": std}


def load_tile_dataset(path):
    """Load a file written by `build_tile_dataset` into a dict of arrays."""
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    d["scaling_mean"] = float(d["scaling_mean"])
    d["scaling_std"] = float(d["scaling_std"])
    d["meta"] = json.loads(str(d["meta"]))
    return d


def build_validation_set(path, n_frames, *, seed=None, detector=None, params=None,
                         spectrum=None, chunk_size=64, overwrite=False, progress=False):
    """Full-frame validation observation (frames + truth) for event-level scoring.

    A thin wrapper of `xcrfilter.simulate.write_simulation`: 512 x 512 frames at
    the paper's rates by default, with the ``TRUTH`` label cube and the
    ``SOURCES`` table; score reconstructed events with
    `xcrfilter.simulate.event_truth`.
    """
    from .fitsio import write_simulation
    return write_simulation(path, n_frames, seed=seed, detector=detector, params=params,
                            spectrum=spectrum, chunk_size=chunk_size, overwrite=overwrite,
                            progress=progress)
