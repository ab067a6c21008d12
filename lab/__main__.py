"""``python -m wslab`` is the ``wslab`` command."""

import sys

from .entry import main

sys.exit(main())
