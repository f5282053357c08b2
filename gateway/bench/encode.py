"""Micro-benchmarks of the storage path: columnar encoding, then pipelined writes.

Run ``python -m gateway.bench.encode`` (``--help`` for the sizes). It prints:

1. µs per reading to render line protocol for ``--readings`` readings over ``--series``
   series: :class:`~gateway.influx.encoder.LineProtocolEncoder` against the per-reading
   f-string path it replaces (:func:`~gateway.influx.lineprotocol.reading_lines` over
   telemetry events, and a bare f-string loop over the same columns), and the same for
   closed-window aggregates. Best of ``--repeat``; CPU time includes polars' threads.
2. Unless ``--no-write``: ``--write-points`` readings written into a fresh influxd
   (started with :func:`gateway.localstack.services.start_influxd`) per mode, encoding each
   batch and writing it synchronously (one request at a time, waiting for each) or
   through :class:`~gateway.influx.pipeline.PipelinedWriter` (submit, flush once per
   epoch): points/s, this process's CPU and influxd's CPU (psutil).

Figures depend on the machine and its load; compare them within one run. ``--out``
writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dataflows.columns import AggregateColumns, PointColumns, ReadingColumns, SeriesNames
from gateway.influx.encoder import LineProtocolEncoder

if TYPE_CHECKING:
    from contract import TelemetryEvent
    from gateway.influx.writer import V1Writer
    from gateway.settings import InfluxSettings

__all__ = ["main"]

_T0_US = 1_767_225_600_000_000
_READINGS_PER_MESSAGE = 50


def _names(series: int) -> SeriesNames:
    names = SeriesNames()
    devices = math.ceil(series / _READINGS_PER_MESSAGE)
    for d in range(devices):
        for j in range(_READINGS_PER_MESSAGE):
            if len(names) < series:
                names.add(f"site-{d % 7}", f"device-{d:05d}", f"probe-{j % 5}", f"metric-{j}")
    return names


def _readings(names: SeriesNames, n: int, seed: int = 1) -> ReadingColumns:
    rng = np.random.default_rng(seed)
    devices = len(names) // _READINGS_PER_MESSAGE
    messages = n // _READINGS_PER_MESSAGE
    device = rng.integers(0, devices, messages)
    series = (device[:, None] * _READINGS_PER_MESSAGE + np.arange(_READINGS_PER_MESSAGE)).ravel()
    t_us = np.repeat(_T0_US + np.arange(messages, dtype=np.int64) * 1000, _READINGS_PER_MESSAGE)
    return ReadingColumns(
        series=series.astype(np.int32),
        t_us=t_us,
        value=rng.normal(20.0, 5.0, len(series)).round(2),
        seq=np.repeat(np.arange(messages, dtype=np.int64), _READINGS_PER_MESSAGE),
    )


def _aggregates(names: SeriesNames, seed: int = 2) -> AggregateColumns:
    rng = np.random.default_rng(seed)
    n = len(names)
    stddev = rng.random(n)
    stddev[::10] = math.nan  # windows of one reading
    return AggregateColumns(
        series=np.arange(n, dtype=np.int32),
        window=np.zeros(n, np.int8),
        window_names=("10s",),
        start_us=np.full(n, _T0_US, np.int64),
        count=rng.integers(1, 20, n),
        mean=rng.normal(20, 5, n),
        min=rng.normal(15, 5, n).round(2),
        max=rng.normal(25, 5, n).round(2),
        stddev=stddev,
        first=rng.normal(20, 5, n).round(2),
        last=rng.normal(20, 5, n).round(2),
    )


def _best(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Return the best wall and CPU seconds of ``repeat`` calls."""
    wall = cpu = math.inf
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def _per(times: tuple[float, float], n: int) -> dict[str, float]:
    """Return wall and CPU microseconds per item of ``times`` (seconds over ``n`` items)."""
    wall, cpu = times
    return {"wall": wall / n * 1e6, "cpu": cpu / n * 1e6}


def bench_encode(readings: int, series: int, repeat: int) -> dict[str, Any]:
    """Time the encoders on the same data; return µs per reading (and per aggregate)."""
    names = _names(series)
    cols = _readings(names, readings)
    out: dict[str, Any] = {"readings": len(cols), "series": len(names)}
    encoder = LineProtocolEncoder()
    out.update(_bench_readings(names, cols, encoder, repeat))
    out.update(_bench_aggregates(names, encoder, repeat))
    return out


