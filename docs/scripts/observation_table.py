"""RST tables of docs/observation.rst from scripts/observation_check.py output.

    python docs/scripts/observation_table.py runs/obs/check_all.ecsv \\
        runs/obs/length_highcr.ecsv > docs/_static/observation/results.rst
"""
import sys

from astropy.table import Table


def rows_table(headers, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join("=" * w for w in widths)
    out = [line, "  ".join(h.ljust(w) for h, w in zip(headers, widths)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out + [line])


def main(check, length=None):
    t = Table.read(check)
    rows = []
    for r in t:
        rows.append([r["preset"], r["method"], f"{r['n_cr_vf_kept']}", f"{r['value']:.4g}",
                     f"{100 * r['estimate']:.2f}", f"{100 * r['true_lost']:.2f}",
                     f"{100 * r['resid']:.1f}", f"{100 * r['best_resid']:.1f}"])
    print(rows_table(["preset", "method", "CR", "calibrated", "estimate %", "true loss %",
                      "removed %", "best at 2 % (truth)"], rows))
    if length:
        print()
        t = Table.read(length)
        rows = [[f"{r['ordinary']}", r["method"], f"{100 * r['estimate']:.2f}",
                 f"{100 * r['true_lost']:.2f}", f"{100 * r['resid']:.1f}",
                 f"{100 * r['best_resid']:.1f}"] for r in t]
        print(rows_table(["ordinary frames", "method", "estimate %", "true loss %",
                          "removed %", "best at 2 % (truth)"], rows))


if __name__ == "__main__":
    main(*sys.argv[1:])
