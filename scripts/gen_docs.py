"""Rewrite the generated tables of docs/architecture.md from the code they describe.

Each table sits between ``<!-- generated:NAME -->`` and ``<!-- /generated -->``; the
text around them is written by hand and left alone. Run it after changing a topic,
an event model, a dead-letter reason, an exit code, a measurement or a setting::

    python scripts/gen_docs.py           # rewrite docs/architecture.md
    python scripts/gen_docs.py --check   # exit 1 if it is out of date (what the test runs)

The tables come from ``contract.topics``, the contract's event models,
``contract.reasons``, ``contract.errors.EXIT_CODES``, lines written by the InfluxDB
writers themselves (``gateway.influx.encoder`` and ``lineprotocol``, placed by
``StorageLayout``) and the settings models (``gateway.settings.GatewaySettings``).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import os
import re
import sys
import textwrap
import typing
from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "scripts"):  # run as a script from anywhere; siblings too
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from schema_samples import line_keys, sample_lines  # noqa: E402 - needs the path above

DOC = ROOT / "docs" / "architecture.md"
REGENERATE = "python scripts/gen_docs.py"
_BLOCK = re.compile(r"(<!-- generated:([a-z-]+) -->\n)(.*?)(<!-- /generated -->)", re.S)


# -- helpers ---------------------------------------------------------------------------------


def _cell(text: object) -> str:
    """Return one Markdown table cell: one line, pipes escaped, RST literals as Markdown."""
    return " ".join(str(text).split()).replace("``", "`").replace("|", "\\|")


def _table(header: tuple[str, ...], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _doc(obj: object) -> str:
    """Return the first paragraph of a docstring, on one line."""
    text = inspect.getdoc(obj) or ""
    return " ".join(text.split("\n\n")[0].split())


def _member_docs(enum: type[Enum]) -> dict[str, str]:
    """Return the attribute docstrings of an enum's members (the string under each)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(enum)))
    top = tree.body[0]
    if not isinstance(top, ast.ClassDef):
        raise TypeError(f"expected the source of a class; got {type(top).__name__}")
    body = top.body
    out: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            out[node.targets[0].id] = " ".join(after.value.value.split())
    return out


# -- topics ----------------------------------------------------------------------------------

_KIND_ROLES = {
    "telemetry": ("edge agent", "gateway", "no"),
    "status": ("edge agent (birth, heartbeat, last will)", "gateway", "yes"),
    "alarms": ("gateway", "operators, dashboards", "no"),
    "config": ("operator", "edge agent", "yes"),
    "commands": ("operator (`alarms ack`, dashboard)", "gateway", "no"),
}
"""Who publishes and who reads each kind: the one thing the code does not say."""

_KIND_WHAT = {"commands": "operator commands about one device (`contract.commands`)"}
"""What a kind is, for the kinds ``TopicScheme`` has no builder (and docstring) for."""


def topics_table() -> str:
    """Return the topic table, built by ``TopicScheme`` under the default prefix."""
    from contract.topics import TopicKind, TopicScheme

    scheme = TopicScheme()
    site, device = "{site}", "{device}"
    missing = {k.value for k in TopicKind} - set(_KIND_ROLES)
    if missing:
        raise SystemExit(f"gen_docs: say who publishes and reads topic kind(s) {sorted(missing)}")
    rows = []
    for kind in TopicKind:
        by, to, retained = _KIND_ROLES[kind.value]
        method = getattr(TopicScheme, kind.value, None)
        meaning = (
            _doc(method).removeprefix("Return the ")
            if callable(method)
            else _KIND_WHAT.get(kind.value, "")
        )
        rows.append(
            (f"`{scheme.device(site, device, kind)}`", by, to, retained, meaning.rstrip("."))
        )
    rows += [
        (
            f"`{scheme.alarms_active(site, device)}`",
            "gateway",
            "dashboards, Home Assistant",
            "yes",
            _doc(TopicScheme.alarms_active).removeprefix("Return the ").rstrip("."),
        ),
        (
            f"`{scheme.aggregates(site, device, '{sensor}', '{metric}')}`",
            "gateway (with `ha_discovery.aggregates`)",
            "Home Assistant",
            "yes",
            _doc(TopicScheme.aggregates).removeprefix("Return the ").rstrip("."),
        ),
        (
            f"`{scheme.deadletter}`",
            "gateway",
            "operators",
            "no",
            _doc(TopicScheme.deadletter).removeprefix("The ").rstrip("."),
        ),
    ]
    table = _table(("topic", "published by", "read by", "retained", "what"), rows)
    telemetry, commands = TopicKind.TELEMETRY, TopicKind.COMMANDS
    return table + (
        f"\nThe gateway's source subscribes to `{scheme.subscription(telemetry)}` and"
        f" `{scheme.subscription(commands)}`, shared between its partitions with"
        f" `mqtt.share_group` (`{scheme.subscription(telemetry, share_group='{group}')}`),"
        f" and to `{scheme.subscription(TopicKind.STATUS)}`, never shared.\n"
    )


# -- events ----------------------------------------------------------------------------------


