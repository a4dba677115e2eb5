"""`python -m reel_reconciler.cli`: the console script without its installed wrapper."""

import sys

from reel_reconciler.cli import main

sys.exit(main())
