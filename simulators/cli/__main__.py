"""``python -m simulators.cli``: the simulator commands without the rest of ``sensorgate``."""

import sys

from simulators.cli import main

sys.exit(main())
