"""Sphinx configuration of the xcrfilter documentation.

Builds offline: the astropy theme settings come from ``sphinx_astropy``, and
intersphinx is switched off (no network fetches of other projects'
inventories), so ``sphinx-build -W -b html docs docs/_build/html`` needs no
network.  Figures of the narrative pages are committed PNGs made by
``docs/make_figures.py`` and ``docs/scripts``; the tutorials in ``docs/tutorials`` are run by
sphinx-gallery at every build (into ``docs/generated``, not committed).
"""
import datetime
import importlib.util
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

try:
    from sphinx_astropy.conf.v2 import *  # noqa: F401,F403
except ImportError:  # pragma: no cover - older sphinx-astropy
    from sphinx_astropy.conf.v1 import *  # noqa: F401,F403

import xcrfilter

# -- project -----------------------------------------------------------------
project = "xcrfilter"
author = "xcrfilter developers"
copyright = f"{datetime.date.today().year}, {author}"
version = xcrfilter.__version__.split("+")[0]
release = xcrfilter.__version__

# -- offline build -------------------------------------------------------------
# No network: no intersphinx inventories (cross-references to numpy/astropy
# render as plain text instead of links).
intersphinx_mapping = {}
extensions = [e for e in extensions  # noqa: F405
              if e not in ("sphinx.ext.intersphinx", "sphinx_astropy.ext.intersphinx_toggle")]
# Optional theme helpers (copy buttons, doctest-plus) are used when installed.
extensions = [e for e in extensions
              if importlib.util.find_spec(e.split(".")[0]) is not None]

# -- general -----------------------------------------------------------------
root_doc = master_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "make_figures.py", "tutorials",
                    "sg_execution_times.rst"]
templates_path = []
html_static_path = ["_static"]
automodapi_toctreedirnm = "api"
automodsumm_inherited_members = False
# no graphviz needed: no inheritance diagrams
automodapi_inheritance_diagram = False
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
suppress_warnings = ["config.cache"]
nitpicky = False

# -- tutorials: executed at every build ---------------------------------------
os.environ.setdefault("MPLBACKEND", "Agg")
extensions.append("sphinx_gallery.gen_gallery")
sphinx_gallery_conf = {
    "examples_dirs": "tutorials",
    "gallery_dirs": "generated/tutorials",
    "filename_pattern": r"/plot_",            # run every tutorial
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,           # a failing tutorial fails the build
    "download_all_examples": False,
    "show_signature": False,
    "write_computation_times": False,
    "reference_url": {"xcrfilter": None},
    "matplotlib_animations": False,
}

# -- HTML --------------------------------------------------------------------
html_title = f"xcrfilter {version}"
html_theme_options = {
    "github_url": "https://github.com/xcrfilter/xcrfilter",
    "use_edit_page_button": False,
}
html_context = {"default_mode": "light"}


# -- generated tables ------------------------------------------------------------
def _write_filter_options(path):
    """The table of every filter parameter, from the filters' declarations
    (`xcrfilter.registry.options_table`), included by ``architecture.rst``."""
    from xcrfilter.registry import options_table

    def cell(text):
        return str(text).replace("|", "\\|").replace("*", "\\*") or " "

    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 9 20 12 9 11 29 10", "",
             "   * - filter", "     - option", "     - keyword", "     - unit",
             "     - default", "     - meaning", "     - header card"]
    for name, option, keyword, unit, default, text, cards in options_table():
        lines += [f"   * - ``{name}``", f"     - ``{option}``" if option else "     - (Python)",
                  f"     - ``{keyword}``", f"     - {cell(unit)}", f"     - {cell(default)}",
                  f"     - {cell(text)}", f"     - ``{cards}``" if cards else "     - "]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


_write_filter_options(os.path.join(os.path.dirname(__file__), "generated",
                                   "filter_options.inc"))