def _bench_readings(
    names: SeriesNames, cols: ReadingColumns, encoder: LineProtocolEncoder, repeat: int
) -> dict[str, Any]:
    from gateway.influx.lineprotocol import escape_tag, reading_lines

    points = PointColumns(names, readings=cols)
    n = len(cols)
    out: dict[str, Any] = {}
    cold_wall, _ = _best(lambda: LineProtocolEncoder().encode(points), 1)
    out["encoder_cold_ms"] = round(cold_wall * 1e3, 1)  # escapes all 50,000 series first
    encoder.encode(points)
    out["encoder_us"] = _per(_best(lambda: encoder.encode(points), repeat), n)
    out["body_bytes_per_reading"] = len(encoder.encode(points)) / n
    # The old path: a TelemetryEvent per message, one f-string per reading (tag part cached).
    events = _events(names, cols)
    out["reading_lines_us"] = _per(_best(lambda: [reading_lines(e) for e in events], repeat), n)
    heads = [
        f"readings,device={escape_tag(names.device[i])},metric={escape_tag(names.metric[i])}"
        f",sensor={escape_tag(names.sensor[i])},site={escape_tag(names.site[i])}"
        for i in range(len(names))
    ]
    series_idx, values, times = cols.series.tolist(), cols.value.tolist(), cols.t_us.tolist()

    def fstring_loop() -> bytes:
        lines = [
            f"{heads[s]} value={v!r} {t}" for s, v, t in zip(series_idx, values, times, strict=True)
        ]
        return ("\n".join(lines) + "\n").encode()

    out["fstring_columns_us"] = _per(_best(fstring_loop, repeat), n)
    return out


def _events(names: SeriesNames, cols: ReadingColumns) -> list[TelemetryEvent]:
    """Return the readings as telemetry events, one per message of 50."""
    from contract import Reading, TelemetryEvent

    events = []
    base = datetime(2026, 1, 1, tzinfo=UTC)
    series_idx, values, seqs = cols.series.tolist(), cols.value.tolist(), cols.seq.tolist()
    for m in range(0, len(cols), _READINGS_PER_MESSAGE):
        first = series_idx[m]
        when = base + timedelta(microseconds=int(cols.t_us[m] - _T0_US))
        events.append(
            TelemetryEvent.create(
                site=names.site[first],
                device=names.device[first],
                sequence=seqs[m],
                readings=[
                    Reading(
                        sensor=names.sensor[s], metric=names.metric[s], value=values[i], time=when
                    )
                    for i, s in enumerate(series_idx[m : m + _READINGS_PER_MESSAGE], start=m)
                ],
            )
        )
    return events


def _bench_aggregates(
    names: SeriesNames, encoder: LineProtocolEncoder, repeat: int
) -> dict[str, Any]:
    from dataflows.windows import Aggregate
    from gateway.influx.lineprotocol import aggregate_line

    aggs = _aggregates(names)
    agg_points = PointColumns(names, aggregates=aggs)
    na = len(aggs)
    out: dict[str, Any] = {"aggregates": na}
    encoder.encode(agg_points)
    out["encoder_aggregate_us"] = _per(_best(lambda: encoder.encode(agg_points), repeat), na)
    lean = LineProtocolEncoder(aggregate_fields=("count", "mean", "min", "max"))
    lean.encode(agg_points)
    out["encoder_aggregate_lean_us"] = _per(_best(lambda: lean.encode(agg_points), repeat), na)
    objects = [
        Aggregate(
            site=names.site[i],
            device=names.device[i],
            sensor=names.sensor[i],
            metric=names.metric[i],
            window="10s",
            start_us=_T0_US,
            end_us=_T0_US + 10_000_000,
            count=int(aggs.count[i]),
            mean=float(aggs.mean[i]),
            min=float(aggs.min[i]),
            max=float(aggs.max[i]),
            stddev=None if math.isnan(aggs.stddev[i]) else float(aggs.stddev[i]),
            first=float(aggs.first[i]),
            last=float(aggs.last[i]),
        )
        for i in range(na)
    ]
    out["aggregate_line_us"] = _per(_best(lambda: [aggregate_line(a) for a in objects], repeat), na)
    return out


def _write_run(
    mode: str, points: int, batch: int, per_epoch: int, workdir: Path, gzip: bool | None
) -> dict[str, Any]:
    import psutil

    from gateway.influx.writer import V1Writer
    from gateway.localstack.services import start_influxd
    from gateway.settings import InfluxSettings

    proc, port = start_influxd(workdir)
    try:
        settings = InfluxSettings(
            url=f"http://127.0.0.1:{port}",
            database="bench",
            spill_enabled=False,
            gzip=gzip,
            timeout_s=60.0,
        )
        inner = V1Writer(settings)
        inner.ensure_database()
        names = _names(50_000)
        batches = _batches(names, points, batch)
        encoder = LineProtocolEncoder()
        encoder.encode(PointColumns(names, readings=batches[0]))  # escape the series once
        influxd = psutil.Process(proc.pid)
        influx_cpu0 = sum(influxd.cpu_times()[:2])
        c0, w0 = time.process_time(), time.perf_counter()
        _write(mode, inner, settings, encoder, names, batches, per_epoch)
        wall = time.perf_counter() - w0
        own_cpu = time.process_time() - c0
        influx_cpu = sum(influxd.cpu_times()[:2]) - influx_cpu0
        written = sum(len(b) for b in batches)
        inner.close()
        return {
            "mode": mode,
            "gzip": settings.use_gzip,
            "points": written,
            "points_per_s": written / wall,
            "own_cpu_us_per_point": own_cpu / written * 1e6,
            "influxd_cpu_s": influx_cpu,
            "influxd_cpu_us_per_point": influx_cpu / written * 1e6,
        }
    finally:
        proc.stop()


