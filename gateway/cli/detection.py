"""The alarm commands of ``sensorgate``: ``detect`` and ``evaluate``.

:func:`register` adds them to the ``sensorgate`` parser; :func:`main` runs them on
their own (``python -m gateway.cli.detection evaluate --help``). Both run the gateway's
own detection engine (:class:`~dataflows.detection.DeviceDetector`) offline. Exit
codes: 0 done, 1 refused input, 2 refused configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contract import TelemetryEvent
    from dataflows.rules import RuleSet
    from gateway.ops.evaluate_nab import NabFile

__all__ = ["DEFAULT_NAB", "DEFAULT_SKAB", "main", "register"]

DEFAULT_SKAB = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "skab" / "data"
"""SKAB's data folder: ``../shared/datasets/skab/data`` relative to the repository."""
DEFAULT_NAB = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "nab-dev"
"""A NAB-layout folder: ``../shared/datasets/nab-dev`` relative to the repository."""


def _csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``detect`` and ``evaluate`` to a ``sensorgate`` parser."""
    _add_detect(subparsers)
    _add_evaluate(subparsers)


def _add_detect(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    det = subparsers.add_parser(
        "detect",
        help="run alarm detection over a CSV file; print alarm events as JSON lines",
        description="Run the gateway's detection engine (rules, detectors, alarm state"
        " machine) over a CSV of one device: a timestamp column and value columns (each a"
        " metric). Alarm events (CloudEvents JSON, with event time) go to stdout or --out;"
        " a summary table goes to stderr.",
        epilog="Example: sensorgate detect --csv ../shared/datasets/skab/data/valve1/0.csv"
        " --exclude anomaly,changepoint",
    )
    det.add_argument("--csv", type=Path, required=True, help="the CSV file (delimiter detected)")
    det.add_argument("--rules", type=Path, default=None, help="rules TOML (default: built-in)")
    det.add_argument("--site", default="csv", help="site id of the device (csv)")
    det.add_argument("--device", default=None, help="device id (default: the file's stem)")
    det.add_argument("--sensor", default="csv", help="sensor id of the readings (csv)")
    det.add_argument(
        "--exclude",
        type=_csv_list,
        default=["anomaly", "changepoint"],
        help="columns that are not metrics (anomaly,changepoint)",
    )
    det.add_argument(
        "--window",
        action="append",
        default=None,
        help="event-time windows for aggregate rules, like 1m or 5m/1m (default 1m)",
    )
    det.add_argument("--out", type=Path, default=None, help="write the JSON lines here")
    det.add_argument("--quiet", action="store_true", help="no summary table on stderr")
    det.set_defaults(func=_cmd_detect)


def _add_evaluate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = subparsers.add_parser(
        "evaluate",
        help="score detection against labelled data (SKAB, simulator labels)",
        description="Run detection over labelled data and print precision, recall, F1,"
        " false alarm rate (FAR) and missed alarm rate (MAR), point-wise as in SKAB's"
        " outlier-detection leaderboard, plus event-level recall and mean detection delay,"
        " per anomaly kind. Sources: --skab DIR (default when no other source is given),"
        " --nab DIR (NAB's scoring, its three profiles),"
        " --simulate (a generated fleet with every anomaly kind), --scenario NAME|FILE"
        " (a simulator scenario), or --readings FILE --labels FILE.",
    )
    _add_datasets(ev)
    _add_simulated(ev)
    ev.add_argument("--rules", type=Path, default=None, help="rules TOML (default: built-in)")
    ev.add_argument(
        "--grace", type=float, default=60.0, help="seconds after a label's end to count a raise"
    )
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.add_argument(
        "--chart",
        default="reports/evaluate.png",
        help="PNG chart of one file or device ('' for none; reports/evaluate.png)",
    )
    ev.add_argument(
        "--chart-file",
        default=None,
        help="which SKAB file (e.g. valve1/0.csv) or device to chart (default: the first)",
    )
    ev.set_defaults(func=_cmd_evaluate)


def _add_datasets(ev: argparse.ArgumentParser) -> None:
    """Add ``evaluate``'s public datasets: ``--skab``, and ``--nab`` with its outputs."""
    ev.add_argument(
        "--skab",
        type=Path,
        nargs="?",
        const=DEFAULT_SKAB,
        default=None,
        help=f"SKAB data folder (default {DEFAULT_SKAB})",
    )
    ev.add_argument(
        "--nab",
        type=Path,
        nargs="?",
        const=DEFAULT_NAB,
        default=None,
        help="score a NAB-layout folder (data/, labels/combined_windows.json) as NAB does,"
        f" all three profiles (default {DEFAULT_NAB})",
    )
    ev.add_argument("--out", type=Path, default=None, help="--nab: write the report as JSON")
    ev.add_argument(
        "--charts", type=Path, default=None, help="--nab: a PNG per file into this folder"
    )


