"""``python -m gateway.cli``: the ``sensorgate`` command line."""

import sys

from gateway.cli.entry import main

sys.exit(main())
