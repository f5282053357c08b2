"""What every settings model shares: frozen, no unknown keys, documented fields."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

__all__ = ["Frozen", "default_spill_dir"]


def default_spill_dir() -> Path:
    """Return the default spill folder: under the state home, not a cache or /tmp."""
    # A state directory (XDG), not a cache or /tmp: the spill holds data the broker
    # has already been told is safe, so it must outlive a reboot.
    from gateway.statedir import state_home

    return state_home() / "spill"


class Frozen(BaseModel):
    """A settings model: frozen, no unknown keys, attribute docstrings as descriptions."""

    # Attribute docstrings become field descriptions: `sensorgate config example` prints them.
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
