"""What the simulator commands share: broker settings, output, exit codes, Ctrl-C."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from typing import Any

from contract.errors import ExitCode

# The codes of contract.errors.ExitCode, named for what the simulators mean by them.
EXIT_OK = ExitCode.OK
EXIT_BEHIND = ExitCode.FAILED
EXIT_CONFIG = ExitCode.REFUSED
EXIT_BROKER = ExitCode.UNREACHABLE


def csv_list(text: str) -> list[str]:
    """Split a comma-separated option into its non-empty items."""
    return [part.strip() for part in text.split(",") if part.strip()]


def settings(args: argparse.Namespace) -> Any:
    """Return the MQTT settings given by the broker options."""
    from edge.mqtt import MqttSettings, TlsSettings

    tls = None
    if args.tls_ca or args.tls_cert or args.tls_insecure:
        tls = TlsSettings(
            ca_file=args.tls_ca,
            cert_file=args.tls_cert,
            key_file=args.tls_key,
            insecure_skip_verify=args.tls_insecure,
        )
    username = args.username
    if username is not None and "{" in username:
        username = None  # a per-device template: the fleet fills it in for each device
    return MqttSettings(
        host=args.host,
        port=args.port,
        username=username,
        password=args.password,
        tls=tls,
        keepalive_s=args.keepalive,
    )


def err(message: str) -> None:
    """Print an error line on stderr."""
    print(f"error: {message}", file=sys.stderr)


def fmt(value: Any) -> str:
    """Format one value of a summary table."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if value is None:
        return "-"
    return str(value)


def table(title: str, rows: Sequence[tuple[str, Any]]) -> str:
    """Render a two-column summary table."""
    width = max(len(name) for name, _ in rows)
    values = [fmt(v) for _, v in rows]
    vwidth = max(len(v) for v in values)
    line = "-" * (width + vwidth + 3)
    body = "\n".join(
        f"{name:<{width}}   {v:>{vwidth}}" for (name, _), v in zip(rows, values, strict=True)
    )
    return f"{title}\n{line}\n{body}\n{line}"


def emit(
    args: argparse.Namespace, title: str, doc: dict[str, Any], rows: list[tuple[str, Any]]
) -> None:
    """Print the result: JSON with --json, else the summary table."""
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(table(title, rows))


def speed(text: str | None) -> float | None:
    """Parse a --speed option (None means real time)."""
    from simulators.timebase import parse_speed

    return parse_speed(text) if text is not None else 1.0


def run_interruptibly(target: Any, stop: Any) -> Any:
    """Run ``target()`` in a thread so that Ctrl-C stops it cleanly via ``stop()``."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = target()
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=run, name="sim-run", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping ...", file=sys.stderr)
        stop()
        thread.join(30)
    if "error" in result:
        raise result["error"]
    return result.get("value")
