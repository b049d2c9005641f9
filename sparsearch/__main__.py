"""``python -m sparsearch``: the same as the ``sparsearch`` console script."""

import sys

from sparsearch.cli import main

sys.exit(main())
