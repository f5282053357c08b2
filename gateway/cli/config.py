"""``sensorgate config``: check a gateway config file, or print a commented example.

The gateway reads one TOML file (``sensorgate --config FILE ...``, ``gateway run
--config FILE`` or ``SENSORGATE_CONFIG_FILE``), with ``SENSORGATE_*`` environment
variables overriding it, as Telegraf users expect. The example is generated from the
settings models themselves, so it cannot drift from what the gateway accepts.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

__all__ = ["example_toml", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``config check`` and ``config example`` to a ``sensorgate`` parser."""
    config = subparsers.add_parser(
        "config", help="check a gateway config file, or print a commented example"
    )
    csub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    check = csub.add_parser(
        "check",
        help="validate a config file (with the environment applied); name the bad field",
        description="Load FILE as the gateway would (SENSORGATE_* variables override it)"
        " and report the first bad field and why. Exit 0 valid, 2 refused.",
    )
    check.add_argument("file", type=Path, help="the TOML config file")
    check.add_argument("--json", action="store_true", help="print the effective settings as JSON")
    check.set_defaults(func=_cmd_check)
    example = csub.add_parser(
        "example",
        help="print a commented config file with every setting and its default",
        description="Print a TOML config file holding every gateway setting at its default,"
        " each with what it means. Redirect it to a file and edit what you need.",
    )
    example.set_defaults(func=_cmd_example)


def _cmd_check(args: argparse.Namespace) -> int:
    from gateway.settings import load_settings

    settings = load_settings(config_file=args.file)  # ConfigError: exit 2 with the field
    if args.json:
        print(json.dumps(settings.model_dump(mode="json"), indent=2))
    else:
        print(
            f"{args.file}: valid. MQTT {settings.mqtt.url}, InfluxDB {settings.influx.url}"
            f" ({settings.influx.api}, database {settings.influx.database}), windows"
            f" {', '.join(settings.stream.windows)}, rules {settings.rules_file or 'default'}"
        )
    return 0


def _cmd_example(args: argparse.Namespace) -> int:
    from gateway.settings import GatewaySettings

    sys.stdout.write(example_toml(GatewaySettings))
    return 0


def example_toml(model: type[BaseModel]) -> str:
    """Return a commented TOML document of ``model``'s fields at their defaults."""
    lines = [
        "# SensorGate gateway configuration (sensorgate config example).",
        "# Every SENSORGATE_* environment variable overrides the matching key here:",
        "# [mqtt] port = ... is SENSORGATE_MQTT__PORT. Check a file with",
        "# `sensorgate config check FILE`; run with `sensorgate gateway run --config FILE`.",
        "",
    ]
    lines.extend(_section(model, "", commented=False))
    return "\n".join(lines) + "\n"


def _models_of(annotation: Any) -> type[BaseModel] | None:
    """Return the model of a ``Model`` or ``Model | None`` annotation, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None


def _section(model: type[BaseModel], path: str, *, commented: bool) -> list[str]:
    """Return a table's keys, then its sub-tables (``[mqtt.tls]``).

    An optional table that is off by default is written commented out.
    """
    lines: list[str] = []
    subs: list[tuple[str, type[BaseModel], bool]] = []
    for name, field in model.model_fields.items():
        sub = _models_of(field.annotation)
        if sub is not None:
            optional_off = field.get_default(call_default_factory=True) is None
            subs.append((name, sub, commented or optional_off))
            continue
        lines.extend(_comment_out(_entry(name, field), commented))
    for name, sub, off in subs:
        table = f"{path}.{name}" if path else name
        header = [f"[{table}]"]
        if off and not commented:
            header = [f"# [{table}]  (off unless set)"]
        lines.extend(["", *_comment_out(header, commented), *_section(sub, table, commented=off)])
    return lines


def _comment_out(lines: list[str], commented: bool) -> list[str]:
    if not commented:
        return lines
    return [line if line.startswith("#") else f"# {line}" for line in lines]


def _entry(name: str, field: FieldInfo) -> list[str]:
    out: list[str] = []
    if field.description:
        text = " ".join(field.description.split())
        out.extend("# " + line for line in textwrap.wrap(text, 86))
    default = field.get_default(call_default_factory=True)
    value = _toml(default)
    out.append(f"# {name} = <set me>" if value is None else f"{name} = {value}")
    return out


def _toml(value: Any) -> str | None:
    if value is None or isinstance(value, SecretStr):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, tuple | list):
        items = [_toml(v) for v in value]
        return "[" + ", ".join(i for i in items if i is not None) + "]"
    return json.dumps(str(value))
