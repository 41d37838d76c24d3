"""``python -m beanproto_cli``: the ``beanproto`` command."""

import sys

from . import main

sys.exit(main())
