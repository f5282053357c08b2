"""``gateway run`` sizes polars' thread pool to its workers, unless the user chose a size."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = (
    "import sys; from gateway.cli.run import size_polars_pool;"
    " assert 'polars' not in sys.modules;"
    " size_polars_pool(int(sys.argv[1])); import polars; print(polars.thread_pool_size())"
)


@pytest.mark.parametrize(
    ("workers", "preset", "size"),
    [(1, None, "1"), (2, None, "2"), (0, None, "1"), (1, "2", "2")],
)
def test_polars_gets_a_thread_per_worker_unless_set(
    workers: int, preset: str | None, size: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "POLARS_MAX_THREADS"}
    if preset is not None:
        env["POLARS_MAX_THREADS"] = preset
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(workers)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == size
