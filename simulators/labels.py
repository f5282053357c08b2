"""Ground-truth labels: which anomaly was injected where and when.

A label says that ``kind`` was injected into ``metric`` of ``site``/``device`` over the
half-open event-time interval ``[start, end)`` (UTC). Every reading of that metric
whose time falls in the interval carries the anomaly; ``metric`` is ``"*"`` for a
dropout, when the whole device is silent. Labels are written as JSON lines and can be
published as plain JSON on the labels topic ``{prefix}/_sim/labels`` (QoS 1).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

__all__ = [
    "JsonLinesLabelSink",
    "Label",
    "LabelSink",
    "MemoryLabelSink",
    "MqttLabelSink",
    "iso_utc",
    "label_payload",
    "labels_topic",
    "parse_iso_utc",
    "read_labels",
]

LABELS_SEGMENT = "_sim"


def iso_utc(value: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with a ``Z`` (microsecond precision)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso_utc(text: str) -> datetime:
    """Parse an ISO 8601 time with a zone into an aware UTC datetime."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"expected an ISO 8601 time with a zone; got {text!r}")
    return value.astimezone(UTC)


def labels_topic(prefix: str) -> str:
    """Return the topic that simulators publish labels on under ``prefix``."""
    return f"{prefix}/{LABELS_SEGMENT}/labels"


@dataclass(frozen=True, slots=True)
class Label:
    """One injected anomaly: ``kind`` on ``metric`` of a device over ``[start, end)``."""

    site: str
    device: str
    metric: str
    kind: str
    start: datetime
    end: datetime
    magnitude: float | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("label times must be timezone-aware (UTC)")
        if self.end <= self.start:
            raise ValueError(f"label end {self.end} must be after its start {self.start}")

    def to_json(self) -> dict[str, Any]:
        """Return the label as a JSON-ready dict."""
        doc: dict[str, Any] = {
            "site": self.site,
            "device": self.device,
            "metric": self.metric,
            "kind": self.kind,
            "start": iso_utc(self.start),
            "end": iso_utc(self.end),
        }
        if self.magnitude is not None:
            doc["magnitude"] = self.magnitude
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Label:
        """Build a label from :meth:`to_json` output."""
        return cls(
            site=doc["site"],
            device=doc["device"],
            metric=doc["metric"],
            kind=doc["kind"],
            start=parse_iso_utc(doc["start"]),
            end=parse_iso_utc(doc["end"]),
            magnitude=doc.get("magnitude"),
        )

    def covers(self, time: datetime) -> bool:
        """Whether ``time`` is inside ``[start, end)``."""
        return self.start <= time < self.end


class LabelSink(Protocol):
    """Where labels go."""

    def add(self, label: Label) -> None:
        """Record one label."""

    def close(self) -> None:
        """Flush and release."""


class MemoryLabelSink:
    """Keeps labels in a list (for tests and for reports)."""

    def __init__(self) -> None:
        self.labels: list[Label] = []
        self._lock = threading.Lock()

    def add(self, label: Label) -> None:
        """Record one label."""
        with self._lock:
            self.labels.append(label)

    def close(self) -> None:
        """Nothing to release."""


class JsonLinesLabelSink:
    """Appends labels to a JSON lines file, one label per line, flushed as written."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._file: IO[str] = self.path.open("a", encoding="utf-8")

    def add(self, label: Label) -> None:
        """Write one label line."""
        self._file.write(json.dumps(label.to_json(), separators=(",", ":")) + "\n")
        # Flushed per label so that a crashed or killed run still leaves its truth.
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class _Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> Any:
        """Publish bytes on a topic."""


class MqttLabelSink:
    """Publishes each label as plain JSON on the labels topic with QoS 1."""

    def __init__(self, publisher: _Publisher, topic: str) -> None:
        self._publisher = publisher
        self.topic = topic

    def add(self, label: Label) -> None:
        """Publish one label."""
        self._publisher.publish(self.topic, label_payload(label), qos=1)

    def close(self) -> None:
        """Nothing to release (the link belongs to the caller)."""


def label_payload(label: Label) -> bytes:
    """Return the bytes a label is published as: compact JSON (UTF-8)."""
    return json.dumps(label.to_json(), separators=(",", ":")).encode("utf-8")


def read_labels(lines: Iterable[str]) -> list[Label]:
    """Parse JSON lines (blank lines ignored) into labels."""
    return [Label.from_json(json.loads(line)) for line in lines if line.strip()]
