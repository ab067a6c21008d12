"""``python -m wslab`` is the ``wslab`` command."""

import sys

from .cli import main

sys.exit(main())