def _event_models() -> list[type[Any]]:
    import contract.alarms
    import contract.commands
    import contract.events

    found: list[type[Any]] = []
    stack = list(contract.events.Envelope.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith("contract.") and "TYPE" in vars(cls):
            found.append(cls)
    return sorted(found, key=lambda c: c.TYPE)


def events_table() -> str:
    """Return every CloudEvents type of the contract, its model and its ``data`` fields."""
    rows = []
    for cls in _event_models():
        data_model = cls.model_fields["data"].annotation
        fields = ", ".join(
            f"{name}" if info.is_required() else f"{name}?"
            for name, info in data_model.model_fields.items()
        )
        meaning = _doc(cls).split(": ", 1)[-1].rstrip(".")
        rows.append((f"`{cls.TYPE}`", f"`{cls.__module__}.{cls.__name__}`", fields, meaning))
    return _table(("type", "model", "`data` fields (`?` optional)", "what"), rows)


def reasons_table() -> str:
    """Return the fixed dead-letter reasons (``contract.reasons.DeadLetterReason``)."""
    from contract.reasons import DeadLetterReason

    docs = _member_docs(DeadLetterReason)
    rows = [(f"`{r.value}`", docs.get(r.name, "")) for r in DeadLetterReason]
    return _table(("reason", "meaning"), rows)


# -- exit codes ------------------------------------------------------------------------------


def exit_codes_table() -> str:
    """Return ``contract.errors.ExitCode`` with the error classes ``EXIT_CODES`` maps to each."""
    from contract.errors import EXIT_CODES, ExitCode

    docs = _member_docs(ExitCode)
    rows = []
    for code in ExitCode:
        errors = ", ".join(f"`{e.__name__}`" for e, c in EXIT_CODES.items() if c is code)
        rows.append((str(int(code)), f"`{code.name}`", docs.get(code.name, ""), errors))
    return _table(("code", "name", "meaning", "raised as"), rows)


# -- InfluxDB schema -------------------------------------------------------------------------


def schema_table() -> str:
    """Return the measurements as written, with the policy ``StorageLayout`` gives each."""
    from gateway.influx.layout import MEASUREMENT_CLASS, StorageLayout
    from gateway.settings import InfluxSettings

    tags: dict[str, list[str]] = {}
    fields: dict[str, dict[str, bool]] = {}
    for measurement, line, default in sample_lines():
        line_tags, line_fields = line_keys(line)
        tags.setdefault(measurement, line_tags)
        seen = fields.setdefault(measurement, {})
        for name in line_fields:
            seen[name] = seen.get(name, False) or default
    unknown = set(fields) - set(MEASUREMENT_CLASS)
    missing = set(MEASUREMENT_CLASS) - set(fields)
    if unknown or missing:
        raise SystemExit(
            f"gen_docs: measurements written {sorted(unknown)}, unsampled {sorted(missing)}"
        )
    layout = StorageLayout.of(InfluxSettings())
    rows = []
    for measurement in MEASUREMENT_CLASS:
        policy = layout.of_class(MEASUREMENT_CLASS[measurement])
        kept = "default policy" if policy is None else f"`{policy.name}` ({policy.duration})"
        if policy is not None and policy.default:
            kept += ", the default"
        names = [n if on else f"{n}*" for n, on in fields[measurement].items()]
        rows.append((f"`{measurement}`", kept, ", ".join(tags[measurement]), ", ".join(names)))
    return _table(("measurement", "retention policy (kept)", "tags", "fields"), rows)


# -- settings --------------------------------------------------------------------------------


def _model_of(annotation: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None


def _default(value: Any) -> str:
    from pydantic import SecretStr

    if value is None or isinstance(value, SecretStr):
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple | list):
        return "`[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in value) + "]`"
    text = str(value).replace(str(Path.home()), "~")
    return f"`{text}`"


def _settings_rows(model: Any, path: list[str]) -> Iterator[tuple[str, str, str]]:
    for name, info in model.model_fields.items():
        sub = _model_of(info.annotation)
        here = [*path, name]
        if sub is not None:
            yield from _settings_rows(sub, here)
            continue
        variable = "SENSORGATE_" + "__".join(here).upper()
        default = _default(info.get_default(call_default_factory=True))
        yield f"`{variable}`", default, info.description or ""


def settings_table() -> str:
    """Return every gateway setting: variable, default and docstring (``GatewaySettings``)."""
    from gateway.settings import GatewaySettings

    # Defaults made from the environment are shown by the variable they come from.
    with mock.patch.dict(os.environ, {"XDG_STATE_HOME": "$XDG_STATE_HOME"}):
        rows = list(_settings_rows(GatewaySettings, []))
    return _table(("variable", "default", "meaning"), rows)


# -- the document ----------------------------------------------------------------------------

TABLES: dict[str, Callable[[], str]] = {
    "topics": topics_table,
    "events": events_table,
    "reasons": reasons_table,
    "schema": schema_table,
    "exit-codes": exit_codes_table,
    "settings": settings_table,
}


def render(text: str) -> str:
    """Return ``text`` with every generated block rewritten; unknown or absent names fail."""
    seen: set[str] = set()

    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise SystemExit(f"gen_docs: no generator for <!-- generated:{name} -->")
        seen.add(name)
        return match.group(1) + TABLES[name]() + match.group(4)

    out = _BLOCK.sub(fill, text)
    absent = set(TABLES) - seen
    if absent:
        raise SystemExit(f"gen_docs: {DOC.name} has no block for {sorted(absent)}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Rewrite docs/architecture.md, or with ``--check`` only say whether it is current."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    current = DOC.read_text()
    wanted = render(current)
    if wanted == current:
        return 0
    if args.check:
        print(f"{DOC.relative_to(ROOT)} is out of date: run {REGENERATE}", file=sys.stderr)
        return 1
    DOC.write_text(wanted)
    print(f"rewrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
