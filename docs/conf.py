"""Sphinx configuration for the beanproto documentation.

Build (warnings are errors, as in scripts/test.sh)::

    .venv/bin/python -m sphinx -W --keep-going -q -E -b html docs .cache/docs/html
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The packages are imported from the source tree, whether installed or not.
sys.path.insert(0, str(ROOT / "src"))

project = "beanproto"
author = "the beanproto authors"
copyright = "the beanproto authors (MIT licence)"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

# The docstrings are Google style (Args:, Returns:, Raises:, Attributes:).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {
    "show-inheritance": True,
}

# No network at build time: no intersphinx, only the bundled theme.
html_theme = "alabaster"
html_theme_options = {
    "description": "a beanstalkd client for Python",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []
templates_path: list[str] = []
exclude_patterns = ["_build"]
default_role = "code"
