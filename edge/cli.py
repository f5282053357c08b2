"""``sensorgate edge run|check|bench``: the agent's command line.

Only the standard library is imported at module level, so that the gateway's CLI can
register these commands without pulling in paho or pydantic until they run.
Exit codes (:class:`contract.errors.ExitCode`): 0 fine, 1 a sensor failed its probe
(``check``) or the agent failed, 2 the configuration was refused (the field and the
reason are printed), 3 the broker could not be reached or refused the agent.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``edge`` command (``run``, ``check``, ``bench``) to a parent's subparsers."""
    from edge import bench as bench_module  # standard library only at import time

    edge = subparsers.add_parser("edge", help="the edge agent that runs on a device")
    edge_sub = edge.add_subparsers(dest="edge_command", metavar="{run,check,bench}", required=True)

    run = edge_sub.add_parser("run", help="sample sensors and publish until stopped")
    run.add_argument("--config", required=True, metavar="FILE", help="the agent's TOML config")
    run.set_defaults(func=cmd_run)

    check = edge_sub.add_parser("check", help="validate the config and probe every sensor once")
    check.add_argument("--config", required=True, metavar="FILE", help="the agent's TOML config")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.set_defaults(func=cmd_check)

    bench = edge_sub.add_parser(
        "bench",
        help="measure the agent: RSS/CPU at 10 readings/s, max readings/s, backlog drain",
    )
    bench_module.add_arguments(bench)
    bench.set_defaults(func=bench_module.cmd_bench)


def _config_error(exc: Exception) -> int:
    from contract.errors import exit_code_for

    field = getattr(exc, "field", "?")
    reason = getattr(exc, "reason", str(exc))
    print(f"error: invalid configuration: {field}: {reason}", file=sys.stderr)
    return exit_code_for(exc)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the agent in the foreground; SIGTERM or Ctrl-C stops it cleanly."""
    from contract.errors import ConfigError, ExitCode, SensorGateError, exit_code_for
    from edge.agent import Agent
    from edge.config import load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _config_error(exc)
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        agent = Agent(config, config_path=args.config)
    except ConfigError as exc:
        return _config_error(exc)
    except SensorGateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code_for(exc)

    try:
        _run_taking_signals(agent)
    except SensorGateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    return ExitCode.OK


_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def _run_taking_signals(agent: Any) -> None:
    """Run the agent in a thread; this thread takes SIGTERM/SIGINT (stop), SIGHUP (reload).

    The signals are blocked before any thread starts (threads inherit the mask) and
    taken synchronously with ``sigtimedwait``. A Python signal handler would run
    between two bytecodes of the main thread, possibly inside the ``with`` of the very
    ``threading.Event`` it sets: that lock is not reentrant, so a SIGHUP or SIGTERM
    could hang the agent for good.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            agent.run()
        except BaseException as exc:  # handed to the main thread, raised there
            failure.append(exc)

    worker = threading.Thread(target=work, name="sg-agent")
    worker.start()
    try:
        while worker.is_alive():
            # Bounded, so that an agent that ends on its own is noticed.
            info = signal.sigtimedwait(_SIGNALS, 0.5)
            if info is None:
                continue
            if info.si_signo == signal.SIGHUP:
                agent.request_reload()  # re-read the file; a bad one is refused
            else:
                agent.stop()
    finally:
        if worker.is_alive():  # this thread failed: the agent still stops cleanly
            agent.stop()
        worker.join()
        # A signal still pending is dropped (ignoring a pending signal discards it)
        # before the mask is lifted: SIGHUP's default action would end the process
        # mid-exit. Then the handlers are put back as they were.
        handlers = {signum: signal.signal(signum, signal.SIG_IGN) for signum in _SIGNALS}
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    if failure:
        raise failure[0]


def probe(config: Any) -> list[dict[str, Any]]:
    """Read every configured sensor once; return one row per sensor."""
    from edge.drivers.base import DriverFault
    from edge.drivers.registry import build_drivers

    rows = []
    drivers = build_drivers(config)
    try:
        for sensor in config.sensors:
            row: dict[str, Any] = {"sensor": sensor.id, "driver": sensor.driver, "ok": True}
            try:
                measurements = drivers[sensor.id].read()
            except DriverFault as exc:
                row.update(ok=False, error=str(exc), measurements=[])
            except Exception as exc:  # a probe reports a driver bug rather than dying
                row.update(ok=False, error=f"{type(exc).__name__}: {exc}", measurements=[])
            else:
                row["measurements"] = [
                    {
                        "channel": m.channel,
                        "metric": m.metric,
                        "value": m.value,
                        "unit": m.unit,
                        "fault": m.fault,
                    }
                    for m in measurements
                ]
                faults = [m.fault for m in measurements if m.fault]
                if faults or not measurements:
                    row.update(ok=False, error=faults[0] if faults else "no measurement")
            rows.append(row)
    finally:
        for driver in drivers.values():
            driver.close()
    return rows


def _table(config: Any, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"config ok: site={config.site} device={config.device}"
        f" broker={config.mqtt.host}:{config.mqtt.port} hash={config.config_hash()}",
        "",
    ]
    header = ("SENSOR", "DRIVER", "STATUS", "READINGS")
    body = []
    for row in rows:
        parts = []
        for m in row["measurements"]:
            name = f"{m['channel']}/{m['metric']}" if m["channel"] else m["metric"]
            if m["fault"]:
                parts.append(f"{name}=FAULT({m['fault']})")
            else:
                parts.append(f"{name}={m['value']:g}{(' ' + m['unit']) if m['unit'] else ''}")
        status = "ok" if row["ok"] else "FAULT"
        detail = ", ".join(parts) if parts else row.get("error", "")
        body.append((row["sensor"], row["driver"], status, detail))
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(3)]
    for r in [header, *body]:
        lines.append("  ".join(str(r[i]).ljust(widths[i]) for i in range(3)) + "  " + r[3])
    return "\n".join(lines)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config, probe each sensor once, print a table (or JSON)."""
    from contract.errors import ConfigError, ExitCode
    from edge.config import load_config

    try:
        config = load_config(args.config)
        rows = probe(config)
    except ConfigError as exc:
        if args.json:
            doc = {"ok": False, "config_error": {"field": exc.field, "reason": exc.reason}}
            print(json.dumps(doc, indent=2))
        return _config_error(exc)
    ok = all(r["ok"] for r in rows)
    if args.json:
        doc = {
            "ok": ok,
            "site": config.site,
            "device": config.device,
            "config_hash": config.config_hash(),
            "sensors": rows,
        }
        print(json.dumps(doc, indent=2))
    else:
        print(_table(config, rows))
    return ExitCode.OK if ok else ExitCode.FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m edge.cli edge run --config FILE``.

    The ``edge`` word may be left out: ``python -m edge.cli run --config FILE``.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] != ["edge"]:
        args_list = ["edge", *args_list]
    parser = argparse.ArgumentParser(prog="sensorgate")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(args_list)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
