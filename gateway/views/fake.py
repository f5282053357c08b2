"""An in-memory :class:`~gateway.views.queries.QueryRunner`, for testing views without InfluxDB.

:class:`FakeQueryRunner` keeps every statement it is asked and answers from a script::

    runner = FakeQueryRunner(rows)  # every statement answers ``rows``
    runner = FakeQueryRunner(answers=[("SHOW TAG VALUES", tags), ("'10s'", buckets)])
    Views(runner).active_alarms()
    assert runner.statements == [...]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.influx.layout import StorageLayout

__all__ = ["FakeQueryRunner"]

Rows = list[dict[str, Any]]


class FakeQueryRunner:
    """A :class:`~gateway.views.queries.QueryRunner` that answers from a script.

    A statement answers the rows of the first ``(substring, rows)`` of ``answers`` that
    it contains, else ``rows`` (no rows by default). ``layout``, when given, is the
    storage layout :class:`~gateway.views.queries.Views` reads through.
    """

    def __init__(
        self,
        rows: Rows | None = None,
        *,
        answers: Sequence[tuple[str, Rows]] = (),
        layout: StorageLayout | None = None,
    ) -> None:
        self.rows: Rows = rows or []
        self.answers = list(answers)
        if layout is not None:
            self.layout = layout
        self.statements: list[str] = []
        """Every statement asked, in order."""

    def query(self, q: str) -> Rows:
        """Keep ``q`` and answer it from the script."""
        self.statements.append(q)
        return next((rows for key, rows in self.answers if key in q), self.rows)
