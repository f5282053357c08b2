"""Telegraf ``outputs.mqtt``: line protocol or Telegraf's JSON serializer, one or many.

Topics: Telegraf's default ``telegraf/{{ .Hostname }}/{{ .PluginName }}`` (older
versions: ``topic_prefix``/host/measurement), or ``telegraf/<host>`` with
``batch = true``. The route key is the level after the root (the host).

Payloads:

* ``data_format = "influx"``: one or more lines (batch). Each line's tags give the site
  (``site_tag``, else the adapter's site), the device (``device_tag``, default ``host``;
  else the host level of the topic) and the sensor (the measurement, then the values of
  ``sensor_tags`` joined with ``.``; by default every other tag, sorted by key, so that
  ``cpu=cpu0`` and ``cpu=cpu1`` stay apart); each field is a metric.
* ``data_format = "json"``: ``{"name", "tags", "fields", "timestamp"}`` or
  ``{"metrics": [...]}`` (batch); ``timestamp`` per ``json_timestamp_units``.

Timestamp precision is detected per value (the unit that puts it nearest the arrival
time) unless ``precision`` says. String fields are skipped and counted; booleans per
``booleans``. A bad line files the message as a dead letter naming the line, and the
good lines are kept.
"""

from __future__ import annotations

from typing import Any

from dataflows.adapters.base import AdapterFailure, BaseAdapter
from dataflows.adapters.config import TelegrafConfig
from dataflows.adapters.identity import arrival_low_bits, hashed_low_bits
from dataflows.adapters.lineproto import LineError, Point, parse_lines
from dataflows.adapters.result import AdapterResult, Telemetry
from dataflows.adapters.topicfilter import TopicFilter
from dataflows.adapters.values import decode_json, parse_time_us

__all__ = ["TelegrafAdapter", "timestamp_us"]

_FACTORS_US = {"s": 1_000_000.0, "ms": 1_000.0, "us": 1.0, "ns": 0.001}


def timestamp_us(value: float, precision: str, received_us: int) -> int:
    """Convert an epoch number in ``precision`` (or the nearest unit, ``auto``) to µs."""
    if precision != "auto":
        return round(value * _FACTORS_US[precision])
    best = min(_FACTORS_US.values(), key=lambda f: abs(value * f - received_us))
    return round(value * best)


class TelegrafAdapter(BaseAdapter):
    """Maps Telegraf messages (see the module docstring)."""

    kind = "telegraf"

    def __init__(self, config: TelegrafConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self._head = config.topic + "/"
        self._skip_tags = {config.device_tag, *config.ignore_tags}
        if config.site_tag:
            self._skip_tags.add(config.site_tag)

    def filters(self) -> tuple[TopicFilter, ...]:
        """Everything under the root, shared."""
        return (TopicFilter(f"{self.cfg.topic}/#", True),)

    def route_key(self, topic: str) -> str | None:
        """Return the host level of the topic."""
        if not topic.startswith(self._head):
            return None
        host = topic[len(self._head) :].split("/", 1)[0]
        return host or None

    def _adapt(self, topic: str, payload: bytes, received_us: int, out: AdapterResult) -> None:
        host = self.route_key(topic)
        if host is None:
            raise AdapterFailure(f"topic {topic!r} is not under {self._head!r}")
        fmt = self.cfg.format
        if fmt == "auto":
            fmt = "json" if payload.lstrip()[:1] in (b"{", b"[") else "influx"
        stamped: list[tuple[Point, int | None]]
        if fmt == "json":
            stamped = self._json(payload, received_us, out)
        else:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise AdapterFailure(f"line protocol must be UTF-8 ({exc})") from None
            stamped = []
            for number, parsed in parse_lines(text):
                if isinstance(parsed, LineError):
                    out.errors.append(self.error(f"line {number}: {parsed}"))
                elif parsed.timestamp is None:
                    stamped.append((parsed, None))
                else:
                    ts = timestamp_us(parsed.timestamp, self.cfg.precision, received_us)
                    stamped.append((parsed, ts))
        if not stamped and not out.errors:
            raise AdapterFailure("no metric in the payload")
        by_device: dict[tuple[str, str], Telemetry] = {}
        for point, stamp_us in stamped:
            self._point(point, stamp_us, host, topic, payload, received_us, by_device, out)
        out.telemetry.extend(t for t in by_device.values() if len(t))

    def _json(
        self, payload: bytes, received_us: int, out: AdapterResult
    ) -> list[tuple[Point, int | None]]:
        doc = decode_json(payload)
        items: list[Any]
        if isinstance(doc, dict) and "metrics" in doc:
            items = doc["metrics"] if isinstance(doc["metrics"], list) else [None]
        else:
            items = doc if isinstance(doc, list) else [doc]
        points: list[tuple[Point, int | None]] = []
        for i, item in enumerate(items):
            if not (
                isinstance(item, dict)
                and isinstance(item.get("name"), str)
                and isinstance(item.get("fields"), dict)
                and isinstance(item.get("tags", {}), dict)
            ):
                out.errors.append(
                    self.error(f"metric {i}: expected an object with name, tags and fields")
                )
                continue
            stamp = item.get("timestamp")
            ts: int | None = None
            if isinstance(stamp, str):
                ts = parse_time_us(stamp)
                if ts is None:
                    out.errors.append(self.error(f"metric {i}: timestamp {stamp!r} is not a time"))
                    continue
            elif isinstance(stamp, int | float) and not isinstance(stamp, bool):
                ts = timestamp_us(stamp, self.cfg.precision, received_us)
            tags = {str(k): str(v) for k, v in item.get("tags", {}).items()}
            points.append((Point(item["name"], tags, item["fields"], None), ts))
        return points

    def _point(
        self,
        point: Point,
        ts_us: int | None,
        host: str,
        topic: str,
        payload: bytes,
        received_us: int,
        by_device: dict[tuple[str, str], Telemetry],
        out: AdapterResult,
    ) -> None:
        cfg = self.cfg
        tags = point.tags
        foreign = tags.get(cfg.device_tag) or host
        site, device = self.device_of(foreign, tags.get(cfg.site_tag) if cfg.site_tag else None)
        t_us, arrival = self.timed(ts_us, received_us)
        tel = by_device.get((site, device))
        if tel is None:
            low = (
                arrival_low_bits(t_us, topic, payload, f"{site}/{device}")
                if arrival
                else hashed_low_bits(topic, payload, f"{site}/{device}")
            )
            tel = by_device[(site, device)] = self.telemetry(
                site, device, topic, payload, t_us, low
            )
        if cfg.sensor_tags is None:
            extra = [v for k, v in sorted(tags.items()) if k not in self._skip_tags]
        else:
            extra = [tags[k] for k in cfg.sensor_tags if k in tags]
        sensor = ".".join([point.measurement, *extra])
        for field, raw in point.fields.items():
            self.add(tel, out, sensor, field, raw, "", t_us)
