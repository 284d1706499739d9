"""Frame-bootstrap intervals of the observation checks (docs/observation.rst).

Reads the event tables that ``scripts/observation_check.py --save DIR``
writes (every event with ``TRUTH`` and ``RICH``) and prints an RST table:
for every method, the true X-ray loss on the ordinary run and the fraction
of the in-band cosmic-ray events kept by the very-faint-mode filter that
the method removes on the CR-rich run, both at the calibrated threshold,
and that fraction at the best threshold with at most 2 % true loss (found
with the truth), each with the 68 % interval of ``--boot`` resamples of the
frames (the events of one frame share its showers: frames, not events, are
the independent draws; the rich and the ordinary run are resampled
separately)::

    python docs/scripts/observation_bootstrap.py runs/combshape/*-2500.fits
"""
import argparse
import sys

import astropy.units as u
import numpy as np
from astropy.table import QTable

from observation_table import rows_table  # docs/scripts/, beside this one
from xcrfilter import registry


def best_removed(score, sign, lost_ok, xw, cw):
    """Removed fraction at the loosest cut with true loss <= ``lost_ok`` (weights per event).

    Both fractions grow as the cut moves, so the best cut is the one that
    rejects the X-ray events (weighted) up to ``lost_ok`` and no further.
    """
    s = score if sign > 0 else -score          # reject s >= cut
    x = np.flatnonzero(xw > 0)
    order = x[np.argsort(-s[x], kind="stable")]
    lost = np.cumsum(xw[order]) / xw.sum()
    vals = s[order]
    # a cut at vals[k] rejects every X-ray event scoring >= vals[k]: whole ties
    last = np.r_[vals[1:] != vals[:-1], True]
    ok = np.flatnonzero(last & (lost <= lost_ok))
    if ok.size == 0:
        cut = np.nextafter(vals[0], np.inf)
    else:
        k = ok[-1]
        cut = vals[k] if k + 1 == vals.size else np.nextafter(vals[k + 1], np.inf)
        cut = min(cut, vals[k])
    return np.sum(cw * (s >= cut)) / max(np.sum(cw), 1e-12)


def frame_weights(frames, rng):
    """Multiplicity of every frame in one bootstrap resample of ``frames`` (unique ids)."""
    ids = np.unique(frames)
    draw = rng.choice(ids, ids.size)
    w = np.zeros(frames.max() + 1)
    np.add.at(w, draw, 1)
    return w[frames]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tables", nargs="+")
    p.add_argument("--boot", type=int, default=200)
    p.add_argument("--max-lost", type=float, default=0.02)
    args = p.parse_args(argv)
    rng = np.random.default_rng(1)
    lines = []
    for path in args.tables:
        ev = QTable.read(path)
        preset = str(ev.meta.get("PRESET", path.split("/")[-1].split("-2500")[0]))
        t, rich = np.asarray(ev["TRUTH"]), np.asarray(ev["RICH"], bool)
        e = ev["ENERGY"].to_value(u.keV)
        band = (e >= 0.3) & (e < 10)
        status = np.asarray(ev["STATUS"]).astype(np.int64)
        kept = (status & registry.method_bits("vfaint")) == 0
        is_x = (t == 1) & band & ~rich
        is_cr = (t == 2) & band & rich & kept
        frame = np.asarray(ev["FRAME"])
        boots = [(frame_weights(frame, rng)) for _ in range(args.boot)]
        # every calibrated filter whose score column the run wrote
        names = [n for n in registry.FILTERS if registry.filter_spec(n).calibration is not None
                 and registry.filter_spec(n).calibration.column in ev.colnames]
        for name in names:
            cal = registry.filter_spec(name).calibration
            score = np.nan_to_num(np.asarray(ev[cal.column], float),
                                  nan=np.inf if cal.sign < 0 else -np.inf)
            rej = (status & registry.method_bits(name)) != 0
            x1, c1 = is_x.astype(float), is_cr.astype(float)
            lost = np.sum(x1 * rej) / x1.sum()
            removed = np.sum(c1 * rej) / c1.sum()
            best = best_removed(score, cal.sign, args.max_lost, x1, c1)
            bl, br, bb = [], [], []
            for w in boots:
                xw, cw = x1 * w, c1 * w
                bl.append(np.sum(xw * rej) / xw.sum())
                br.append(np.sum(cw * rej) / cw.sum())
                bb.append(best_removed(score, cal.sign, args.max_lost, xw, cw))

            def fmt(v, b):
                lo, hi = np.percentile(b, [15.87, 84.13])
                return f"{100 * v:.1f} ({100 * lo:.1f}-{100 * hi:.1f})"
            rank = f" ({ev.meta['OBCRANK'].lower()})" if name == "obsctx" and \
                "OBCRANK" in ev.meta else ""
            shape = " + shape" if name == "obsctx" and ev.meta.get("OBCSHAPE") else ""
            lines.append([preset, name + shape + rank, str(int(is_cr.sum())),
                          fmt(lost, bl), fmt(removed, br), fmt(best, bb)])
    print(rows_table(["preset", "method", "CR", "true loss %", "removed %",
                      "best at 2 % (truth)"], lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
