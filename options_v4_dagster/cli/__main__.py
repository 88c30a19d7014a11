"""``python -m options_v4_dagster.cli``: the same as the ``options-v4`` console script."""

import sys

from options_v4_dagster.cli import main

sys.exit(main())
