"""``python -m scorelab``: the command line, as the ``scorelab`` script runs it."""

import sys

from scorelab.app.cli import main

sys.exit(main())
