"""``python -m edge.bench`` (the same as ``sensorgate edge bench``)."""

from edge.bench.cli import main

raise SystemExit(main())