def _add_simulated(ev: argparse.ArgumentParser) -> None:
    """Add ``evaluate``'s simulator sources: a generated fleet, a scenario, recorded files."""
    ev.add_argument("--simulate", action="store_true", help="a generated labelled fleet")
    ev.add_argument("--scenario", default=None, help="a simulator scenario (name or TOML)")
    ev.add_argument("--devices", type=int, default=10, help="--simulate: devices (10)")
    ev.add_argument("--duration", type=float, default=12 * 3600, help="simulated seconds (43200)")
    ev.add_argument("--interval", type=float, default=10.0, help="--simulate: seconds (10)")
    ev.add_argument("--seed", type=int, default=7, help="--simulate: random seed (7)")
    ev.add_argument(
        "--readings",
        type=Path,
        default=None,
        help="telemetry events as JSON lines, or a CSV of one device (with --site/--device)",
    )
    ev.add_argument("--labels", type=Path, default=None, help="labels JSON lines (simulators)")
    ev.add_argument("--site", default="csv", help="--readings CSV: site id (csv)")
    ev.add_argument("--device", default=None, help="--readings CSV: device id (file stem)")


def _cmd_detect(args: argparse.Namespace) -> int:
    from dataflows.rules import load_rules
    from gateway.ops.detect import detect_csv_command

    rules = load_rules(args.rules)
    return detect_csv_command(
        csv_path=args.csv,
        rules=rules,
        site=args.site,
        device=args.device or args.csv.stem,
        sensor=args.sensor,
        exclude=args.exclude,
        windows=args.window or ["1m"],
        out=args.out,
        quiet=args.quiet,
    )


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from dataflows.rules import load_rules
    from gateway.ops import evaluate as evm
    from gateway.ops.evaluate_chart import Chart, device_chart, skab_chart
    from gateway.ops.scores import format_report

    rules = load_rules(args.rules)
    if args.nab is not None:
        return _evaluate_nab(args, rules)
    chart: Chart | None = None
    if args.readings is not None or args.labels is not None:
        if args.readings is None or args.labels is None:
            from contract.errors import ConfigError

            raise ConfigError("labels", "--readings and --labels go together")
        telemetry = _read_telemetry(args)
        from simulators.labels import read_labels

        labels = read_labels(args.labels.read_text(encoding="utf-8").splitlines())
        ev, runs = evm.evaluate_labelled(
            telemetry, labels, rules, dataset=str(args.readings), grace_s=args.grace
        )
        chart = device_chart(telemetry, labels, runs, args.chart_file)
    elif args.simulate or args.scenario is not None:
        telemetry, labels = evm.simulate_labelled(
            scenario=args.scenario,
            devices=args.devices,
            duration_s=args.duration,
            interval_s=args.interval,
            seed=args.seed,
        )
        name = args.scenario or (
            f"simulated: {args.devices} devices x {args.duration:g}s every {args.interval:g}s,"
            f" all anomaly kinds at 1/h/device, seed {args.seed}"
        )
        ev, runs = evm.evaluate_labelled(telemetry, labels, rules, dataset=name, grace_s=args.grace)
        chart = device_chart(telemetry, labels, runs, args.chart_file)
    else:
        root = args.skab or DEFAULT_SKAB
        keep = args.chart_file or "valve1/0.csv"
        ev, kept = evm.evaluate_skab(root, rules, grace_s=args.grace, keep=keep)
        chart = skab_chart(kept) if kept else None
    if args.json:
        print(json.dumps(ev.as_dict(), indent=2))
    else:
        print(format_report(ev))
    if args.chart and chart is not None:
        from gateway.ops.evaluate_chart import write_chart

        write_chart(Path(args.chart), chart)
        print(f"chart: {args.chart}", file=sys.stderr)
    return 0


def _evaluate_nab(args: argparse.Namespace, rules: RuleSet) -> int:
    from gateway.ops import evaluate_nab as nab

    keep = None
    if args.charts is not None:
        from gateway.ops.evaluate_chart import write_nab_chart

        folder: Path = args.charts

        def keep(data: NabFile, found: list[int]) -> None:
            write_nab_chart(folder / f"{data.category}-{data.stem}.png", data, found)

    ev = nab.evaluate_nab(args.nab, rules, keep=keep)
    published = nab.published_scores(args.nab, ev.groups(), ev.windows)
    report = ev.as_dict(published)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(nab.format_nab_report(ev, published))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.charts is not None:
        print(f"charts: {args.charts}", file=sys.stderr)
    return 0


def _read_telemetry(args: argparse.Namespace) -> dict[tuple[str, str], list[TelemetryEvent]]:
    from collections import defaultdict

    from contract import TelemetryEvent, decode_as
    from gateway.ops.detect import table_events
    from simulators.csv_replay import read_csv

    path: Path = args.readings
    if path.suffix.lower() == ".csv":
        table = read_csv(path, exclude=["anomaly", "changepoint"])
        device = args.device or path.stem
        return {(args.site, device): table_events(table, site=args.site, device=device)}
    out: dict[tuple[str, str], list[TelemetryEvent]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            event = decode_as(line.encode("utf-8"), TelemetryEvent)
            out[(event.data.site, event.data.device)].append(event)
    return dict(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``detect`` or ``evaluate`` without the rest of ``sensorgate``."""
    from gateway.cli import run_command

    parser = argparse.ArgumentParser(prog="sensorgate", description="Alarm detection offline.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register(sub)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
