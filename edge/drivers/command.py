"""A number or a JSON object, read from a file or from a command's standard output.

The escape hatch for anything without a driver: ``vcgencmd``, a vendor tool, a value
another process drops in a file. A plain number becomes ``metric``; a JSON object's
numeric members become one metric each (non-numeric members are faults, so a typo
in the producing script shows up rather than vanishing).
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, model_validator

from edge.drivers.base import DriverFault, DriverOptions, Measurement, parse_options

__all__ = ["CommandDriver", "CommandOptions", "create", "parse_output"]


class CommandOptions(DriverOptions):
    """Options of the ``command`` driver: exactly one of ``path`` and ``command``."""

    path: Path | None = None
    command: tuple[str, ...] | None = None
    """argv, run without a shell (no quoting surprises, no injection)."""
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 5.0
    metric: str = "value"
    unit: str = ""
    units: dict[str, str] = Field(default_factory=dict)
    """Units of the members of a JSON object output."""

    @model_validator(mode="after")
    def _one_source(self) -> CommandOptions:
        if (self.path is None) == (self.command is None):
            raise ValueError("set exactly one of 'path' and 'command'")
        if self.command is not None and not self.command:
            raise ValueError("'command' must not be empty")
        return self


def parse_output(
    text: str, *, metric: str, unit: str, units: Mapping[str, str]
) -> list[Measurement]:
    """Turn a number or a JSON object into measurements; raise :class:`DriverFault`."""
    text = text.strip()
    if not text:
        raise DriverFault("empty output")
    try:
        doc = json.loads(text)
    except ValueError:
        raise DriverFault(f"output is neither a number nor JSON: {text[:80]!r}") from None
    if isinstance(doc, bool):
        doc = float(doc)  # a switch state is a 0/1 value
    if isinstance(doc, int | float):
        return [_number(metric, doc, unit)]
    if not isinstance(doc, dict) or not doc:
        raise DriverFault(f"expected a number or a non-empty JSON object; got {text[:80]!r}")
    out = []
    for key, value in doc.items():
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, int | float):
            out.append(_number(str(key), value, units.get(str(key), "")))
        else:
            out.append(
                Measurement(
                    str(key), None, units.get(str(key), ""), f"not a number: {value!r}"[:200]
                )
            )
    return out


def _number(metric: str, value: float, unit: str) -> Measurement:
    if not math.isfinite(value):
        return Measurement(metric, None, unit, f"not a finite number: {value!r}")
    return Measurement(metric, float(value), unit)


class CommandDriver:
    """Reads a file or runs a command once per tick."""

    kind = "command"

    def __init__(self, options: CommandOptions) -> None:
        self.options = options

    def _output(self) -> str:
        opts = self.options
        if opts.path is not None:
            try:
                return opts.path.read_text()
            except OSError as exc:
                raise DriverFault(f"cannot read {opts.path}: {exc}") from exc
        assert opts.command is not None
        try:
            done = subprocess.run(
                list(opts.command),
                capture_output=True,
                text=True,
                timeout=opts.timeout_s,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise DriverFault(f"command timed out after {opts.timeout_s:g} s") from None
        except OSError as exc:
            raise DriverFault(f"cannot run {opts.command[0]!r}: {exc}") from exc
        if done.returncode != 0:
            err = done.stderr.strip().splitlines()[-1:] or [""]
            raise DriverFault(f"command exited with {done.returncode}: {err[0][:200]}")
        return done.stdout

    def read(self) -> list[Measurement]:
        """Read the source once and parse it."""
        opts = self.options
        return parse_output(self._output(), metric=opts.metric, unit=opts.unit, units=opts.units)

    def close(self) -> None:
        """Nothing to release."""


def create(options: Mapping[str, Any]) -> CommandDriver:
    """Build a command/file driver from its options."""
    return CommandDriver(parse_options(CommandOptions, options))
