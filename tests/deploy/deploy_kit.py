"""What the deployment tests share: the repository paths, YAML, and settings look-ups."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# Variables the images read that are not settings fields.
NON_FIELD_VARIABLES = {"SENSORGATE_CONFIG_FILE", "SENSORGATE_SECRETS_DIR"}


def load_yaml_documents(path: Path) -> list[Any]:
    """All documents of a YAML file (empty ones dropped)."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (``X | None`` -> [X])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def field_of(model: type[BaseModel], variable: str, prefix: str = "SENSORGATE_") -> Any:
    """Return the annotation of the field a ``SENSORGATE_A__B`` variable sets in ``model``.

    Raises ``KeyError`` naming the first part that is not a field.
    """
    assert variable.startswith(prefix), variable
    parts = variable[len(prefix) :].lower().split("__")
    current: list[type[BaseModel]] = [model]
    annotation: Any = None
    for i, part in enumerate(parts):
        found = [m.model_fields[part] for m in current if part in m.model_fields]
        if not found:
            names = [m.__name__ for m in current]
            raise KeyError(f"{variable}: {part!r} is not a field of {names}")
        annotation = found[0].annotation
        if i < len(parts) - 1:
            current = _models(annotation)
    return annotation


def is_secret(annotation: Any) -> bool:
    """Whether a field holds a ``SecretStr`` (possibly optional)."""
    if annotation is SecretStr:
        return True
    return SecretStr in typing.get_args(annotation)
