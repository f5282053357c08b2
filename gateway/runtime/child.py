"""One process of a cluster generation, as the supervisor starts and watches it.

Each runs in its own session (a Ctrl-C reaches only the supervisor, which stops them
in order), dies with the supervisor (``PR_SET_PDEATHSIG``: SIGTERM, a graceful stop),
and has its output prefixed with ``pN| `` or appended to ``pN.log``.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from edge.childproc import die_with_parent

# A supervisor killed with SIGKILL must not leave a headless cluster behind: the
# children get SIGTERM (a graceful stop); the setting survives exec (ip netns exec).

__all__ = ["Child"]


class Child:
    """One process of a generation, its output prefixed or written to a log file."""

    def __init__(
        self,
        index: int,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        log_dir: Path | None,
        out: IO[str],
        generation: int,
    ) -> None:
        self.index = index
        self._log: IO[bytes] | None = None
        self._reader: threading.Thread | None = None
        if log_dir is not None:
            self._log = (log_dir / f"p{index}.log").open("ab")
            self._log.write(f"--- generation {generation}: {' '.join(argv)}\n".encode())
            self._log.flush()
            stdout: IO[bytes] | int = self._log
        else:
            stdout = subprocess.PIPE
        try:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                preexec_fn=die_with_parent,
                # Own session: a Ctrl-C in the terminal reaches the supervisor only,
                # which then stops every process in order.
                start_new_session=True,
            )
        except OSError:
            if self._log is not None:
                self._log.close()
            raise
        if self.proc.stdout is not None:
            self._reader = threading.Thread(
                target=self._copy, args=(self.proc.stdout, out), daemon=True
            )
            self._reader.start()

    def _copy(self, stream: IO[bytes], out: IO[str]) -> None:
        prefix = f"p{self.index}| "
        for raw in stream:
            with contextlib.suppress(ValueError, OSError):
                out.write(prefix + raw.decode("utf-8", "replace"))
                out.flush()

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def poll(self) -> int | None:
        """Return the exit code, or None while it runs."""
        return self.proc.poll()

    def signal(self, signum: int) -> None:
        """Send ``signum`` if the process still runs."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def close(self) -> None:
        """Release the output copier and the log file (the process has ended)."""
        if self._reader is not None:
            self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.close()