def _batches(names: SeriesNames, points: int, batch: int) -> list[ReadingColumns]:
    """Return ``points`` readings in batches, each with its own timestamps."""
    batches = [_readings(names, batch, seed=i) for i in range(math.ceil(points / batch))]
    # Distinct timestamps per batch, so that no point overwrites another.
    return [
        ReadingColumns(b.series, b.t_us + i * 10**9, b.value, b.seq) for i, b in enumerate(batches)
    ]


def _write(
    mode: str,
    inner: V1Writer,
    settings: InfluxSettings,
    encoder: LineProtocolEncoder,
    names: SeriesNames,
    batches: list[ReadingColumns],
    per_epoch: int,
) -> None:
    """Encode and write every batch: ``sync`` (one request at a time) or pipelined."""
    from gateway.influx.pipeline import PipelinedWriter

    if mode == "sync":
        # The former sink: encode, then one request at a time, each waited for.
        for cols in batches:
            encoded = encoder.encode_points(PointColumns(names, readings=cols))
            inner.write_body(encoded.body, encoded.lines, precision="u")
        return
    writer = PipelinedWriter(inner, None, settings=settings, precision="u")
    for i, cols in enumerate(batches, start=1):
        encoded = encoder.encode_points(PointColumns(names, readings=cols))
        writer.submit(encoded.body, encoded.lines)
        if i % per_epoch == 0:
            writer.flush()
    writer.flush()
    writer.close()


def _row(label: str, figures: dict[str, float]) -> str:
    return f"  {label:<52} {figures['cpu']:7.3f} µs CPU  {figures['wall']:7.3f} µs wall"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--series", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="skip the influxd part")
    parser.add_argument("--write-points", type=int, default=400_000)
    parser.add_argument("--batch", type=int, default=5_000, help="readings per sink batch")
    parser.add_argument("--per-epoch", type=int, default=10, help="batches per flush")
    parser.add_argument("--rounds", type=int, default=1, help="write runs per mode, alternated")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)

    report: dict[str, Any] = {"encode": bench_encode(args.readings, args.series, args.repeat)}
    _print_encode(report["encode"])
    if not args.no_write:
        report["write"] = _write_runs(args)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


def _print_encode(enc: dict[str, Any]) -> None:
    print(
        f"line protocol, {enc['readings']:,} readings over {enc['series']:,} series (per reading)"
    )
    print(_row("LineProtocolEncoder (polars)", enc["encoder_us"]))
    print(_row("reading_lines(event), per-reading f-string (old)", enc["reading_lines_us"]))
    print(_row("bare f-string loop over the same columns", enc["fstring_columns_us"]))
    print(
        f"  first encode of a new table (escapes {enc['series']:,} series): "
        f"{enc['encoder_cold_ms']} ms; body {enc['body_bytes_per_reading']:.0f} bytes/reading"
    )
    print(f"aggregates, {enc['aggregates']:,} closed windows (per aggregate)")
    print(_row("LineProtocolEncoder, 7 fields", enc["encoder_aggregate_us"]))
    print(_row("LineProtocolEncoder, count/mean/min/max", enc["encoder_aggregate_lean_us"]))
    print(_row("aggregate_line(agg), per-aggregate f-string (old)", enc["aggregate_line_us"]))


def _write_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the write modes, alternated over ``--rounds``; print and return their figures."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="sg-bench-encode-") as tmp:
        modes = [("sync", None), ("pipelined", None), ("pipelined", True)] * args.rounds
        for i, (mode, gzip) in enumerate(modes):
            runs.append(
                _write_run(
                    mode, args.write_points, args.batch, args.per_epoch, Path(tmp) / str(i), gzip
                )
            )
    print(
        f"encode + write {args.write_points:,} readings into a fresh influxd per run"
        f" ({args.batch:,} per batch, flush every {args.per_epoch} batches)"
    )
    for run in runs:
        print(
            f"  {run['mode']:<10} gzip={'on ' if run['gzip'] else 'off'}"
            f" {run['points_per_s']:>10,.0f} points/s"
            f"  own CPU {run['own_cpu_us_per_point']:5.2f} µs/point"
            f"  influxd CPU {run['influxd_cpu_s']:5.1f} s"
            f" ({run['influxd_cpu_us_per_point']:.2f} µs/point)"
        )
    return runs


if __name__ == "__main__":
    sys.exit(main())
