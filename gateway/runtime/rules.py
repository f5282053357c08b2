"""The gateway's alarm rules, reloaded while it runs (file change or SIGHUP)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from contract.errors import ConfigError
from dataflows.rules import RuleSet, load_rules
from gateway.observability.metrics import GatewayMetrics

__all__ = ["RulesWatcher"]

log = logging.getLogger(__name__)


class RulesWatcher:
    """The gateway's alarm rules, reloaded when the file changes or on request (SIGHUP).

    A daemon thread looks at the file's mtime every ``check_s`` seconds (and at once
    after :meth:`request_reload`) and loads it when it changed. The device steps call
    :meth:`current` on every batch and timer, which costs a lock-free read; each
    device step sees the new version at its next batch or timer and calls
    ``DeviceDetector.reload``, which keeps the state of every surviving (series,
    rule) key. A file that no longer parses is logged and counted, and the previous
    rules stay in force.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        check_s: float = 5.0,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.path = path
        self.check_s = check_s
        self.metrics = metrics
        # One tuple, replaced whole: readers on worker threads never see a torn update.
        self._current: tuple[int, RuleSet] = (0, load_rules(path))  # bad file: ConfigError
        self._mtime = self._stat()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _stat(self) -> int | None:
        if self.path is None:
            return None
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return None

    def current(self) -> tuple[int, RuleSet]:
        """Return (version, rules)."""
        return self._current

    _forced = False

    def request_reload(self) -> None:
        """Reload now, even if the mtime did not change (safe from a signal handler)."""
        self._forced = True
        self._wake.set()

    def start(self) -> RulesWatcher:
        """Start watching the file (nothing to watch without one)."""
        if self.path is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rules-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.check_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.check()

    def check(self) -> bool:
        """Reload if the file changed or a reload was requested; return whether it did."""
        forced, self._forced = self._forced, False
        mtime = self._stat()
        if not forced and mtime == self._mtime:
            return False
        self._mtime = mtime
        try:
            rules = load_rules(self.path)
        except ConfigError as exc:
            log.error("rules file %s refused, keeping the previous rules: %s", self.path, exc)
            if self.metrics is not None:
                self.metrics.rules_errors.inc()
            return False
        version = self._current[0] + 1
        self._current = (version, rules)
        log.info("rules reloaded from %s (version %d)", self.path, version)
        if self.metrics is not None:
            self.metrics.rules_reloads.inc()
        return True
