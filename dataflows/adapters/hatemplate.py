"""The subset of Home Assistant ``value_template`` Jinja that the adapter evaluates.

Never a template engine: a template is parsed once, when its discovery config arrives,
into a path and a list of filters, and anything outside this grammar is refused with a
message saying what is supported::

    template := "{{" ["-"] expr ["-"] "}}"
    expr     := ("value" | "value_json" access*) ("|" filter)*
    access   := "." name | "[" ("'" key "'" | '"' key '"' | integer) "]"
    filter   := "float" ["(" number ")"] | "int" ["(" number ")"] | "round" ["(" integer ")"]

``value`` is the payload as text, ``value_json`` the payload decoded as JSON. A missing
key renders *undefined*, as in Home Assistant: no reading (not an error; Zigbee2MQTT
state messages often omit fields). ``float`` and ``int`` without a default fail on
text that is not a number.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["UNDEFINED", "Template", "TemplateError", "compile_template"]

SUPPORTED = (
    "{{ value }}, {{ value_json.x }}, {{ value_json['x'] }}, {{ value_json.x.y }},"
    " | float, | float(default), | int, | round(n)"
)


class TemplateError(ValueError):
    """A template outside the supported subset, or a value a filter cannot convert."""


class _Undefined:
    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Any = _Undefined()
"""What a missing key renders to."""

_OUTER = re.compile(r"\A\s*\{\{-?(?P<expr>.*?)-?\}\}\s*\Z", re.S)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<string>'[^'\\]*'|"[^"\\]*")
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<punct>[.\[\]|(),])
    )""",
    re.X,
)


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: render it against a payload."""

    source: str
    base: str
    path: tuple[str | int, ...]
    filters: tuple[tuple[str, float | None], ...]

    def render(self, payload: bytes, doc: Any) -> Any:
        """Return the value for ``payload`` (``doc``: its JSON, or UNDEFINED if not JSON)."""
        if self.base == "value":
            value: Any = payload.decode("utf-8", "replace")
        else:
            value = doc
            for step in self.path:
                if isinstance(step, int):
                    ok = isinstance(value, list) and -len(value) <= step < len(value)
                    value = value[step] if ok else UNDEFINED
                else:
                    value = value.get(step, UNDEFINED) if isinstance(value, dict) else UNDEFINED
                if value is UNDEFINED:
                    return UNDEFINED
        for name, arg in self.filters:
            value = _apply(name, arg, value, self.source)
        return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _apply(name: str, arg: float | None, value: Any, source: str) -> Any:
    if value is UNDEFINED:
        return UNDEFINED
    if name in ("float", "int"):
        number = _number(value)
        if number is None or not math.isfinite(number):
            if arg is None:
                raise TemplateError(f"{source!r}: | {name} cannot convert {value!r}")
            number = arg
        return float(int(number)) if name == "int" else number
    number = _number(value)
    if number is None:
        raise TemplateError(f"{source!r}: | round needs a number; got {value!r}")
    return round(number, int(arg or 0))


def compile_template(source: str) -> Template:
    """Parse ``source``; raise :class:`TemplateError` if it is outside the subset."""
    outer = _OUTER.match(source)
    if outer is None or "{{" in outer["expr"] or "{%" in source:
        raise TemplateError(
            f"value_template {source!r} is not one {{{{ ... }}}} expression; supported: {SUPPORTED}"
        )
    parser = _Parser(source, _tokens(outer["expr"], source))
    base = parser.base()
    path = parser.path(base)
    return Template(source, base, path, parser.filters())


class _Parser:
    """Reads the tokens of one expression: a base, a key path, then filters."""

    def __init__(self, source: str, tokens: list[tuple[str, str]]) -> None:
        self.source = source
        self.tokens = tokens
        self.pos = 0

    def fail(self, message: str) -> TemplateError:
        return TemplateError(f"value_template {self.source!r}: {message}")

    def take(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise TemplateError(
                f"value_template {self.source!r} ends early; supported: {SUPPORTED}"
            )
        self.pos += 1
        return self.tokens[self.pos - 1]

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def base(self) -> str:
        kind, base = self.take()
        if kind != "name" or base not in ("value", "value_json"):
            raise TemplateError(
                f"value_template {self.source!r} must start with value or value_json;"
                f" supported: {SUPPORTED}"
            )
        return base

    def path(self, base: str) -> tuple[str | int, ...]:
        path: list[str | int] = []
        while (tok := self.peek()) is not None and tok[1] in (".", "["):
            if base == "value":
                raise self.fail("only value_json has keys")
            self.take()
            kind, text = self.take()
            if tok[1] == ".":
                if kind != "name":
                    raise self.fail("expected a key after '.'")
                path.append(text)
                continue
            if kind == "string":
                path.append(text[1:-1])
            elif kind == "number" and "." not in text:
                path.append(int(text))
            else:
                raise self.fail("expected a quoted key or index")
            if self.take()[1] != "]":
                raise self.fail("expected ']'")
        return tuple(path)

    def filters(self) -> tuple[tuple[str, float | None], ...]:
        filters: list[tuple[str, float | None]] = []
        while (tok := self.peek()) is not None:
            if tok[1] != "|":
                raise self.fail(f"unsupported {tok[1]!r}; supported: {SUPPORTED}")
            self.take()
            kind, name = self.take()
            if kind != "name" or name not in ("float", "int", "round"):
                raise self.fail(f"filter {name!r} is not supported; supported: {SUPPORTED}")
            arg: float | None = None
            if (nxt := self.peek()) is not None and nxt[1] == "(":
                self.take()
                kind, text = self.take()
                if kind != "number" or (name == "round" and "." in text):
                    raise self.fail(f"bad argument {text!r} to {name}")
                arg = float(text)
                if self.take()[1] != ")":
                    raise self.fail(f"expected ')' after {name}(...")
            filters.append((name, arg))
        return tuple(filters)


def _tokens(expr: str, source: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = expr.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise TemplateError(
                f"value_template {source!r}: cannot read {text[pos:].strip()[:20]!r};"
                f" supported: {SUPPORTED}"
            )
        kind = match.lastgroup or ""
        out.append((kind, match[kind]))
        pos = match.end()
    return out
