"""``python -m beanproto``: the ``beanproto`` command (``beanproto_cli``).

Only running the package imports it: ``import beanproto`` (the sans-I/O core)
stays free of the client and its I/O."""

import sys

from beanproto_cli import main

sys.exit(main())
