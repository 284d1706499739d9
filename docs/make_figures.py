"""Make the figures of the narrative documentation (committed PNGs).

Run from the repository root::

    python docs/make_figures.py

The pattern figure is computed with the package itself: every panel's grade
and STATUS bits come from :func:`xcrfilter.grades.asca_grade` and
:func:`xcrfilter.filters.vfaint.vfaint_flags`, so the picture cannot drift
from the code.
"""
import os

import astropy.units as u
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from xcrfilter.grades import asca_grade, pattern_code  # noqa: E402
from xcrfilter.filters.vfaint import vfaint_flags  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# 5x5 islands in eV, written as the image appears (top row = highest RAWY).
# Centre 1000 eV, split pixels 300 eV, an outer-ring pixel 150 eV; the rest
# is below the 80 eV split threshold.
C, S, R = 1000.0, 300.0, 150.0
PATTERNS = [
    ("single", [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, C, 0, 0],
                [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]),
    ("double", [[0, 0, 0, 0, 0], [0, 0, S, 0, 0], [0, 0, C, 0, 0],
                [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]),
    ("L-shaped triple", [[0, 0, 0, 0, 0], [0, 0, S, 0, 0], [0, 0, C, S, 0],
                         [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]),
    ("square quad", [[0, 0, 0, 0, 0], [0, 0, S, S, 0], [0, 0, C, S, 0],
                     [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]),
    ("diagonal", [[0, 0, 0, 0, 0], [0, 0, 0, S, 0], [0, 0, C, 0, 0],
                  [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]),
    ("line of 3", [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, S, C, S, 0],
                   [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]),
    ("T shape", [[0, 0, 0, 0, 0], [0, 0, S, 0, 0], [0, S, C, S, 0],
                 [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]),
    ("double + outer ring", [[0, 0, 0, R, 0], [0, 0, S, 0, 0], [0, 0, C, 0, 0],
                             [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]),
]


def _phas(rows):
    """PHAS vector (row-major, RAWY increasing) from an image-order 5x5 list."""
    return np.asarray(rows, dtype=np.float32)[::-1].reshape(25)


def pattern_figure(path):
    phas = np.array([_phas(rows) for _, rows in PATTERNS]) * u.eV
    flags = vfaint_flags(phas, None)
    grades = asca_grade(pattern_code(phas.value >= 80.0))
    fig, axes = plt.subplots(2, 4, figsize=(10, 5.6))
    for ax, (name, rows), flag, grade in zip(axes.ravel(), PATTERNS, flags, grades):
        img = np.asarray(rows, dtype=float)
        ax.imshow(img, cmap="Blues", vmin=0, vmax=C, origin="upper",
                  extent=(-0.5, 4.5, 4.5, -0.5))
        ax.add_patch(Rectangle((0.5, 0.5), 3, 3, fill=False, lw=2.0, ec="0.3"))
        ax.add_patch(Rectangle((-0.5, -0.5), 5, 5, fill=False, lw=1.0, ec="0.6", ls="--"))
        for (iy, ix), v in np.ndenumerate(img):
            if v > 0:
                ax.text(ix, iy, f"{v:.0f}", ha="center", va="center", fontsize=7,
                        color="w" if v > 500 else "k")
        ax.set_xticks(np.arange(-0.5, 5, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, 5, 1), minor=True)
        ax.grid(which="minor", color="0.85", lw=0.5)
        ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
        ok = flag == 0
        bits = [b for b in range(3) if flag & (1 << b)]
        verdict = "accepted" if ok else "rejected (bit " + ",".join(map(str, bits)) + ")"
        ax.set_title(f"{name}\ngrade {grade}, {verdict}", fontsize=9,
                     color="tab:green" if ok else "tab:red")
    fig.suptitle("Very-faint-mode filter: 3x3 shape (solid) and 5x5 outer ring (dashed); "
                 "values in eV, split threshold 80 eV", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return flags


if __name__ == "__main__":
    out = os.path.join(HERE, "_static", "vfaint_patterns.png")
    flags = pattern_figure(out)
    print(f"wrote {out}; STATUS of the panels: {flags.tolist()}")
